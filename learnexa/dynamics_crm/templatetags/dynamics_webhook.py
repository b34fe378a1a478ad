"""{% webhook_section setting %}: the integration page's "Changes in seconds" section, without
a change to the page's view."""

from __future__ import annotations

from django import template

from .. import webhooks
from ..models import WebhookCounter
from ..webhook_views import address

register = template.Library()


@register.inclusion_tag("dynamics_crm/_webhook.html", takes_context=True)
def webhook_section(context, setting):
    request = context["request"]
    if setting is None or not setting.pk:
        return {"setting": None}
    webhooks.ensure_key(setting)
    user = getattr(request, "user", None)
    is_site_admin = bool(user and getattr(user, "is_site_admin", False))
    url = address(request, setting)
    return {
        "setting": setting,
        "address": url,
        "https": url.startswith("https://"),
        # Only the key's end, and only for the company's site admins: the key itself is on a
        # page of its own (webhook_views.show_key).
        "key_end": webhooks.webhook_key(setting)[-4:] if is_site_admin else "",
        "counter": WebhookCounter.objects.filter(setting=setting).first(),
        "entity": webhooks.entity_of(setting),
        "csrf_token": context.get("csrf_token"),
        "registered": bool(setting.webhook_endpoint_id),
        "max_per_minute": webhooks.max_per_minute(),
    }
