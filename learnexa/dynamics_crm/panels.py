"""What the integration shows on the Manage site dashboard and on a user's page."""

from __future__ import annotations

from django.db.models import Q
from django.urls import reverse

from learnexa.manage_site.panels import (
    UserColumn,
    banners,
    dashboard_panels,
    navigation,
    user_columns,
    user_panels,
)

from .models import DynamicsCrmSetting, SyncChange, SyncRun


def dashboard(request):
    setting = DynamicsCrmSetting.objects.filter(company=request.company).first()
    if setting is None:
        return "dynamics_crm/panel_dashboard.html", {"setting": None}
    runs = list(setting.runs.all()[:20])
    finished = [r for r in runs if r.is_finished]
    problems = []
    if setting.schedule_paused:
        problems.append(
            f"The schedule is paused after {setting.consecutive_failures} failed syncs in a row."
        )
    if setting.last_error:
        problems.append(f"The last sync failed: {setting.last_error}")
    held = [r for r in runs if r.hold == SyncRun.Hold.HELD]
    for run in held:
        problems.append(f"{run.held} deactivations are waiting for your approval.")
    # The chart: created, updated and deactivated per recent run, oldest first.
    peak = max([r.created + r.updated + r.deactivated for r in finished] + [1])
    chart = [
        {"run": r, "height": round(100 * (r.created + r.updated + r.deactivated) / peak)}
        for r in reversed(finished[:12])
    ]
    return "dynamics_crm/panel_dashboard.html", {
        "setting": setting,
        "last_run": runs[0] if runs else None,
        "running": next((r for r in runs if r.status == SyncRun.Status.RUNNING), None),
        "problems": problems,
        "held": held,
        "chart": chart,
    }


def user(request, person):
    linked = person.dynamics_systemuser_id or person.dynamics_contact_id
    if not linked:
        return None
    table = "systemuser" if person.dynamics_systemuser_id else "contact"
    setting = DynamicsCrmSetting.objects.filter(company=request.company).first()
    changes = (
        SyncChange.objects.filter(user=person, run__company=request.company)
        .select_related("run")
        .order_by("-run__queued_at", "-id")[:50]
    )
    record_url = (
        f"{setting.organization_uri}/main.aspx?pagetype=entityrecord&etn={table}&id={linked}"
        if setting
        else ""
    )
    return "dynamics_crm/panel_user.html", {
        "changes": changes,
        "record_url": record_url,
        "linked": linked,
        "table": table,
    }


def banner(company) -> list[tuple[str, str]]:
    setting = (
        DynamicsCrmSetting.objects.filter(company=company)
        .only("status", "schedule_paused", "consecutive_failures")
        .first()
    )
    if setting is None:
        return []
    url = reverse("dynamics_crm:integration")
    found = []
    held = SyncRun.objects.filter(company=company, hold=SyncRun.Hold.HELD).count()
    if held:
        found.append(
            (
                f"Deactivations from Dynamics 365 await your approval ({held} sync{'s' if held > 1 else ''}).",
                url,
            )
        )
    if setting.schedule_paused:
        found.append(("The Dynamics 365 sync schedule is paused after repeated failures.", url))
    elif setting.status == DynamicsCrmSetting.Status.ERROR:
        found.append(("The last Dynamics 365 sync failed.", url))
    return found


def _linked(user) -> str:
    return "Linked" if user.dynamics_systemuser_id or user.dynamics_contact_id else "—"


# Linked to a Dynamics user or to a contact, whichever the company syncs.
LINKED = Q(dynamics_systemuser_id__isnull=False) | Q(dynamics_contact_id__isnull=False)
LINK_COLUMN = UserColumn(
    key="link",
    heading="Dynamics link",
    fields=("dynamics_systemuser_id", "dynamics_contact_id"),
    cell=_linked,
    choices={"linked": ("Linked", LINKED), "unlinked": ("Not linked", ~LINKED)},
)


def register() -> None:
    dashboard_panels.append(dashboard)
    user_panels.append(user)
    banners.append(banner)
    navigation.append(lambda: [("Integrate Dynamics CRM", reverse("dynamics_crm:integration"))])
    user_columns.append(LINK_COLUMN)
