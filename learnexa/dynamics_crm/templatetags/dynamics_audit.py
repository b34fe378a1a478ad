"""{% audit_trail setting %}: what site admins did to the integration, newest first."""

from __future__ import annotations

from django import template

from ..models import AuditEvent

register = template.Library()


@register.inclusion_tag("dynamics_crm/_audit.html")
def audit_trail(setting):
    if setting is None or not setting.pk:
        return {"events": []}
    return {"events": list(AuditEvent.objects.filter(company=setting.company)[:20])}
