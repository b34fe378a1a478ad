"""The sync plans a page while the page before it is written: what it decides must be what
planning after that write would have decided."""

from __future__ import annotations

import gc
import sys
import time

import pytest

from learnexa.accounts.models import User
from learnexa.dataflow.bulk import Rows
from learnexa.dataflow.runtime import PAGES_PER_COLLECTION, SWITCH_INTERVAL, paged_run
from learnexa.dynamics_crm import sync
from learnexa.dynamics_crm.models import SyncChange, SyncRun

# SQL Server orders GUIDs by their last six bytes first, then bytes 8-9: these two come
# last in Dynamics' paging, in this order.
SECOND_TO_LAST = "00000000-0000-0000-fffe-ffffffffffff"
LAST = "00000000-0000-0000-ffff-ffffffffffff"


def sync_with_a_page_break_between(settings, setting, simulator, monkeypatch) -> tuple:
    """Sync with pages sized so that the last record is alone on the last page, right
    after SECOND_TO_LAST; returns the run and how often a page was matched."""
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = len(list(simulator.store.users())) - 1
    matched = []
    match_page = sync.match_page

    def counting(*args, **kwargs):
        matched.append(1)
        return match_page(*args, **kwargs)

    monkeypatch.setattr(sync, "match_page", counting)
    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger=SyncRun.Trigger.COMMAND_LINE
    )
    # Each next page at hand (serial) when the one before is still to be written: fetched
    # in a thread, it might not be there yet, and the page before would then be written
    # first (flow.read), leaving nothing to plan again.
    sync.execute_run(run, serial=True)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.pages == 2
    return run, len(matched)


@pytest.mark.django_db
def test_a_page_matching_a_user_the_page_before_creates_is_planned_again(
    settings, setting, simulator, monkeypatch
):
    create = simulator.store.create_user
    create(systemuserid=SECOND_TO_LAST, firstname="First", internalemailaddress="kim@contoso.com")
    create(systemuserid=LAST, firstname="Second", internalemailaddress="KIM@contoso.com")

    run, matched = sync_with_a_page_break_between(settings, setting, simulator, monkeypatch)

    # Page 2 was matched while page 1 was not written yet; page 1 created the user that
    # page 2's record matches by email, so page 2 was matched and planned again.
    assert matched == 3
    kim = User.objects.get(company=setting.company, email__iexact="kim@contoso.com")
    assert str(kim.dynamics_systemuser_id) == SECOND_TO_LAST and kim.first_name == "First"
    skipped = run.changes.get(systemuser_id=LAST)
    assert skipped.action == SyncChange.Action.SKIPPED
    assert "linked to another Dynamics user" in skipped.reason


@pytest.mark.django_db
def test_pages_with_nothing_in_common_are_matched_once(settings, setting, simulator, monkeypatch):
    create = simulator.store.create_user
    create(systemuserid=SECOND_TO_LAST, internalemailaddress="kim@contoso.com")
    create(systemuserid=LAST, internalemailaddress="lee@contoso.com")

    run, matched = sync_with_a_page_break_between(settings, setting, simulator, monkeypatch)

    assert matched == 2
    assert set(
        User.objects.filter(dynamics_systemuser_id__in=[SECOND_TO_LAST, LAST]).values_list(
            "email", flat=True
        )
    ) == {"kim@contoso.com", "lee@contoso.com"}


def test_collection_is_off_and_switches_quicker_during_a_run_and_back_after():
    assert gc.isenabled()
    frozen, interval = gc.get_freeze_count(), sys.getswitchinterval()
    with paged_run():
        assert not gc.isenabled()
        assert gc.get_freeze_count() > frozen  # what existed before is set aside
        assert sys.getswitchinterval() == SWITCH_INTERVAL < interval
        with paged_run():  # nested (another run in this process): left as it is
            assert not gc.isenabled()
        assert not gc.isenabled() and sys.getswitchinterval() == SWITCH_INTERVAL
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert sys.getswitchinterval() == interval


def test_settings_are_back_after_a_run_that_failed():
    interval = sys.getswitchinterval()
    with pytest.raises(RuntimeError), paged_run():
        raise RuntimeError("the sync failed")
    assert gc.isenabled() and sys.getswitchinterval() == interval


def test_the_collection_between_pages_frees_cycles_made_during_them():
    import weakref

    class Node:
        pass

    with paged_run() as collect:
        node = Node()
        node.self = node
        alive = weakref.ref(node)
        del node
        assert alive() is not None  # a cycle: reference counting alone can't free it
        for _ in range(PAGES_PER_COLLECTION - 1):
            collect()
        assert alive() is not None
        collect()
        assert alive() is None


@pytest.mark.django_db
def test_rows_take_a_column_given_after_converting():
    rows = Rows(SyncChange, ["run", "user", "action"], [(1, None, "created")] * 3)
    rows.set_column("user", [7, 8, 9])
    assert list(rows.rows()) == [[1, 7, "created"], [1, 8, "created"], [1, 9, "created"]]
    with pytest.raises(ValueError, match="2 values for 3 rows"):
        rows.set_column("user", [1, 2])


def test_a_prefetched_item_is_freed_where_the_consumer_lets_go_of_it():
    """The sync frees a written page in its planning thread: that only works if nothing in
    the pipeline keeps a reference of its own."""
    import threading
    import weakref

    from learnexa.dataflow.pipeline import Prefetched

    class Item:
        pass

    asked_for_the_third = threading.Event()

    def items():
        yield Item()
        yield Item()
        asked_for_the_third.set()  # the producer has let go of the first by now
        yield Item()

    pages = Prefetched(items())
    first = next(pages)
    assert asked_for_the_third.wait(5)
    alive = weakref.ref(first)
    del first
    assert alive() is None
    assert len(list(pages)) == 2


def test_a_prefetched_iterator_says_whether_asking_for_the_next_item_would_wait():
    import threading

    from learnexa.dataflow.pipeline import Prefetched

    release = threading.Event()

    def items():
        yield 1
        release.wait(5)
        yield 2

    with Prefetched(items()) as pages:
        assert next(pages) == 1
        assert not pages.ready()  # the producer is held up: next() would wait
        release.set()
        deadline = time.monotonic() + 5
        while not pages.ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pages.ready()
        assert list(pages) == [2]
        assert pages.ready()  # the end is here: asking again won't wait


@pytest.mark.django_db(transaction=True)
def test_pages_share_a_transaction_until_it_has_lasted_long_enough_and_a_failure_undoes_it():
    from django.db import connection

    from learnexa.accounts.models import Company
    from learnexa.dynamics_crm.sync import PageTransactions

    def slugs():
        return set(Company.objects.values_list("slug", flat=True))

    transactions = PageTransactions(seconds=60)
    with transactions.page():
        Company.objects.create(slug="a", name="A")
    with transactions.page():
        Company.objects.create(slug="b", name="B")
    assert connection.in_atomic_block  # both pages in one open transaction
    transactions.commit()
    assert not connection.in_atomic_block and slugs() == {"a", "b"}

    # A page that fails undoes the pages of its transaction, not those committed before.
    with transactions.page():
        Company.objects.create(slug="c", name="C")
    with pytest.raises(RuntimeError), transactions.page():
        Company.objects.create(slug="d", name="D")
        raise RuntimeError("the database went away")
    assert not connection.in_atomic_block and slugs() == {"a", "b"}

    # The last page, and any page once the transaction has lasted long enough, commit.
    with transactions.page(last=True):
        Company.objects.create(slug="e", name="E")
    assert not connection.in_atomic_block
    at_once = PageTransactions(seconds=0)
    with at_once.page():
        Company.objects.create(slug="f", name="F")
    assert not connection.in_atomic_block and slugs() == {"a", "b", "e", "f"}
