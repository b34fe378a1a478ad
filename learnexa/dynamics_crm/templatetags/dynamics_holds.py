"""{% holds_inbox setting %}: how many people's deactivations wait for a decision, whatever
run held them, with a link to the holds inbox; {% held_pending run %}: how many of one run's."""

from __future__ import annotations

from django import template

from .. import holds

register = template.Library()


@register.inclusion_tag("dynamics_crm/_holds.html")
def holds_inbox(setting):
    if setting is None or not setting.pk:
        return {"waiting": 0}
    pending = holds.pending(setting.company)
    return {
        "waiting": pending.count(),
        "runs": pending.values("run_id").distinct().count(),
    }


@register.simple_tag
def held_pending(run) -> int:
    return holds.pending(run.company_id).filter(run=run).count()
