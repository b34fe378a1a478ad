"""A run's progress: the expected record count from Dynamics, the throttle wait it shows,
the words describe() puts on it, and the dashboard chart's geometry."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import httpx
import pytest
from django.utils import timezone

from learnexa.dynamics_crm import chart
from learnexa.dynamics_crm.dataverse import DataverseClient, DataverseError
from learnexa.dynamics_crm.models import SyncRun
from learnexa.dynamics_crm.progress import describe
from learnexa.dynamics_crm.retries import RetryBudget
from learnexa.dynamics_crm.sync import execute_run, open_client

NOW = timezone.now()


def run_like(**fields) -> SyncRun:
    values = {
        "status": SyncRun.Status.RUNNING,
        "records": 0,
        "pages": 0,
        "expected_records": None,
        "started_at": NOW - timedelta(seconds=10),
        "throttled_until": None,
    }
    return SyncRun(**{**values, **fields})


# -- describe ---------------------------------------------------------------------------


def test_the_percent_is_clamped_to_100_as_the_count_is_an_estimate():
    progress = describe(run_like(records=12_000, pages=12, expected_records=10_000), NOW)
    assert progress["percent"] == 100.0
    assert progress["eta_seconds"] is None  # past the estimate: no time left to guess
    assert progress["text"] == "12,000 of about 10,000 records read"


def test_the_eta_follows_the_read_rate_since_the_start():
    # 4,200 records in 10 s: 420 a second, 5,800 to go.
    progress = describe(run_like(records=4_200, pages=5, expected_records=10_000), NOW)
    assert progress["percent"] == 42.0
    assert progress["eta_seconds"] == pytest.approx(5_800 / 420, abs=0.1)
    assert progress["text"] == "4,200 of about 10,000 records read · about 14 s left"
    assert progress["waiting_seconds"] is None


def test_no_eta_before_the_first_page_nor_without_a_count():
    assert describe(run_like(expected_records=10_000), NOW)["eta_seconds"] is None
    unknown = describe(run_like(records=300, pages=3), NOW)
    assert unknown["percent"] is None and unknown["eta_seconds"] is None
    assert unknown["text"] == "300 records read"


def test_a_throttle_wait_is_said_while_it_lasts():
    waiting = run_like(records=100, pages=1, throttled_until=NOW + timedelta(seconds=20))
    progress = describe(waiting, NOW)
    assert progress["waiting_seconds"] == 20
    assert progress["text"] == "100 records read · waiting 20 s: Dynamics asked us to slow down"
    over = describe(run_like(throttled_until=NOW - timedelta(seconds=1)), NOW)
    assert over["waiting_seconds"] is None and "waiting" not in over["text"]
    finished = run_like(status=SyncRun.Status.FAILED, throttled_until=NOW + timedelta(seconds=9))
    assert describe(finished, NOW)["waiting_seconds"] is None


# -- the chart --------------------------------------------------------------------------


def bar_run(pk, created=0, updated=0, deactivated=0, *, dry_run=False, status="succeeded"):
    return SimpleNamespace(
        pk=pk,
        created=created,
        updated=updated,
        deactivated=deactivated,
        dry_run=dry_run,
        status=status,
        is_finished=status in ("succeeded", "failed"),
        started_at=NOW - timedelta(days=pk),
        queued_at=NOW - timedelta(days=pk),
    )


@pytest.mark.parametrize(
    "peak, top, step", [(0, 1, 1), (1, 1, 1), (7, 8, 2), (10, 10, 5), (1234, 1500, 500)]
)
def test_the_axis_tops_out_at_a_round_number(peak, top, step):
    assert chart.nice_scale(peak) == (top, step)


def test_bars_stack_created_updated_deactivated_from_the_baseline():
    drawn = chart.build_chart([bar_run(1, created=50, updated=30, deactivated=20)])
    assert drawn["max"] == 100
    assert [t["value"] for t in drawn["ticks"]] == [0, 25, 50, 75, 100]
    (bar,) = drawn["bars"]
    created, updated, deactivated = bar["segments"]
    assert [s["key"] for s in bar["segments"]] == ["created", "updated", "deactivated"]
    plot = drawn["baseline"] - drawn["top"]
    assert created["y"] + created["height"] == pytest.approx(drawn["baseline"])
    assert updated["y"] + updated["height"] == pytest.approx(created["y"])
    assert deactivated["y"] + deactivated["height"] == pytest.approx(updated["y"])
    assert created["height"] == pytest.approx(plot / 2, abs=0.1)
    assert bar["total"] == 100 and bar["total_y"] < bar["top"]


def test_one_change_is_a_visible_bar_and_none_is_no_bar():
    drawn = chart.build_chart([bar_run(2, updated=1), bar_run(1), bar_run(3, created=5000)])
    by_pk = {b["run"].pk: b for b in drawn["bars"]}
    assert by_pk[2]["segments"][0]["height"] >= chart.MIN_SEGMENT
    assert by_pk[1]["segments"] == [] and by_pk[1]["total"] == 0
    assert [b["run"].pk for b in drawn["bars"]] == [3, 1, 2]  # oldest on the left


def test_dry_runs_and_unfinished_runs_are_left_out():
    runs = [
        bar_run(1, created=9, dry_run=True),
        bar_run(2, created=3, status="running"),
        bar_run(3, created=4),
    ]
    drawn = chart.build_chart(runs)
    assert [b["run"].pk for b in drawn["bars"]] == [3]
    assert chart.build_chart([bar_run(1, created=9, dry_run=True)]) is None


def test_at_most_fourteen_bars_the_latest():
    drawn = chart.build_chart([bar_run(pk, created=pk) for pk in range(1, 31)])
    assert [b["run"].pk for b in drawn["bars"]] == list(range(14, 0, -1))
    assert all(b["x"] + b["width"] <= drawn["right"] for b in drawn["bars"])


def test_bars_are_labelled_by_day_and_by_time_where_a_day_has_several():
    same_day = bar_run(1, created=2)
    same_day.started_at = NOW.replace(hour=9, minute=5)
    other = bar_run(2, created=2)
    other.started_at = NOW.replace(hour=9, minute=5) - timedelta(days=3)
    again = bar_run(3, created=2)
    again.started_at = NOW.replace(hour=14, minute=30)
    labels = [(b["day"], b["time"]) for b in chart.build_chart([again, same_day, other])["bars"]]
    day, earlier = timezone.localtime(other.started_at), timezone.localtime(NOW)
    assert labels == [
        (f"{day.day} {day:%b}", ""),
        (f"{earlier.day} {earlier:%b}", "09:05"),
        (f"{earlier.day} {earlier:%b}", "14:30"),
    ]


# -- the count and the sync -------------------------------------------------------------


@pytest.mark.django_db
def test_the_client_counts_a_tables_rows_on_the_simulator(setting, simulator):
    with open_client(setting) as client:
        assert client.record_count("systemuser") == len(list(simulator.store.users()))
        assert client.requests == 1
        with pytest.raises(DataverseError):
            client.record_count("nosuchtable")


class _Tokens:
    def token(self):
        return "token"

    def invalidate(self):
        pass


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(429, headers={"Retry-After": "5"}, json={"error": {"message": "Slow"}}),
        httpx.Response(200, json={"EntityRecordCountCollection": {"Keys": [], "Values": []}}),
        httpx.Response(200, json={"value": []}),
        httpx.Response(
            200, json={"EntityRecordCountCollection": {"Keys": ["systemuser"], "Values": [-1]}}
        ),
    ],
)
def test_a_count_is_asked_once_and_a_bad_answer_is_an_error(answer):
    sent, slept = [], []

    def handler(request):
        sent.append(request)
        return answer

    client = DataverseClient(
        "https://contoso.crm.dynamics.com",
        _Tokens(),
        transport=httpx.MockTransport(handler),
        sleep=slept.append,
    )
    with pytest.raises(DataverseError):
        client.record_count("systemuser")
    assert len(sent) == 1 and slept == [] and client.throttle_wait_seconds == 0
    assert sent[0].url.path == "/api/data/v9.2/RetrieveTotalRecordCount(EntityNames=['systemuser'])"


@pytest.mark.django_db
def test_a_full_sync_knows_how_many_records_to_expect(setting, simulator):
    run = SyncRun.objects.create(setting=setting, company=setting.company, trigger="manual")
    execute_run(run)

    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.mode == SyncRun.Mode.FULL
    assert run.expected_records == len(list(simulator.store.users())) == run.records
    assert describe(run)["percent"] == 100.0
    counted = [r for r in simulator.request_log() if "RetrieveTotalRecordCount" in r["path"]]
    assert len(counted) == 1

    delta = SyncRun.objects.create(setting=setting, company=setting.company, trigger="manual")
    execute_run(delta)
    assert delta.mode == SyncRun.Mode.DELTA and delta.expected_records is None


@pytest.mark.django_db
@pytest.mark.parametrize("status", [429, 500, 403])
def test_a_count_that_fails_never_fails_the_sync(setting, simulator, status):
    simulator.inject_fault(
        "status", count=100, status=status, retry_after=30, path_contains="RetrieveTotalRecord"
    )
    waits = []
    run = SyncRun.objects.create(setting=setting, company=setting.company, trigger="schedule")

    execute_run(run, client=open_client(setting, sleep=waits.append))

    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.expected_records is None and run.error == ""
    assert waits == [] and run.throttle_wait_seconds == 0  # nothing spent from the budget
    assert run.records == len(list(simulator.store.users()))


@pytest.mark.django_db
def test_a_throttle_wait_is_on_the_run_row_while_it_lasts(setting, simulator):
    simulator.inject_fault("status", count=1, status=429, retry_after=4, path_contains="skiptoken")
    run = SyncRun.objects.create(setting=setting, company=setting.company, trigger="manual")
    seen = []

    def sleep(seconds):
        # What the run page would read during the wait, from the sync's own connection.
        seen.append((seconds, SyncRun.objects.get(pk=run.pk).throttled_until))

    with open_client(setting, sleep=sleep, page_size=50) as client:
        execute_run(run, client=client, serial=True)

    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    ((seconds, until),) = seen
    assert seconds == 4
    assert until is not None and 3 < (until - timezone.now()).total_seconds() <= 4.5
    assert run.throttled_until is None  # cleared after the wait


def test_a_hook_that_fails_changes_nothing_about_the_wait():
    slept = []
    budget = RetryBudget(sleep=slept.append, backoff_seconds=0.01)

    def broken(wait):
        raise RuntimeError("database gone")

    budget.on_throttle = broken
    assert budget.throttled(2.0, "throttled") is True
    assert slept == [2.0] and budget.throttle_wait_seconds == 2.0
