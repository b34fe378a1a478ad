"""What the integration shows on the Manage site dashboard and on a user's page."""

from __future__ import annotations

from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from learnexa.manage_site.panels import (
    UserColumn,
    banners,
    dashboard_panels,
    navigation,
    user_columns,
    user_panels,
)

from . import holds, notifications, progress
from .chart import MAX_BARS, build_chart
from .models import DynamicsCrmSetting, SyncChange, SyncRun


def dashboard(request):
    setting = DynamicsCrmSetting.objects.filter(company=request.company).first()
    if setting is None:
        return "dynamics_crm/panel_dashboard.html", {"setting": None}
    problems = []
    if setting.schedule_paused:
        problems.append(
            f"The schedule is paused after {setting.consecutive_failures} failed syncs in a row."
        )
    if setting.last_error:
        problems.append(f"The last sync failed: {setting.last_error}")
    # The credential in use, within 30 days of expiring (or expired): syncs will fail.
    for expiry in notifications.expiry_notices(setting):
        on = date_format(expiry["at"], "DATE_FORMAT")
        if expiry["expired"]:
            problems.append(
                f"The {expiry['label']} expired on {on}: syncs fail until you save a new one."
            )
        else:
            days = (expiry["at"].date() - timezone.now().date()).days
            when = "today" if days < 1 else "tomorrow" if days == 1 else f"in {days} days"
            problems.append(
                f"The {expiry['label']} expires {when} ({on}): create a new one in the app "
                "registration and save it here before then."
            )
    # Every held person, whatever run held them: an old hold must not drop out of sight.
    held = holds.count(request.company)
    if held:
        problems.append(
            format_html(
                '{} deactivation{} {} waiting for your approval. <a href="{}">Review them</a>.',
                held,
                "s" if held != 1 else "",
                "are" if held != 1 else "is",
                reverse("dynamics_crm:holds"),
            )
        )
    # The chart: created, updated and deactivated per recent finished sync, not dry runs.
    chart = build_chart(
        setting.runs.filter(
            status__in=(SyncRun.Status.SUCCEEDED, SyncRun.Status.FAILED), dry_run=False
        )[:MAX_BARS]
    )
    running = setting.runs.filter(status=SyncRun.Status.RUNNING).first()
    return "dynamics_crm/panel_dashboard.html", {
        "setting": setting,
        "running": running,
        "progress": progress.describe(running) if running else None,
        "problems": problems,
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
    held = holds.count(company)
    if held:
        found.append(
            (
                f"Deactivations from Dynamics 365 await your approval: {held} "
                f"{'person' if held == 1 else 'people'}.",
                reverse("dynamics_crm:holds"),
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
