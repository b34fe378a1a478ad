"""Heartbeats of the background processes, and the sync totals /metrics reports."""

from __future__ import annotations

from django.db import models


class Heartbeat(models.Model):
    """A worker or scheduler that is running, as it last said so. A clean exit removes its
    row; one not seen within LIVE_FACTOR of its interval is gone (killed, or hung)."""

    class Kind(models.TextChoices):
        WORKER = "worker", "Worker"
        SCHEDULER = "scheduler", "Scheduler"

    LIVE_FACTOR = 3

    kind = models.CharField(max_length=16, choices=Kind.choices)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)
    # How often it promises to beat, in seconds.
    interval = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "hostname", "pid"], name="one_heartbeat_per_process"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.hostname}:{self.pid}"

    def is_live(self, now) -> bool:
        return (now - self.last_seen_at).total_seconds() <= self.LIVE_FACTOR * self.interval


class SyncTotal(models.Model):
    """Finished sync runs, added up once each as /metrics is scraped (see metrics.tally).
    Kept apart from the runs so that the counters only ever grow: the runs themselves are
    pruned after LEARNEXA_SYNC_HISTORY_DAYS, which would make a counter read from them fall
    (and Prometheus take the fall for a restart, and `increase()` jump)."""

    # The company's id, not a foreign key: a deleted company's runs stay counted.
    company_id = models.BigIntegerField()
    status = models.CharField(max_length=16)
    mode = models.CharField(max_length=16)
    runs = models.BigIntegerField(default=0)
    seconds = models.FloatField(default=0)
    records = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    throttle_wait_seconds = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["company_id", "status", "mode"], name="one_sync_total_per_label_set"
            )
        ]

    def __str__(self) -> str:
        return f"{self.runs} {self.status} {self.mode} run(s) of company {self.company_id}"


class TallyMark(models.Model):
    """How far SyncTotal has counted: runs that finished up to `counted_until` are in it."""

    name = models.CharField(max_length=32, primary_key=True)
    counted_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}: {self.counted_until}"
