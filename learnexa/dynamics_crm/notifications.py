"""Emails to a company's site admins about its integration (failures, holds, pauses, and
the reminders before the credential in use expires), and welcome emails to the users a sync
creates (off unless the company switched them on)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMessage, mailers, send_mail
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from learnexa.accounts import invitations, sign_in
from learnexa.accounts.models import User

from .models import DynamicsCrmSetting

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


def _welcome_text(user, method, base: str) -> str:
    """What a new person is told about signing in: only ever the way their company chose."""
    login = f"{base}{reverse('login')}"
    company = user.company.name
    if isinstance(method, sign_in.External):
        return (
            f"Sign in at {login} with your work account: enter {user.email}, and you will "
            f"sign in with {method.label}."
        )
    if method == sign_in.INVITATION:
        return invitations.invitation_text(user, invitations.link_for(user, base))
    if method == sign_in.PASSWORD:
        return f"Sign in at {login} with your email, {user.email}, and your password."
    return (
        f"Your account is ready, but {company} hasn't opened sign-in to it yet. "
        f"{company} will let you know when you can sign in."
    )


def welcome(users) -> None:
    """Welcome the people a sync created; to those who sign in with a password they don't
    have yet, this email is their invitation (it carries the link)."""
    users = list(users.select_related("company") if hasattr(users, "select_related") else users)
    # A sync's new users are all of one company: one instance, so that its settings are read
    # once (sign_in.method_for asks them), not once per person.
    companies = {}
    for user in users:
        user.company = companies.setdefault(user.company_id, user.company)
    if not users:
        return
    base = invitations.base_url()
    now = timezone.now()
    methods = {user.pk: sign_in.method_for(user) for user in users}
    invited = [u for u in users if u.is_active and methods[u.pk] == sign_in.INVITATION]
    previous = {u.pk: u.invitation_sent_at for u in invited}
    # The links are made from the time they were sent: record it first.
    invited_ids = [u.pk for u in invited]
    for start in range(0, len(invited_ids), 500):
        User.objects.filter(pk__in=invited_ids[start : start + 500]).update(invitation_sent_at=now)
    for user in invited:
        user.invitation_sent_at = now
    sent = set()
    try:
        # One connection for them all; each message on its own, to know which ones left.
        with mailers.default as connection:
            for user in users:
                message = EmailMessage(
                    "Welcome to Learnexa",
                    f"Hello {user.first_name or user.email},\n\n{user.company.name} has given "
                    "you an account on Learnexa, its learning platform.\n\n"
                    f"{_welcome_text(user, methods[user.pk], base)}",
                    settings.DEFAULT_FROM_EMAIL,
                    [user.email],
                )
                try:
                    connection.send_messages([message])
                except Exception:
                    continue
                sent.add(user.pk)
    except Exception:  # the mail server couldn't be reached, or closing failed
        pass
    unsent = [user for user in users if user.pk not in sent]
    if unsent:
        logger.error("Could not send %d of %d welcome emails", len(unsent), len(users))
        # The invitations among them never left: a resend must not wait for them. (Those
        # that left keep their time, which their links were made from.)
        for user in unsent:
            if user.pk in previous:
                User.objects.filter(pk=user.pk, invitation_sent_at=now).update(
                    invitation_sent_at=previous[user.pk]
                )


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


REMINDER_DAYS = (30, 7)
LABELS = {"secret": "client secret", "certificate": "certificate"}
EXPIRY_FIELDS = {"secret": "client_secret_expires_on", "certificate": "certificate_expires_at"}


def remind_expiring(now=None) -> int:
    """Email the site admins when the secret or certificate in use expires within 30, then
    7 days; once each per secret or certificate (the row keeps what was sent; several
    schedulers may run, and only the one whose update lands sends). Returns emails sent."""
    now = now or timezone.now()
    horizon = now + timedelta(days=max(REMINDER_DAYS))
    candidates = DynamicsCrmSetting.objects.filter(
        Q(
            credential_type__in=[
                DynamicsCrmSetting.CredentialType.SECRET,
                DynamicsCrmSetting.CredentialType.DELEGATED,
            ],
            client_secret_expires_on__lte=horizon.date(),
        )
        | Q(
            credential_type=DynamicsCrmSetting.CredentialType.CERTIFICATE,
            certificate_expires_at__lte=horizon,
        )
    ).select_related("company")
    sent = 0
    for setting in candidates:
        for kind, expires_at in setting.credential_expiries():
            days_left = (expires_at - now) / timedelta(days=1)
            if days_left <= 0:
                continue  # expired: the failing syncs report it
            due = min((d for d in REMINDER_DAYS if days_left <= d), default=None)
            field = f"{kind}_reminded_days"
            already = getattr(setting, field)
            if due is None or (already is not None and already <= due):
                continue
            # Claimed only if nobody reminded meanwhile and the credential is still the same.
            expiry_field = EXPIRY_FIELDS[kind]
            claimed = DynamicsCrmSetting.objects.filter(
                pk=setting.pk, **{field: already, expiry_field: getattr(setting, expiry_field)}
            ).update(**{field: due})
            if claimed:
                setattr(setting, field, due)
                # A secret's date is a calendar day; a certificate's, a moment.
                days = (expires_at.date() - now.date()).days if kind == "secret" else int(days_left)
                credential_expiring(setting, kind, expires_at, max(1, days))
                sent += 1
    return sent


def expiry_notices(setting: DynamicsCrmSetting, now=None) -> list[dict]:
    """For the integration page: the credentials in use that expire within 30 days, or did."""
    now = now or timezone.now()
    notices = []
    for kind, expires_at in setting.credential_expiries():
        if expires_at - now <= timedelta(days=max(REMINDER_DAYS)):
            notices.append({"label": LABELS[kind], "at": expires_at, "expired": expires_at <= now})
    return notices
