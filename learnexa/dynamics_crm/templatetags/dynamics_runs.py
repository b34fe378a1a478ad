"""{% recent_runs setting %}: the integration page's recent syncs."""

from __future__ import annotations

from django import template

register = template.Library()


@register.inclusion_tag("dynamics_crm/_recent_runs.html")
def recent_runs(setting):
    if setting is None or not setting.pk:
        return {"runs": []}
    return {"runs": list(setting.runs.all()[:10])}
