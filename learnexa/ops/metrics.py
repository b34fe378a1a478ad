"""Prometheus metrics, read from the database at scrape time, so that every gunicorn
worker answers with the same figures (no multiprocess mode).

Finished runs are added up into ops.SyncTotal once each (tally), so that the counters only
grow although old runs are pruned. A run is counted once it has been finished for
LEARNEXA_METRICS_SETTLE_SECONDS: by then a run that failed on something transient has been
queued again (and is counted when it finishes for good), and a run finishing on a worker
whose clock is a little behind is not missed.

No label takes unbounded values: status and mode are fixed sets, and the company's slug is
added only with LEARNEXA_METRICS_PER_COMPANY=true. No per-user data, no secrets.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    SummaryMetricFamily,
)

from . import state
from .models import Heartbeat, SyncTotal, TallyMark

TALLY = "sync_runs"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
RUN_STATUSES = ("succeeded", "failed")
MODES = ("full", "delta", "dry_run", "unknown")


def per_company() -> bool:
    return bool(getattr(settings, "LEARNEXA_METRICS_PER_COMPANY", False))


def _mode(run) -> str:
    return "dry_run" if run.dry_run else (run.mode or "unknown")


def tally(now: datetime | None = None) -> int:
    """Add the runs finished since the last tally to SyncTotal; return how many."""
    SyncRun = state.integration_model("SyncRun")
    if SyncRun is None:
        return 0
    now = now or timezone.now()
    until = now - timedelta(seconds=float(getattr(settings, "LEARNEXA_METRICS_SETTLE_SECONDS", 60)))
    mark = TallyMark.objects.filter(name=TALLY).first()
    since = mark.counted_until if mark else EPOCH
    finished = SyncRun.objects.filter(
        status__in=RUN_STATUSES, finished_at__gt=since, finished_at__lte=until
    )
    # Most scrapes find nothing new: they only read, and take no write lock.
    if until <= since or not finished.exists():
        return 0
    with transaction.atomic():
        mark, _ = TallyMark.objects.select_for_update().get_or_create(
            name=TALLY, defaults={"counted_until": EPOCH}
        )
        if until <= mark.counted_until:
            return 0  # another scrape got here first
        sums: dict[tuple, dict] = defaultdict(lambda: defaultdict(float))
        count = 0
        runs = SyncRun.objects.filter(
            status__in=RUN_STATUSES, finished_at__gt=mark.counted_until, finished_at__lte=until
        ).only(
            "company_id",
            "status",
            "mode",
            "dry_run",
            "started_at",
            "finished_at",
            "records",
            "requests",
            "throttle_wait_seconds",
        )
        for run in runs.iterator():
            count += 1
            row = sums[(run.company_id, run.status, _mode(run))]
            row["runs"] += 1
            if run.started_at:
                row["seconds"] += max(0.0, (run.finished_at - run.started_at).total_seconds())
            row["records"] += run.records
            row["requests"] += run.requests
            row["throttle_wait_seconds"] += run.throttle_wait_seconds
        for (company_id, status, mode), row in sums.items():
            total, _ = SyncTotal.objects.get_or_create(
                company_id=company_id, status=status, mode=mode
            )
            SyncTotal.objects.filter(pk=total.pk).update(
                runs=F("runs") + int(row["runs"]),
                seconds=F("seconds") + row["seconds"],
                records=F("records") + int(row["records"]),
                requests=F("requests") + int(row["requests"]),
                throttle_wait_seconds=F("throttle_wait_seconds") + row["throttle_wait_seconds"],
            )
        mark.counted_until = until
        mark.save(update_fields=["counted_until"])
    return count


class LearnexaCollector:
    """Everything /metrics shows, read from the database on each scrape."""

    def collect(self):
        now = timezone.now()
        tally(now)
        yield from self._sync_totals()
        yield from self._sync_state()
        yield from self._queue(now)
        yield from self._processes(now)
        yield from self._sign_ins(now)

    def _sync_totals(self):
        split = per_company()
        labels = ["status", "mode"] + (["company"] if split else [])
        mode_labels = ["mode"] + (["company"] if split else [])
        runs = CounterMetricFamily(
            "learnexa_sync_runs",
            "Sync runs finished, by outcome and mode (full, delta, dry_run).",
            labels=labels,
        )
        seconds = SummaryMetricFamily(
            "learnexa_sync_run_seconds",
            "Time finished sync runs took, from first start to finish.",
            labels=labels,
        )
        records = CounterMetricFamily(
            "learnexa_sync_records_read",
            "Dynamics records read by finished sync runs.",
            labels=mode_labels,
        )
        requests = CounterMetricFamily(
            "learnexa_dynamics_requests",
            "Dataverse Web API requests made by finished sync runs.",
            labels=mode_labels,
        )
        throttled = CounterMetricFamily(
            "learnexa_dynamics_throttle_wait_seconds",
            "Seconds finished sync runs spent waiting on Dataverse's throttling (429).",
            labels=mode_labels,
        )
        slugs = _company_slugs() if split else {}
        by_labels: dict[tuple, dict] = defaultdict(lambda: defaultdict(float))
        by_mode: dict[tuple, dict] = defaultdict(lambda: defaultdict(float))
        for total in SyncTotal.objects.all():
            company = (slugs.get(total.company_id, "deleted"),) if split else ()
            row = by_labels[(total.status, total.mode, *company)]
            row["runs"] += total.runs
            row["seconds"] += total.seconds
            per_mode = by_mode[(total.mode, *company)]
            per_mode["records"] += total.records
            per_mode["requests"] += total.requests
            per_mode["throttle"] += total.throttle_wait_seconds
        # The overall series exist from the start (at 0), so that rate() sees the first run.
        if not split:
            for status in RUN_STATUSES:
                for mode in MODES:
                    by_labels[(status, mode)]["runs"] += 0
            for mode in MODES:
                by_mode[(mode,)]["records"] += 0
        for key, row in sorted(by_labels.items()):
            runs.add_metric(list(key), row["runs"])
            seconds.add_metric(list(key), count_value=row["runs"], sum_value=row["seconds"])
        for key, row in sorted(by_mode.items()):
            records.add_metric(list(key), row["records"])
            requests.add_metric(list(key), row["requests"])
            throttled.add_metric(list(key), row["throttle"])
        yield from (runs, seconds, records, requests, throttled)

    def _sync_state(self):
        SyncRun = state.integration_model("SyncRun")
        Setting = state.integration_model("DynamicsCrmSetting")
        if SyncRun is None or Setting is None:
            return
        active = GaugeMetricFamily(
            "learnexa_sync_runs_active",
            "Sync runs queued or running now.",
            labels=["status"],
        )
        for status in ("queued", "running"):
            active.add_metric([status], SyncRun.objects.filter(status=status).count())
        yield active
        yield GaugeMetricFamily(
            "learnexa_sync_holds_waiting",
            "Sync runs whose deactivations are held for a site admin's approval.",
            value=SyncRun.objects.filter(hold=SyncRun.Hold.HELD).count(),
        )
        failing = Setting.objects.filter(status=Setting.Status.ERROR)
        paused = Setting.objects.filter(schedule_paused=True)
        yield GaugeMetricFamily(
            "learnexa_sync_companies_failing",
            "Companies whose last sync failed.",
            value=failing.count(),
        )
        yield GaugeMetricFamily(
            "learnexa_sync_companies_paused",
            "Companies whose sync schedule is paused (after repeated failures, or by an admin).",
            value=paused.count(),
        )
        if per_company():
            last_failed = GaugeMetricFamily(
                "learnexa_sync_company_last_run_failed",
                "1 if the company's last sync failed.",
                labels=["company"],
            )
            schedule_paused = GaugeMetricFamily(
                "learnexa_sync_company_schedule_paused",
                "1 if the company's sync schedule is paused.",
                labels=["company"],
            )
            rows = Setting.objects.values_list("company__slug", "status", "schedule_paused")
            for slug, status, is_paused in rows.order_by("company__slug"):
                last_failed.add_metric([slug], int(status == Setting.Status.ERROR))
                schedule_paused.add_metric([slug], int(is_paused))
            yield last_failed
            yield schedule_paused

    def _queue(self, now):
        figures = state.queue(now)
        yield GaugeMetricFamily(
            "learnexa_queue_depth",
            "Background jobs waiting in the queue (due, not yet taken by a worker).",
            value=figures["depth"],
        )
        yield GaugeMetricFamily(
            "learnexa_queue_oldest_age_seconds",
            "How long the oldest waiting job has been due (0 when none waits).",
            value=figures["oldest_age_seconds"],
        )

    def _processes(self, now):
        live = GaugeMetricFamily(
            "learnexa_processes_live",
            "Workers and schedulers whose heartbeat is recent (within three intervals).",
            labels=["kind"],
        )
        for kind, count in sorted(state.live_counts(now).items()):
            live.add_metric([kind], count)
        yield live
        gone = GaugeMetricFamily(
            "learnexa_processes_gone",
            "Heartbeats not seen for three intervals: processes killed or hung.",
            labels=["kind"],
        )
        all_rows = defaultdict(int)
        for beat in Heartbeat.objects.only("kind", "last_seen_at", "interval"):
            if not beat.is_live(now):
                all_rows[beat.kind] += 1
        for kind in Heartbeat.Kind.values:
            gone.add_metric([kind], all_rows[kind])
        yield gone

    def _sign_ins(self, now):
        yield GaugeMetricFamily(
            "learnexa_sign_ins_last_hour",
            "People who signed in within the last hour (by their last sign-in).",
            value=get_user_model().objects.filter(last_login__gte=now - timedelta(hours=1)).count(),
        )


def _company_slugs() -> dict[int, str]:
    return dict(apps.get_model("accounts", "Company").objects.values_list("pk", "slug"))


registry = CollectorRegistry(auto_describe=False)
registry.register(LearnexaCollector())


def render() -> bytes:
    return generate_latest(registry)
