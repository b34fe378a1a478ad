"""A company's sync runs: how each started, how far it got, what it did to whom."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from django.db import models

from learnexa.accounts.models import Company, User

from .setting import DynamicsCrmSetting


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
        WEBHOOK = "webhook", "A change in Dynamics (webhook)"

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
    # Set while the run waits because Dynamics asked it to slow down (429), for the progress.
    throttled_until = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    hold = models.CharField(max_length=12, choices=Hold.choices, blank=True, default="")
    hold_decided_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    hold_decided_at = models.DateTimeField(null=True, blank=True)
    # How many records the read is expected to return (Dataverse's row count), for a progress
    # bar and an ETA; null when unknown.
    expected_records = models.PositiveIntegerField(null=True, blank=True)
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
    # commits (on PostgreSQL that took longer than writing them: benchmarks/README.md).
    # Deleting a run or a user still cascades, or clears `user`, through the ORM.
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
    # A held deactivation decided one person at a time: who decided, and when.
    decided_by = models.ForeignKey(
        User,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    decided_at = models.DateTimeField(null=True, blank=True)

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
