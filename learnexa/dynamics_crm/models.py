"""The Dynamics 365 integration's state: one settings row per company, and its sync runs."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, time, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from learnexa import encryption
from learnexa.accounts.models import Company, User

from . import hosts

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

    class Frequency(models.TextChoices):
        OFF = "off", "Only when started by hand"
        HOURLY = "hourly", "Every hour"
        DAILY = "daily", "Every day"
        WEEKLY = "weekly", "Every week"
        MONTHLY = "monthly", "Every month"

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
        from .schedule import next_run_at

        self.next_sync_at = next_run_at(self, after or timezone.now())

    def needs_full_sync(self, now=None) -> str:
        """Why the next sync must read everything, or "" if a delta will do."""
        from .mapping import Mapping

        now = now or timezone.now()
        if not self.delta_link:
            return "No earlier sync to continue from."
        if self.delta_fingerprint != Mapping.for_setting(self).fingerprint:
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


class SyncRun(models.Model):
    """One sync of a company's users: how it started, how far it got, what it did."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Trigger(models.TextChoices):
        SETTINGS_SAVED = "settings_saved", "Settings saved"
        MANUAL = "manual", "Started by an admin"
        SCHEDULE = "schedule", "Schedule"
        COMMAND_LINE = "command_line", "Command line"
        LOOKUP = "lookup", "One person"

    class Mode(models.TextChoices):
        FULL = "full", "Full reconciliation"
        DELTA = "delta", "Changes since the last sync"

    class Hold(models.TextChoices):
        NONE = "", "Nothing held"
        HELD = "held", "Deactivations held for approval"
        APPROVED = "approved", "Held deactivations approved"
        REJECTED = "rejected", "Held deactivations rejected"
        SUPERSEDED = "superseded", "Held deactivations superseded by a later full sync"

    # Attempts at a run that fails on something transient (throttling, an outage).
    MAX_ATTEMPTS = 3

    COUNTERS = (
        "created",
        "updated",
        "unchanged",
        "deactivated",
        "reactivated",
        "held",
        "skipped",
        "failed",
    )

    setting = models.ForeignKey(DynamicsCrmSetting, on_delete=models.CASCADE, related_name="runs")
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="sync_runs")
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    full = models.BooleanField(default=False, help_text="Asked for a full reconciliation.")
    mode = models.CharField(max_length=8, choices=Mode.choices, blank=True)
    mode_reason = models.CharField(max_length=200, blank=True)
    dry_run = models.BooleanField(default=False)
    attempt = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    lease_owner = models.UUIDField(default=uuid.uuid4, editable=False)
    task_id = models.CharField(max_length=64, blank=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    pages = models.PositiveIntegerField(default=0)
    records = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    deactivated = models.PositiveIntegerField(default=0)
    reactivated = models.PositiveIntegerField(default=0)
    held = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    throttle_wait_seconds = models.FloatField(default=0)
    error = models.TextField(blank=True)
    hold = models.CharField(max_length=12, choices=Hold.choices, blank=True, default="")
    hold_decided_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The read's end: set once every page was read, so "missing" can be trusted; then the
    # deactivations are settled (applied, or held for an admin) once.
    read_complete = models.BooleanField(default=False)
    settled = models.BooleanField(default=False)
    new_delta_link = models.TextField(blank=True, editable=False)
    # The checkpoint: the next page to read. A run that stopped half-way (its worker died)
    # resumes here instead of starting over; pages already applied stay applied.
    next_page_url = models.TextField(blank=True, editable=False)

    class Meta:
        indexes = [models.Index(fields=["company", "-queued_at"])]
        ordering = ["-queued_at", "-id"]

    def __str__(self) -> str:
        return f"Sync {self.pk} of {self.company} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    def summary(self) -> dict:
        return {
            "run": self.pk,
            "company": self.company.slug,
            "status": self.status,
            "trigger": self.trigger,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "pages": self.pages,
            "records": self.records,
            "requests": self.requests,
            "throttle_wait_seconds": round(self.throttle_wait_seconds, 1),
            **{name: getattr(self, name) for name in self.COUNTERS},
            "error": self.error,
        }


class JSONTextField(models.JSONField):
    """JSON kept as text, which the database neither parses nor checks: PostgreSQL's jsonb
    parsed every change record written (half the time of writing them), and SQLite checked
    each with JSON_VALID. Only ever read back whole, never queried into."""

    def db_type(self, connection) -> str:
        return "text"

    def db_check(self, connection) -> None:
        return None

    def get_db_prep_value(self, value, connection, prepared=False):
        if not prepared:
            value = self.get_prep_value(value)
        return json.dumps(value, cls=self.encoder)


class SyncChange(models.Model):
    """What a run did to one user, or why it left a record alone."""

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        UPDATED = "updated", "Updated"
        DEACTIVATED = "deactivated", "Deactivated"
        REACTIVATED = "reactivated", "Reactivated"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"

    # A run's log, written in bulk by the run itself, for the users it has just written: no
    # foreign key constraints in the database, which checks each row's keys when the page
    # commits (on PostgreSQL 1 s per 100,000 records, more than writing them). Deleting a
    # run or a user still cascades, or clears `user`, through the ORM.
    # Indexed by (run, action) below.
    run = models.ForeignKey(
        SyncRun,
        on_delete=models.CASCADE,
        related_name="changes",
        db_index=False,
        db_constraint=False,
    )
    user = models.ForeignKey(
        User,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="sync_changes",
        db_constraint=False,
    )
    systemuser_id = models.UUIDField(null=True, blank=True)
    email = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    # {"field": [before, after], ...}
    fields = JSONTextField(default=dict, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    # A deactivation waits until the read is complete and the run's total is within the
    # company's limits; held ones wait for an admin.
    pending = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["run", "action"])]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.email or self.systemuser_id}"


class SeenRecord(models.Model):
    """A Dynamics record a full run has read. After a complete read, the linked users whose
    record wasn't seen are the ones deleted in Dynamics or out of scope. Kept in the
    database, not in memory, so that a resumed run still knows what it read. Records the
    run created a user for are not kept here: their change record says as much."""

    # Indexed by the (run, record_id) constraint below; no constraint in the database, as
    # for SyncChange.
    run = models.ForeignKey(
        SyncRun, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    record_id = models.UUIDField()

    class Meta:
        db_table = "dynamics_crm_seen_records"
        constraints = [
            models.UniqueConstraint(fields=["run", "record_id"], name="seen_once_per_run")
        ]

    def __str__(self) -> str:
        return f"{self.record_id} seen by sync {self.run_id}"
