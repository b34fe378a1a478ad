"""Invitations: a link by email to set a password, for the people who have none yet (the
sync creates them so) or who forgot theirs.

A link works once and for LEARNEXA_INVITATION_DAYS. Its token, like Django's password reset
token, is a timestamp and an HMAC of the user's password hash, last sign-in and email, so
it dies when a password is set or changed, when the person signs in (Microsoft sign-in
included), or when the email changes. The HMAC also covers `is_active`, `sign_in_epoch`
(raised whenever the user loses access, so a deactivation kills the link for good, even
after a reactivation) and `invitation_sent_at` (so a newer invitation replaces the older).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.mail import send_mail
from django.db.models import Q
from django.tasks import task
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from . import sign_in
from .models import LinkRequest, User

logger = logging.getLogger(__name__)

# The public "email me a link" page: at most this many requests an hour per email (whatever
# the case) and per client address, counted across every web process.
WINDOW = timedelta(hours=1)
MAX_PER_EMAIL = 5
MAX_PER_ADDRESS = 30
# At most this many accounts share an email across companies; a bound, not a rule.
MAX_ACCOUNTS_PER_EMAIL = 20


def _microseconds(moment) -> str:
    # To the microsecond, so that two invitations sent within a second still differ.
    return "" if moment is None else str(round(moment.timestamp() * 1_000_000))


class InvitationTokenGenerator(PasswordResetTokenGenerator):
    key_salt = "learnexa.accounts.invitations.InvitationTokenGenerator"

    def _make_hash_value(self, user, timestamp):
        return (
            f"{super()._make_hash_value(user, timestamp)}|{user.is_active}"
            f"|{user.sign_in_epoch}|{_microseconds(user.invitation_sent_at)}"
        )


# Valid for PASSWORD_RESET_TIMEOUT, which the settings set from LEARNEXA_INVITATION_DAYS.
invitation_tokens = InvitationTokenGenerator()


def base_url(request=None) -> str:
    """The address the site is reached at, without a trailing slash: the request's, else
    LEARNEXA_BASE_URL (for emails sent outside a request, e.g. by the sync)."""
    if request is not None:
        return request.build_absolute_uri("/").rstrip("/")
    return settings.LEARNEXA_BASE_URL.rstrip("/")


def link_for(user: User, base_url: str) -> str:
    """The absolute address of `user`'s page to accept their invitation (set a password)."""
    path = reverse(
        "accept_invitation",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": invitation_tokens.make_token(user),
        },
    )
    return f"{base_url.rstrip('/')}{path}"


def invitation_days() -> int:
    return settings.LEARNEXA_INVITATION_DAYS


def context(request) -> dict:
    """Template context processor: how many days an emailed link works, and how many minutes
    at least pass between two links to the same person."""
    return {
        "invitation_days": invitation_days(),
        "invitation_resend_minutes": max(
            1, round(settings.LEARNEXA_INVITATION_RESEND_SECONDS / 60)
        ),
    }


def validity(days: int | None = None) -> str:
    days = invitation_days() if days is None else days
    return f"{days} day{'' if days == 1 else 's'}"


def invitation_text(user: User, link: str) -> str:
    """The body of an email carrying `link` (the part after any greeting)."""
    company = user.company.name
    if user.has_usable_password():
        opening = (
            f"A link to set a new password for your Learnexa account at {company} was asked "
            "for. If you didn't ask for it, ignore this email: your password stays as it is."
        )
    else:
        opening = (
            f"{company} has invited you to Learnexa, its learning platform. To start, set "
            "a password for your account."
        )
    return (
        f"{opening}\n\n"
        f"Set your password here:\n{link}\n\n"
        f"The link works once, for {validity()}. If it has expired or was already used, "
        "open it anyway: the page lets you ask for a new one.\n\n"
        f"Your account's email: {user.email}\n"
    )


def _claim(user: User, now, *, force: bool) -> bool:
    """Mark an invitation as sent to `user` now, unless (without `force`) one went out less
    than LEARNEXA_INVITATION_RESEND_SECONDS ago; atomic across processes."""
    users = User.objects.filter(pk=user.pk)
    if not force:
        recent = now - timedelta(seconds=settings.LEARNEXA_INVITATION_RESEND_SECONDS)
        users = users.filter(Q(invitation_sent_at__isnull=True) | Q(invitation_sent_at__lte=recent))
    return users.update(invitation_sent_at=now) == 1


def send_invitation(user: User, *, base_url: str, force: bool = False) -> bool:
    """Email `user` a link to set a password, if they may receive one (sign_in.may_receive_link)
    and, unless `force`, if none went out in the last LEARNEXA_INVITATION_RESEND_SECONDS.
    Returns whether it was sent. A failure to send leaves the previous link valid, and raises."""
    if not sign_in.may_receive_link(user):
        return False
    now = timezone.now()
    previous = user.invitation_sent_at
    if not _claim(user, now, force=force):
        return False
    user.invitation_sent_at = now
    try:
        send_mail(
            f"Your invitation to Learnexa at {user.company.name}",
            f"Hello {user.first_name or user.email},\n\n{invitation_text(user, link_for(user, base_url))}",
            settings.DEFAULT_FROM_EMAIL,
            [user.email],
        )
    except Exception:
        User.objects.filter(pk=user.pk, invitation_sent_at=now).update(invitation_sent_at=previous)
        user.invitation_sent_at = previous
        raise
    return True


def request_links(email: str, *, ip: str | None, base_url: str) -> None:
    """The public "email me a link" request: a link goes to each active account with this
    email, in any company, that may receive one. Limited per email and per address; says
    nothing either way, so that nobody learns from it whether an account exists. A worker
    sends the emails: the page takes as long, and does the same, for an email nobody has."""
    email = (email or "").strip().lower()[:254]
    if "@" not in email:
        return
    now = timezone.now()
    since = now - WINDOW
    recent = LinkRequest.objects.filter(at__gte=since)
    if recent.filter(email=email).count() >= MAX_PER_EMAIL or (
        ip and recent.filter(ip=ip).count() >= MAX_PER_ADDRESS
    ):
        logger.info("Link requests for an email or from %s are over the limit", ip)
        return
    LinkRequest.objects.create(email=email, ip=ip)
    LinkRequest.objects.filter(at__lt=since).delete()
    deliver(email, base_url)


def deliver(email: str, base_url: str) -> None:
    email_links.enqueue(email, base_url)


@task()
def email_links(email: str, base_url: str) -> int:
    """Email a link to each account with `email` that may receive one; how many were sent."""
    users = (
        User.objects.with_email(email)
        .filter(is_active=True)
        .select_related("company")
        .order_by("pk")[:MAX_ACCOUNTS_PER_EMAIL]
    )
    sent = 0
    for user in users:
        try:
            sent += send_invitation(user, base_url=base_url)
        except Exception:  # one mail failure must not keep the others from being sent
            logger.exception("Could not email a link to user %s", user.pk)
    return sent
