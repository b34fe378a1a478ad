"""{% audit_trail setting %}: what site admins did to the integration, the latest first."""

from __future__ import annotations

from django import template

from ..models import AuditEvent

register = template.Library()

# The integration page shows this many; the audit page shows them all.
LATEST = 10


@register.inclusion_tag("dynamics_crm/_audit.html")
def audit_trail(setting):
    if setting is None or not setting.pk:
        return {"shown": False, "events": []}
    events = AuditEvent.objects.filter(company=setting.company)[:LATEST]
    return {"shown": True, "events": list(events)}
