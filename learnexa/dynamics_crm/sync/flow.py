"""A run's pages, each through the stages in turn:

    fetch a page → map → match → plan → apply → record

Pipelined: while a page is written (apply, record) in the sync's own thread, the next one is
planned in the planning thread once it is matched, the one after it mapped in the mapping
thread, and the next fetched in the fetching thread, which asks Dynamics for a page as soon
as it has parsed the one before. SQLite and the socket release the GIL while they work, so
they overlap.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing

from django.db import connection

from learnexa.accounts.models import Company
from learnexa.dataflow.pipeline import Prefetched

from .. import sync as stages
from ..dataverse import Page
from ..mapping import MappedRecord, Mapping
from ..models import SyncRun
from .apply import PageTransactions
from .context import SyncContext
from .match import Candidates
from .plan import NewUser, Plan

logger = logging.getLogger(__name__)


class SliceEnded(Exception):
    """The run used its time slice; it goes back in the queue and resumes from its page."""


class PageFlow:
    """How one run reads: `read` takes every page of a URL through the stages, in the
    order of the methods below, and writes each with the run's checkpoint.

    The stages are called as the package exports them (`sync.match_page`, …), so that a
    test or a benchmark may wrap one. `serial` does all of it in the sync's own thread,
    one step after the other (the benchmark's --serial): pages still share transactions
    as prefetched ones do.
    """

    def __init__(
        self,
        run: SyncRun,
        context: SyncContext,
        *,
        progress: Callable[[SyncRun], None] | None = None,
        deadline: float | None = None,
        after_page: Callable[[], None] = lambda: None,
        serial: bool = False,
    ):
        self.run, self.context = run, context
        self.progress, self.deadline, self.after_page = progress, deadline, after_page
        self.serial = serial
        self.transactions = PageTransactions()
        # The read's expected record count, being asked for beside it (see run.py).
        self.expected: Future | None = None
        # The run's counts before this flow; its client counts from zero.
        self.base_requests, self.base_wait = run.requests, run.throttle_wait_seconds

    def read(self, url: str, *, full: bool, track_changes: bool = False) -> None:
        """Every page from `url` on. Each page is matched before the page ahead of it is
        written, and planned in a second thread while it is. Should that write touch
        anything the match looked at, the page is matched and planned again: the result is
        always what matching after the write would have given. When the next page isn't
        here yet, the page ahead is written at once instead, while Dynamics answers."""
        pages = self.pages(url, track_changes)
        transactions = self.transactions
        unwritten: tuple[Page, Plan] | None = None
        with self.planner() as planner, closing(pages):
            try:
                while True:
                    # Pages written while the next is at hand share a transaction. Before
                    # waiting on Dynamics, the page held back is written and committed, so
                    # that the wait hides its writing and doesn't keep the database locked.
                    if not getattr(pages, "ready", bool)():
                        if unwritten:
                            held_back, unwritten = unwritten, None
                            self.write(*held_back)
                            del held_back
                        transactions.commit()
                    if (item := next(pages, None)) is None:
                        break
                    page, mapped = item
                    del item
                    candidates = self.match(page, mapped)
                    # In the run's log context (its id and company on every line).
                    planned = planner.submit(
                        contextvars.copy_context().run, self.plan, mapped, candidates, full
                    )
                    before, unwritten = unwritten, None
                    if before:
                        self.write(*before)
                    plan = planned.result()
                    if before and not candidates.keys.isdisjoint(before[1].written):
                        candidates = self.match(page, mapped)
                        plan = self.plan(mapped, candidates, full)
                    unwritten = page, plan
                    # Freeing the page written and this page's mapped records (hundreds of
                    # thousands of objects) is Python work: left to the planning thread.
                    done = [before, mapped, candidates]
                    before = mapped = candidates = None
                    planner.submit(done.clear)
            finally:
                # The last page; or, when reading the next one failed, the page before it,
                # so that a retry resumes after it.
                if unwritten:
                    self.write(*unwritten)
                transactions.commit()

    def pages(self, url: str, track_changes: bool) -> Iterator[tuple[Page, list[MappedRecord]]]:
        """Fetch a page and map it, the next ones while this one is written: where
        `prefetches`, pages are fetched in one thread and mapped in another, so that the next
        request leaves as soon as a page is parsed, not once it is mapped as well."""
        context = self.context
        fetched = context.client.pages(
            url,
            track_changes=track_changes,
            formatted_values=context.mapping.wants_formatted_values,
        )
        if not self.prefetches:
            return self.map_pages(fetched)
        if self.serial:
            return _AtHand(self.map_pages(fetched))
        return Prefetched(self.map_pages(Prefetched(fetched, name="sync-fetch")), name="sync-map")

    @property
    def prefetches(self) -> bool:
        """Whether Dynamics may be asked from another thread than the sync's own: not with a
        delegated sign-in, whose token refresh writes the token cache to the database."""
        setting = self.context.setting
        return setting.credential_type != setting.CredentialType.DELEGATED

    def map_pages(self, pages: Iterator[Page]):
        """Each page with its mapped records; closes `pages` (the client's pages, or the
        fetching thread) when done."""
        mapping = self.context.mapping
        with closing(pages):
            for page in pages:
                yield page, mapping.map_page(page.rows)

    def match(self, page: Page, mapped: list[MappedRecord]) -> Candidates:
        context = self.context
        return stages.match_page(context.company, mapped, context.link, page.deleted_ids)

    def plan(self, mapped: list[MappedRecord], candidates: Candidates, full: bool) -> Plan:
        """Plan a page and convert its rows for the database: in the planning thread, which
        must not query the database."""
        context = self.context
        plan = stages.plan_page(
            context.company,
            mapped,
            context.mapping,
            candidates,
            create_users=context.setting.create_users,
        )
        # The records a full read has seen, but for the users it creates: those are known
        # present by their change record (see settle._plan_missing).
        seen = []
        if full:
            at = NewUser.INDEX[plan.link]
            created = {user.values[at] for user in plan.creates}
            seen = [m.record_id for m in mapped if m.record_id and m.record_id not in created]
        stages.prepare_plan(plan, self.run.pk, seen, connection)
        return plan

    def write(self, page: Page, plan: Plan) -> None:
        """Apply a page's plan and record it with the run's progress; stop the run after it
        when its time slice is used up."""
        run, client = self.run, self.context.client
        with self.transactions.page(last=not page.next_link):
            stages.apply_plan(
                run,
                plan,
                page,
                requests=self.base_requests + client.requests,
                throttle_wait=self.base_wait + client.throttle_wait_seconds,
            )
        self.after_page()
        self.take_expected()
        if self.progress:
            self.progress(run)
        if self.deadline and page.next_link and time.monotonic() >= self.deadline:
            raise SliceEnded

    def take_expected(self, *, wait: bool = False) -> None:
        """Keep the expected record count on the run once Dynamics has given it: only an
        estimate, so a failure to count is logged and the read goes on without it."""
        expected, run = self.expected, self.run
        if expected is None or not (wait or expected.done()):
            return
        self.expected = None
        try:
            run.expected_records = expected.result()
        except Exception as exc:
            logger.warning("Sync %s could not count the rows to read: %s", run.pk, exc)
            run.expected_records = None
        SyncRun.objects.filter(pk=run.pk).update(expected_records=run.expected_records)

    def planner(self) -> ThreadPoolExecutor | _InThisThread:
        """Where pages are planned: a thread of their own, or this one (serial)."""
        if self.serial:
            return _InThisThread()
        return ThreadPoolExecutor(1, thread_name_prefix="sync-plan")


def plan_changes(
    company: Company,
    records: list[MappedRecord],
    mapping: Mapping,
    *,
    create_users: bool = True,
    now=None,
) -> Plan:
    """Match one page's records and plan what happens to them, outside a run's flow (a
    lookup of one person)."""
    candidates = stages.match_page(company, records, mapping.source.link_field)
    return stages.plan_page(
        company, records, mapping, candidates, create_users=create_users, now=now
    )


class _AtHand:
    """serial: pages fetched and mapped in the sync's own thread when asked for. Always
    "ready", so that pages share transactions as they do when prefetched."""

    def __init__(self, items):
        self.items = iter(items)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.items)

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass


class _InThisThread:
    """serial: plan each page in the sync's own thread, when it is submitted."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args, **kwargs) -> Future:
        future = Future()
        future.set_result(fn(*args, **kwargs))
        return future
