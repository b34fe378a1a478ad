"""A company's connection to Dynamics 365: its settings row, credentials, schedule and lease."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, time, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from learnexa import encryption
from learnexa.accounts.models import Company

from .. import hosts, timetable
from ..mapping import Mapping

GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
TENANT_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def validate_tenant_id(value: str) -> None:
    if not (GUID.match(value) or TENANT_DOMAIN.match(value.lower())):
        raise ValidationError(
            "The tenant ID is the Directory (tenant) ID shown on the app registration's "
            "Overview page in Entra ID, a GUID like 72f988bf-86f1-41af-91ab-2d7cd011db47, "
            "or the tenant's domain like contoso.onmicrosoft.com."
        )


def validate_client_id(value: str) -> None:
    if not GUID.match(value):
        raise ValidationError(
            "The client ID is the Application (client) ID shown on the app registration's "
            "Overview page in Entra ID, a GUID like d0835aea-3d68-462f-91a7-38edbbe4ab6f."
        )


def validate_organization_uri(value: str) -> None:
    try:
        hosts.normalize_organization_uri(value)
    except hosts.HostNotAllowed as exc:
        raise ValidationError(str(exc)) from exc


def validate_authority_host(value: str) -> None:
    try:
        hosts.normalize_authority_host(value)
    except hosts.HostNotAllowed as exc:
        raise ValidationError(str(exc)) from exc


class DynamicsCrmSetting(models.Model):
    """A company's connection to its Dynamics 365 organization, and the integration's state."""

    class Status(models.TextChoices):
        CONFIGURED = "configured", "Configured, not synced yet"
        OK = "ok", "Connected"
        ERROR = "error", "Last sync failed"
        # No credential is saved since an admin disconnected: nothing syncs until one is.
        DISCONNECTED = "disconnected", "Disconnected"

    Frequency = timetable.Frequency

    # After this many failed runs in a row the schedule pauses and the site admins are told.
    MAX_CONSECUTIVE_FAILURES = 5

    company = models.OneToOneField(
        Company, on_delete=models.CASCADE, related_name="dynamics_crm_setting"
    )
    organization_uri = models.CharField(max_length=255, validators=[validate_organization_uri])
    tenant_id = models.CharField(max_length=255, validators=[validate_tenant_id])
    client_id = models.CharField(max_length=36, validators=[validate_client_id])
    authority_host = models.CharField(
        max_length=255, default=hosts.DEFAULT_AUTHORITY_HOST, validators=[validate_authority_host]
    )

    # -- credentials: one kind at a time (see credentials.py). Secrets, private keys and token
    # caches are Fernet tokens (learnexa.encryption), never stored in the clear or shown.
    class CredentialType(models.TextChoices):
        SECRET = "secret", "Client secret"
        CERTIFICATE = "certificate", "Certificate"
        DELEGATED = "delegated", "Sign in with Microsoft"

    credential_type = models.CharField(
        max_length=16, choices=CredentialType.choices, default=CredentialType.SECRET
    )
    client_secret_encrypted = models.TextField(blank=True, editable=False)
    client_secret_set_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Entra ID doesn't tell the client when its secret expires; the admin may.
    client_secret_expires_on = models.DateField(null=True, blank=True)
    # The certificate is public (sent as x5c); its private key is encrypted.
    certificate_key_encrypted = models.TextField(blank=True, editable=False)
    certificate_pem = models.TextField(blank=True, editable=False)
    certificate_thumbprint = models.CharField(max_length=40, blank=True, editable=False)
    certificate_subject = models.CharField(max_length=255, blank=True, editable=False)
    certificate_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    certificate_set_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Delegated: MSAL's serialized token cache (the refresh token with it), and who signed in.
    token_cache_encrypted = models.TextField(blank=True, editable=False)
    delegated_username = models.CharField(max_length=255, blank=True, editable=False)
    delegated_signed_in_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Expiry reminders sent for the current secret / certificate: the fewest days ahead
    # reminded so far (30, then 7); cleared when a new one is saved.
    secret_reminded_days = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    certificate_reminded_days = models.PositiveSmallIntegerField(
        null=True, blank=True, editable=False
    )

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CONFIGURED)
    last_error = models.TextField(blank=True)
    last_sync_at = models.DateTimeField(null=True, blank=True)

    # -- schedule: at a time of day in the company's time zone
    sync_frequency = models.CharField(
        max_length=16, choices=Frequency.choices, default=Frequency.WEEKLY
    )
    sync_time = models.TimeField(default=time(2, 0))
    sync_weekday = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(6)], help_text="0 = Monday"
    )
    sync_monthday = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(28)]
    )
    next_sync_at = models.DateTimeField(null=True, blank=True, db_index=True)
    schedule_paused = models.BooleanField(default=False)
    consecutive_failures = models.PositiveSmallIntegerField(default=0)
    # A full reconciliation at least this often, whatever the schedule's delta syncs find.
    full_sync_interval_days = models.PositiveSmallIntegerField(
        default=7, validators=[MinValueValidator(1)]
    )

    # -- lifecycle
    create_users = models.BooleanField(default=True)
    deactivate_missing = models.BooleanField(
        default=True,
        help_text="Deactivate users who were deleted in Dynamics or left the sync's scope.",
    )
    send_welcome_email = models.BooleanField(default=False)

    class LearnerSignIn(models.TextChoices):
        MICROSOFT = "microsoft", "With Microsoft (their work account)"
        INVITATION = "invitation", "With an invitation to set a password"
        NOT_YET = "not_yet", "Not yet"

    # How the people the sync brings in sign in. With Microsoft, those without an account in
    # the company's tenant (contacts, people without an Entra object id) get invitations.
    learner_sign_in = models.CharField(
        max_length=16, choices=LearnerSignIn.choices, default=LearnerSignIn.NOT_YET
    )
    deactivation_limit_count = models.PositiveIntegerField(default=20)
    deactivation_limit_percent = models.PositiveSmallIntegerField(
        default=10, validators=[MaxValueValidator(100)]
    )
    # Which table people are synced from (see mapping.SOURCES).
    source_table = models.CharField(
        max_length=16,
        choices=[("systemusers", "Users"), ("contacts", "Contacts")],
        default="systemusers",
    )
    # user field → {"column", "fallback", "policy", "clear"}; empty means the defaults.
    field_mapping = models.JSONField(default=dict, blank=True)
    # -- scope (see mapping.Scope): business unit ids, and [{"column", "operator", "value"}]
    scope_business_units = models.JSONField(default=list, blank=True)
    scope_conditions = models.JSONField(default=list, blank=True)

    # -- change tracking
    delta_link = models.TextField(blank=True, editable=False)
    # What the delta link was read with; when the mapping changes, the next sync is full.
    delta_fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    change_tracking = models.BooleanField(null=True, editable=False)
    last_full_sync_at = models.DateTimeField(null=True, blank=True, editable=False)

    # The lease: one sync per company at a time, across any number of workers. A worker
    # holds it while it renews it; if the worker dies, it expires and another may take over.
    lease_owner = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)

    # -- webhook (see webhooks.py): Dynamics posts to /dynamics_crm/webhook/<webhook_id>/
    # with ?code=<key> (WebhookKey authentication). The key is a Fernet token like the
    # secrets; the organization id (WhoAmI's OrganizationId) is what events must carry.
    # NULL until a key is made: unique, and many companies have none yet.
    webhook_id = models.CharField(max_length=32, unique=True, null=True, editable=False)  # noqa: DJ001
    webhook_key_encrypted = models.TextField(blank=True, editable=False)
    webhook_key_set_at = models.DateTimeField(null=True, blank=True, editable=False)
    organization_id = models.CharField(max_length=36, blank=True, editable=False)
    # What "Register automatically" created in Dynamics, to replace it the next time.
    webhook_endpoint_id = models.CharField(max_length=36, blank=True, editable=False)
    webhook_step_ids = models.JSONField(default=list, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "dynamics_crm_settings"

    def __str__(self) -> str:
        return f"Dynamics 365 for {self.company}"

    def save(self, *args, **kwargs):
        # Only the hosts being written are checked: a host the operator has since disallowed
        # must not stop a failure from being recorded, or the admin from disconnecting.
        fields = kwargs.get("update_fields")
        if fields is None or "organization_uri" in fields:
            self.organization_uri = hosts.normalize_organization_uri(self.organization_uri)
        if fields is None or "authority_host" in fields:
            self.authority_host = hosts.normalize_authority_host(self.authority_host)
        self.tenant_id = self.tenant_id.strip()
        self.client_id = self.client_id.strip().lower()
        if self.status == self.Status.DISCONNECTED and self.has_credential:
            # Connected again (a secret saved, a sign-in completed): not synced yet.
            self.status = self.Status.CONFIGURED
            if fields is not None:
                kwargs["update_fields"] = {*fields, "status"}
        super().save(*args, **kwargs)

    # -- credentials: write-only ---------------------------------------------------------

    # What each kind of credential stores; everything else is removed when the kind changes.
    CREDENTIAL_FIELDS = {
        "secret": (
            "client_secret_encrypted",
            "client_secret_set_at",
            "client_secret_expires_on",
            "secret_reminded_days",
        ),
        "certificate": (
            "certificate_key_encrypted",
            "certificate_pem",
            "certificate_thumbprint",
            "certificate_subject",
            "certificate_expires_at",
            "certificate_set_at",
            "certificate_reminded_days",
        ),
        "token_cache": ("token_cache_encrypted", "delegated_username", "delegated_signed_in_at"),
    }
    # Delegated sign-in redeems the code and refreshes tokens as the app: with its secret.
    USES = {
        CredentialType.SECRET: ("secret",),
        CredentialType.CERTIFICATE: ("certificate",),
        CredentialType.DELEGATED: ("secret", "token_cache"),
    }

    @classmethod
    def credential_field_names(cls) -> list[str]:
        return [name for names in cls.CREDENTIAL_FIELDS.values() for name in names]

    def forget_credentials(self, keep=()) -> None:
        """Remove every stored credential except the groups in `keep` (in memory)."""
        for group, names in self.CREDENTIAL_FIELDS.items():
            if group in keep:
                continue
            for name in names:
                field = self._meta.get_field(name)
                setattr(self, name, None if field.null else "")

    def set_client_secret(self, secret: str) -> None:
        self.client_secret_encrypted = encryption.encrypt(secret)
        self.client_secret_set_at = timezone.now()
        self.secret_reminded_days = None

    def client_secret(self) -> str:
        return encryption.decrypt(self.client_secret_encrypted) if self.has_client_secret else ""

    @property
    def has_client_secret(self) -> bool:
        return bool(self.client_secret_encrypted)

    def set_certificate(self, certificate) -> None:
        """`certificate`: a credentials.Certificate, already checked."""
        self.certificate_key_encrypted = encryption.encrypt(certificate.private_key_pem)
        self.certificate_pem = certificate.certificate_pem
        self.certificate_thumbprint = certificate.thumbprint
        self.certificate_subject = certificate.subject[:255]
        self.certificate_expires_at = certificate.not_after
        self.certificate_set_at = timezone.now()
        self.certificate_reminded_days = None

    def certificate_private_key(self) -> str:
        return encryption.decrypt(self.certificate_key_encrypted) if self.has_certificate else ""

    @property
    def has_certificate(self) -> bool:
        return bool(self.certificate_key_encrypted and self.certificate_pem)

    def token_cache(self) -> str:
        return encryption.decrypt(self.token_cache_encrypted) if self.has_token_cache else ""

    @property
    def has_token_cache(self) -> bool:
        return bool(self.token_cache_encrypted)

    @property
    def has_credential(self) -> bool:
        """Whether the chosen kind of credential is complete, so a sync can get a token."""
        kind = self.credential_type
        if kind == self.CredentialType.CERTIFICATE:
            return self.has_certificate
        if kind == self.CredentialType.DELEGATED:
            return self.has_client_secret and self.has_token_cache
        return self.has_client_secret

    def credential_expiries(self) -> list[tuple[str, datetime]]:
        """("secret" | "certificate", when it expires) for what the chosen kind uses."""
        uses = self.USES.get(self.credential_type, ())
        found = []
        if "secret" in uses and self.has_client_secret and self.client_secret_expires_on:
            day = self.client_secret_expires_on
            found.append(("secret", datetime(day.year, day.month, day.day, tzinfo=UTC)))
        if "certificate" in uses and self.has_certificate and self.certificate_expires_at:
            found.append(("certificate", self.certificate_expires_at))
        return found

    # -- schedule -----------------------------------------------------------------------

    def schedule_next(self, after=None) -> None:
        self.next_sync_at = timetable.next_run_at(self, after or timezone.now())

    def needs_full_sync(self, now=None, mapping: Mapping | None = None) -> str:
        """Why the next sync must read everything, or "" if a delta will do. `mapping`: the
        run's, if it has one already."""
        now = now or timezone.now()
        if not self.delta_link:
            return "No earlier sync to continue from."
        if self.delta_fingerprint != (mapping or Mapping.for_setting(self)).fingerprint:
            return "The field mapping changed."
        if not self.last_full_sync_at or now - self.last_full_sync_at > timedelta(
            days=self.full_sync_interval_days
        ):
            return f"The periodic full reconciliation (every {self.full_sync_interval_days} days) is due."
        return ""

    def forget_delta(self) -> None:
        type(self).objects.filter(pk=self.pk).update(delta_link="", delta_fingerprint="")
        self.delta_link = self.delta_fingerprint = ""

    # -- lease --------------------------------------------------------------------------

    def _lease_qs(self):
        return type(self).objects.filter(pk=self.pk)

    def acquire_lease(self, owner: uuid.UUID) -> bool:
        """Take the company's sync lease unless a live one is held; True if taken."""
        now = timezone.now()
        taken = (
            self._lease_qs()
            .filter(models.Q(lease_owner__isnull=True) | models.Q(lease_expires_at__lt=now))
            .update(lease_owner=owner, lease_expires_at=now + lease_duration())
        )
        return taken == 1

    def renew_lease(self, owner: uuid.UUID) -> bool:
        renewed = (
            self._lease_qs()
            .filter(lease_owner=owner)
            .update(lease_expires_at=timezone.now() + lease_duration())
        )
        return renewed == 1

    def release_lease(self, owner: uuid.UUID) -> None:
        self._lease_qs().filter(lease_owner=owner).update(lease_owner=None, lease_expires_at=None)


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.LEARNEXA_SYNC_LEASE_SECONDS)
