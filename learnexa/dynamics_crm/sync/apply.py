"""Apply and record: write a page's prepared plan, and the run's progress, in one transaction.

Users are inserted with ids reserved beforehand and updated with one statement for the
page (an UPDATE … FROM a VALUES list, see dataflow.bulk.update_objects); the change
records, the records a full read has seen and the run's counters and checkpoint go with
them. Pages written one after another share a transaction
(PageTransactions), so a run that stops leaves whole pages behind, never half of one.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from django.conf import settings
from django.db import transaction
from django.db.models import F

from learnexa.accounts.models import User
from learnexa.dataflow.bulk import Rows, allocate_ids, update_objects

from .. import notifications
from ..dataverse import Page
from ..models import SeenRecord, SyncChange, SyncRun
from .plan import Change, NewUser, Plan


class LeaseLost(Exception):
    """The run stopped renewing its lease for too long and another run took over."""


def prepare_plan(plan: Plan, run_id: int, seen: list, connection=None) -> None:
    """Convert the plan's rows for the database driver, which is Python work: done in the
    planning thread while the page before is written. `seen` are the record ids a full read
    has seen (see settle.plan_missing)."""
    plan.written = plan.written_keys()
    plan.user_rows = Rows(
        User,
        NewUser.FIELDS,
        [user.values for user in plan.creates],
        connection=connection,
        later=["id"],
    )
    plan.change_rows = Rows(
        SyncChange,
        Change.COLUMNS,
        (c.row(run_id) for c in plan.changes),
        connection=connection,
        later=["user"],
    )
    plan.seen_rows = Rows(
        SeenRecord,
        ["run", "record_id"],
        ((run_id, i) for i in dict.fromkeys(seen)),
        connection=connection,
    )


class PageTransactions:
    """Pages written one after another share a transaction until it has lasted
    LEARNEXA_SYNC_TRANSACTION_SECONDS. A commit writes out every database page that the pages written since
    the last one changed, and a first sync's pages change most of the users indexes' pages
    (emails and ids are random): committing each page took a tenth of a large first sync.
    A run that stops loses the pages since the last commit, whose checkpoint it resumes
    from; never part of a page.
    """

    def __init__(self, seconds: float | None = None):
        self.seconds = settings.LEARNEXA_SYNC_TRANSACTION_SECONDS if seconds is None else seconds
        self._open = None  # the open transaction's atomic block
        self._since = 0.0

    @contextmanager
    def page(self, *, last: bool = False):
        """Write one page in the open transaction (or a new one); commit it when it has
        lasted long enough or this is the last page, roll it back if writing fails."""
        if self._open is None:
            self._open = transaction.atomic()
            self._open.__enter__()
            self._since = time.monotonic()
        try:
            yield
        except BaseException:
            self._close(*sys.exc_info())  # rolls back
            raise
        if last or time.monotonic() - self._since >= self.seconds:
            self.commit()

    def commit(self) -> None:
        self._close(None, None, None)

    def _close(self, *exc_info) -> None:
        if self._open is not None:
            opened, self._open = self._open, None
            opened.__exit__(*exc_info)


def apply_plan(run: SyncRun, plan: Plan, page: Page, *, requests: int, throttle_wait: float):
    """Write one page's prepared plan and the run's progress in one transaction: the
    caller's, if it has one (see PageTransactions)."""
    # No savepoint within the caller's transaction: SQLite would keep a copy of every
    # database page the page's inserts touch, so as to be able to undo just them.
    with transaction.atomic(savepoint=False):
        if not run.setting.renew_lease(run.lease_owner):
            raise LeaseLost(
                "This sync lost its lease (it stalled for too long) and another sync of the "
                "company took over; this one stopped without writing its last page."
            )
        if not run.dry_run:
            if plan.creates:
                _insert_users(plan)
            # One UPDATE … FROM (VALUES …) for all of the page's updated users.
            update_objects(User, plan.updates, also=["updated_at"])
        plan.seen_rows.insert()
        plan.change_rows.insert()
        counters = {n: F(n) + plan.counts[n] for n in SyncRun.COUNTERS if plan.counts[n]}
        SyncRun.objects.filter(pk=run.pk).update(
            pages=F("pages") + 1,
            records=F("records") + len(page.records),
            requests=requests,
            throttle_wait_seconds=throttle_wait,
            next_page_url=page.next_link or "",
            read_complete=not page.next_link,
            new_delta_link=page.delta_link or F("new_delta_link"),
            **counters,
        )
        if plan.creates and not run.dry_run and run.setting.send_welcome_email:
            ids = [u.pk for u in plan.creates]
            transaction.on_commit(
                lambda: notifications.welcome(User.objects.filter(pk__in=ids).order_by("pk"))
            )
    run.refresh_from_db(
        fields=[
            "pages",
            "records",
            "requests",
            "throttle_wait_seconds",
            "next_page_url",
            "read_complete",
            "new_delta_link",
            *SyncRun.COUNTERS,
        ]
    )


def _insert_users(plan: Plan) -> None:
    """Insert new users with ids reserved now; their change records point to them."""
    ids = allocate_ids(User, len(plan.creates))
    for user, pk in zip(plan.creates, ids, strict=True):
        user.pk = pk
    plan.user_rows.set_column("id", ids)
    plan.user_rows.insert()
    plan.change_rows.set_column("user", [c.user and c.user.pk for c in plan.changes])
