"""A whole run: its lease, its mode (delta or full), its pages, settling, and its record.

execute_run is what a worker, the command line and the tests call; a lookup of one person
(lookup.py) goes through the same lease and finish_run.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta

from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from learnexa.dataflow.runtime import paged_run
from learnexa.ops.logs import log_context

from .. import notifications
from ..credentials import AuthenticationError
from ..dataverse import DataverseClient, DataverseError, DeltaExpired
from ..mapping import Mapping
from ..models import DynamicsCrmSetting, SyncRun
from ..retries import RetryBudget
from .apply import LeaseLost
from .context import SyncContext
from .fetch import open_client
from .flow import PageFlow, SliceEnded
from .settle import settle

logger = logging.getLogger(__name__)

# Where change tracking is off, changes are polled on modifiedon, overlapping the last read
# by this much so that a change saved while it ran is not missed.
POLL_OVERLAP = timedelta(minutes=10)
# Dataverse's code for a request asking for change tracking on a table without it.
TRACKING_REFUSED = "0x80060888"


class SyncAlreadyRunning(Exception):
    """Another run holds the company's lease."""


@contextmanager
def run_lease(run: SyncRun, setting: DynamicsCrmSetting) -> Iterator[None]:
    """Hold the company's lease for `run` until the block ends. Raises SyncAlreadyRunning,
    without touching the run, if another run holds it."""
    if not setting.acquire_lease(run.lease_owner):
        raise SyncAlreadyRunning(f"A sync of {run.company} is already running.")
    try:
        yield
    finally:
        setting.release_lease(run.lease_owner)


def start_run(run: SyncRun) -> None:
    run.status = SyncRun.Status.RUNNING
    run.started_at = run.started_at or timezone.now()
    run.finished_at = None
    run.error = ""
    run.save(update_fields=["status", "started_at", "finished_at", "error"])


def execute_run(
    run: SyncRun,
    *,
    progress: Callable[[SyncRun], None] | None = None,
    client: DataverseClient | None = None,
    time_slice: float | None = None,
    serial: bool = False,
) -> SyncRun:
    """Run (or resume) one sync under the company's lease; return it finished.

    Raises SyncAlreadyRunning, without touching the run, if another run holds the lease.
    Any other failure is recorded on the run and its settings, which say what to fix.
    With `time_slice` (seconds), a long read stops after the page that used it up and the
    run is left queued (`run.sliced`), so that a worker serves other companies in between.
    `serial` works through the pages one step after the other in this thread (see PageFlow;
    for measuring).
    """
    # The settings as they are now, not as the caller loaded them; loaded once for the run.
    run.setting = setting = DynamicsCrmSetting.objects.select_related("company").get(
        pk=run.setting_id
    )
    with run_lease(run, setting), log_context(run=run.pk, company=setting.company.slug):
        run.retryable = run.will_retry = run.sliced = False
        deadline = time.monotonic() + time_slice if time_slice else None
        counted = run.requests, run.throttle_wait_seconds
        start_run(run)
        try:
            client = client or open_client(setting)
            if isinstance(getattr(client, "retry", None), RetryBudget):
                client.retry.on_throttle = _show_throttling(run)
            with client, paged_run() as after_page:
                context = SyncContext.for_run(setting, client)
                flow = PageFlow(
                    run,
                    context,
                    progress=progress,
                    deadline=deadline,
                    after_page=after_page,
                    serial=serial,
                )
                _read_and_settle(run, flow)
        except SliceEnded:
            run.sliced = True
            run.status = SyncRun.Status.QUEUED
            run.save(update_fields=["status"])
        except (AuthenticationError, DataverseError, LeaseLost) as exc:
            run.retryable = getattr(exc, "retryable", False)
            _count_requests(run, client, counted)
            finish_run(run, error=str(exc))
        except (InterfaceError, OperationalError) as exc:
            # The database connection dropped (a restart, a failover) or stayed locked: record
            # the failure over a fresh connection; a retry resumes from the last page.
            logger.exception("Sync %s of %s lost the database", run.pk, run.company)
            connection.close_if_unusable_or_obsolete()
            run.retryable = True
            _count_requests(run, client, counted)
            finish_run(
                run,
                error=f"The sync lost its connection to the database, or found it locked "
                f"({type(exc).__name__}); it stopped after its last complete page.",
            )
        except Exception as exc:
            logger.exception("Sync %s of %s failed unexpectedly", run.pk, run.company)
            _count_requests(run, client, counted)
            finish_run(
                run,
                error=f"The sync stopped on an unexpected error ({type(exc).__name__}); "
                "it has been logged for the operators.",
            )
        else:
            finish_run(run)
    return run


def _show_throttling(run: SyncRun) -> Callable[[float | None], None]:
    """Set the run's throttled_until while it waits on a 429, and clear it after: one UPDATE
    each, from whichever thread waits (the fetching or mapping thread closes its own connection)."""
    owner = threading.get_ident()

    def show(wait: float | None) -> None:
        until = None if wait is None else timezone.now() + timedelta(seconds=wait)
        run.throttled_until = until
        try:
            SyncRun.objects.filter(pk=run.pk).update(throttled_until=until)
        finally:
            if threading.get_ident() != owner:
                connection.close()

    return show


def _count_requests(run: SyncRun, client: DataverseClient | None, counted: tuple) -> None:
    """A failed run's requests and waits, including those since its last written page."""
    if client is None:
        return
    run.requests = counted[0] + client.requests
    run.throttle_wait_seconds = counted[1] + client.throttle_wait_seconds
    SyncRun.objects.filter(pk=run.pk).update(
        requests=run.requests, throttle_wait_seconds=run.throttle_wait_seconds
    )


def _choose_mode(run: SyncRun, mapping) -> None:
    reason = (
        "Asked for a full reconciliation."
        if run.full
        else run.setting.needs_full_sync(mapping=mapping)
    )
    run.mode = SyncRun.Mode.FULL if reason else SyncRun.Mode.DELTA
    run.mode_reason = reason or "Changes since the last sync."
    run.save(update_fields=["mode", "mode_reason"])


def _read_and_settle(run: SyncRun, flow: PageFlow) -> None:
    """The run's read, in its mode: the changes since the last sync (a delta), or every
    record (a full read), the latter when Dynamics no longer holds the changes. Then what
    the complete read decides, and where the next delta starts."""
    context = flow.context
    setting, client, mapping = context.setting, context.client, context.mapping
    resuming = bool(run.next_page_url) or run.read_complete
    if not resuming:
        _choose_mode(run, mapping)

    if run.mode == SyncRun.Mode.DELTA and not run.read_complete:
        try:
            flow.read(run.next_page_url or setting.delta_link, full=False)
        except DeltaExpired:
            run.mode, run.mode_reason = (
                SyncRun.Mode.FULL,
                ("Dynamics no longer holds the changes since the last sync; reading everything."),
            )
            run.next_page_url = ""
            run.save(update_fields=["mode", "mode_reason", "next_page_url"])
            setting.forget_delta()

    if run.mode == SyncRun.Mode.FULL and not run.read_complete:
        url, checking = run.next_page_url, None
        if not url:
            logical_name = mapping.source.logical_name
            if setting.change_tracking and flow.prefetches:
                # On at the last check: the read asks for tracking at once, and the check is
                # asked beside it rather than waited for before the first page.
                checking = _beside(client.change_tracking_enabled, logical_name)
            else:
                _keep_change_tracking(setting, client.change_tracking_enabled(logical_name))
            flow.expected = _count_records(client, logical_name, beside=flow.prefetches)
            url = client.collection_url(mapping.source.key, select=mapping.columns)
        if flow.prefetches:
            # Beside the first page, so that the later ones need no formatted values.
            _beside(_read_lookup_names, mapping)
        try:
            flow.read(url, full=True, track_changes=bool(setting.change_tracking))
        except DataverseError as exc:
            if checking is None or exc.code != TRACKING_REFUSED or run.pages:
                raise
            # Switched off in Dynamics since the last check: read without it.
            logger.info("Change tracking is off for %s now; reading without it", logical_name)
            _keep_change_tracking(setting, False)
            flow.read(url, full=True, track_changes=False)
        if checking is not None:
            _take_change_tracking(setting, checking)
        flow.take_expected(wait=True)

    settle(run, context, full=run.mode == SyncRun.Mode.FULL)
    if not run.dry_run:
        _keep_delta(run, context)


def _read_lookup_names(mapping: Mapping) -> None:
    """Read the names of the lookups the mapping reads; should that fail, pages carry them."""
    try:
        mapping.read_lookup_names()
    except Exception as exc:
        logger.warning("Could not read the names of lookups: %s", exc)


def _keep_change_tracking(setting: DynamicsCrmSetting, enabled: bool) -> None:
    setting.change_tracking = enabled
    setting.save(update_fields=["change_tracking"])


def _take_change_tracking(setting: DynamicsCrmSetting, checking: Future) -> None:
    """Keep what the check asked beside the read found. A failed check changes nothing: the
    read itself asked for tracking, and the next sync starts from its delta link only if
    Dynamics gave one (see _keep_delta)."""
    try:
        enabled = checking.result()
    except Exception as exc:
        logger.warning("Could not check whether change tracking is still on: %s", exc)
        return
    if enabled != setting.change_tracking:
        _keep_change_tracking(setting, enabled)


def _beside[T](ask: Callable[..., T], *args) -> Future[T]:
    """Ask Dynamics in a thread of its own, beside the read, in the run's log context."""
    asking = ThreadPoolExecutor(1, thread_name_prefix="sync-beside")
    try:
        return asking.submit(contextvars.copy_context().run, ask, *args)
    finally:
        asking.shutdown(wait=False)


def _answered[T](ask: Callable[..., T], *args) -> Future[T]:
    """Ask Dynamics now, in this thread: the answer, or the error, as _beside gives it."""
    answered = Future()
    try:
        answered.set_result(ask(*args))
    except Exception as exc:
        answered.set_exception(exc)
    return answered


def _count_records(client: DataverseClient, logical_name: str, *, beside: bool) -> Future:
    """How many records the full read will return, for its progress bar: asked `beside` the
    read where pages are fetched in a thread too (one more wait on Dynamics before the first
    page would be one more on the run's time), and only an estimate (PageFlow.take_expected
    keeps it, or logs why not)."""
    return (_beside if beside else _answered)(client.record_count, logical_name)


def _keep_delta(run: SyncRun, context: SyncContext) -> None:
    """Where the next delta sync starts: Dataverse's delta link, or a modifiedon poll."""
    setting, mapping = context.setting, context.mapping
    if setting.change_tracking and run.new_delta_link:
        setting.delta_link = run.new_delta_link
    else:
        since = (run.started_at - POLL_OVERLAP).strftime("%Y-%m-%dT%H:%M:%SZ")
        setting.delta_link = context.client.collection_url(
            mapping.source.key, select=mapping.columns, filter=f"modifiedon ge {since}"
        )
    setting.delta_fingerprint = mapping.fingerprint
    update = ["delta_link", "delta_fingerprint"]
    if run.mode == SyncRun.Mode.FULL:
        setting.last_full_sync_at = run.started_at
        update.append("last_full_sync_at")
    setting.save(update_fields=update)


def finish_run(run: SyncRun, *, error: str = "") -> None:
    now = timezone.now()
    run.status = SyncRun.Status.FAILED if error else SyncRun.Status.SUCCEEDED
    run.error = error
    run.finished_at = now
    run.save(update_fields=["status", "error", "finished_at"])
    # The settings as they are now: an admin may have changed them while the run read
    # (paused its schedule, say), and the failures are counted on top of theirs.
    setting = run.setting
    setting.refresh_from_db()
    if run.dry_run and not error:
        return
    setting.status = setting.Status.ERROR if error else setting.Status.OK
    setting.last_error = error
    setting.last_sync_at = now
    # A transient failure of a background run is retried from its checkpoint; only a run
    # that won't be retried counts as failed.
    run.will_retry = (
        bool(error)
        and run.retryable
        and run.attempt < SyncRun.MAX_ATTEMPTS
        and (run.trigger not in (SyncRun.Trigger.COMMAND_LINE, SyncRun.Trigger.LOOKUP))
    )
    if error and not run.will_retry:
        setting.consecutive_failures += 1
        if (
            setting.consecutive_failures >= setting.MAX_CONSECUTIVE_FAILURES
            and not setting.schedule_paused
        ):
            setting.schedule_paused = True
            transaction.on_commit(lambda: notifications.schedule_paused(setting))
        else:
            transaction.on_commit(lambda: notifications.run_failed(run))
    elif not error:
        setting.consecutive_failures = 0
    setting.save(
        update_fields=[
            "status",
            "last_error",
            "last_sync_at",
            "consecutive_failures",
            "schedule_paused",
            "updated_at",
        ]
    )
    log = logger.warning if error else logger.info
    log(
        "Sync %s of %s %s: %s",
        run.pk,
        run.company.slug,
        run.status,
        error or ", ".join(f"{n} {getattr(run, n)}" for n in SyncRun.COUNTERS),
    )
