"""Emails to a company's site admins about its integration, and welcome emails to the users
a sync creates (off unless the company switched them on)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail, send_mass_mail

logger = logging.getLogger(__name__)


def _admins(company) -> list[str]:
    return list(company.site_admins().values_list("email", flat=True))


def _tell_admins(company, subject: str, body: str) -> None:
    recipients = _admins(company)
    if not recipients:
        return
    try:
        send_mail(f"[Learnexa] {subject}", body, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception:  # a mail outage must not fail the sync that wanted to report
        logger.exception("Could not email the site admins of %s", company.slug)


def run_failed(run) -> None:
    _tell_admins(
        run.company,
        "Dynamics 365 sync failed",
        f"The sync of your users from Dynamics 365 failed:\n\n{run.error}\n\n"
        "Manage site → Integrate Dynamics CRM shows the details.",
    )


def schedule_paused(setting) -> None:
    _tell_admins(
        setting.company,
        "Dynamics 365 sync paused",
        f"The last {setting.consecutive_failures} syncs from Dynamics 365 failed, so the "
        f"schedule is paused. The last error was:\n\n{setting.last_error}\n\nFix the cause, "
        "then resume the schedule under Manage site → Integrate Dynamics CRM.",
    )


def deactivations_held(run, count: int) -> None:
    setting = run.setting
    _tell_admins(
        run.company,
        f"{count} deactivations from Dynamics 365 await your approval",
        f"A sync from Dynamics 365 would deactivate {count} users, more than your limit "
        f"({setting.deactivation_limit_count} users or {setting.deactivation_limit_percent} % "
        "of the users from Dynamics). Nobody was deactivated. Review them and approve or "
        "reject under Manage site → Integrate Dynamics CRM.",
    )


def welcome(users) -> None:
    messages = [
        (
            "Welcome to Learnexa",
            f"Hello {user.first_name or user.email},\n\nYour organization has given you an "
            "account on Learnexa, its learning platform. Sign in with your work account.",
            settings.DEFAULT_FROM_EMAIL,
            [user.email],
        )
        for user in users
    ]
    try:
        send_mass_mail(messages, fail_silently=False)
    except Exception:
        logger.exception("Could not send %d welcome emails", len(messages))


def credential_expiring(setting, kind: str, expires_at, days: int) -> None:
    """The client secret or certificate the integration signs in with expires in `days`."""
    when = f"{expires_at:%Y-%m-%d}" if kind == "secret" else f"{expires_at:%Y-%m-%d %H:%M} UTC"
    if kind == "certificate":
        what = f"certificate (thumbprint {setting.certificate_thumbprint})"
        renew = (
            "Create a new certificate, upload it under Certificates & secrets → Certificates in "
            "the app registration, then upload it with its private key under Manage site → "
            "Integrate Dynamics CRM."
        )
    else:
        what = "client secret"
        renew = (
            "Create a new client secret under Certificates & secrets in the app registration, "
            "then enter its Value and its expiry date under Manage site → Integrate Dynamics CRM."
        )
    _tell_admins(
        setting.company,
        f"The Dynamics 365 {kind} expires in {days} days",
        f"The {what} that Learnexa uses to read your users from Dynamics 365 expires on "
        f"{when}, in {days} days. After that, the sync stops.\n\n{renew}\n\n"
        f"App registration (client) ID: {setting.client_id}",
    )
