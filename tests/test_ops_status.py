"""Heartbeats, and `learnexa status`: live workers and schedulers, and killed ones gone."""

from __future__ import annotations

import json
import os
import signal
import socket
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from learnexa.ops import heartbeat
from learnexa.ops.models import Heartbeat


def status_json() -> dict:
    out = StringIO()
    call_command("status", "--json", stdout=out)
    return json.loads(out.getvalue())


def beat(kind="worker", pid=1000, seen_ago=0.0, interval=15.0, hostname="app-1"):
    now = timezone.now()
    return Heartbeat.objects.create(
        kind=kind,
        hostname=hostname,
        pid=pid,
        interval=interval,
        started_at=now - timedelta(hours=1),
        last_seen_at=now - timedelta(seconds=seen_ago),
    )


def test_status_reports_a_stale_worker_as_gone_and_a_fresh_one_as_live(db):
    beat(pid=101, seen_ago=5)
    beat(pid=102, seen_ago=600)  # killed ten minutes ago
    beat(kind="scheduler", pid=103, seen_ago=40, interval=30)
    report = status_json()
    workers = {w["pid"]: w["state"] for w in report["workers"]}
    assert workers == {101: "live", 102: "gone"}
    assert report["live"] == {"worker": 1, "scheduler": 1}
    assert [s["state"] for s in report["schedulers"]] == ["live"]


def test_live_means_seen_within_three_intervals(db):
    beat(pid=1, seen_ago=44, interval=15)
    beat(pid=2, seen_ago=46, interval=15)
    assert {w["pid"]: w["state"] for w in status_json()["workers"]} == {1: "live", 2: "gone"}


def test_status_reports_queue_runs_and_companies_needing_attention(db, setting, queued_job):
    from learnexa.dynamics_crm.models import SyncRun

    queued_job(minutes=5)
    running = SyncRun.objects.create(
        setting=setting,
        company=setting.company,
        trigger="schedule",
        status="running",
        mode="delta",
        started_at=timezone.now(),
    )
    setting.status = setting.Status.ERROR
    setting.last_error = "The client secret has expired."
    setting.schedule_paused = True
    setting.save()

    report = status_json()
    assert report["queue"]["depth"] == 1
    assert 295 <= report["queue"]["oldest_age_seconds"] <= 400
    assert [(r["run"], r["company"], r["mode"]) for r in report["runs_in_progress"]] == [
        (running.pk, "acme", "delta")
    ]
    (company,) = report["companies_needing_attention"]
    assert company["company"] == "acme"
    assert company["last_run_failed"] and company["schedule_paused"]

    out = StringIO()
    call_command("status", stdout=out)
    text = out.getvalue()
    assert "Queue: 1 job(s) waiting" in text
    assert "acme: last sync failed" in text and "schedule paused" in text


def test_a_worker_beats_while_it_runs_and_removes_its_row_on_exit(db):
    with heartbeat.beating("worker", interval=60):
        (row,) = Heartbeat.objects.all()
        assert (row.kind, row.hostname, row.pid) == ("worker", socket.gethostname(), os.getpid())
        assert status_json()["live"]["worker"] == 1
    assert not Heartbeat.objects.exists()


def test_a_worker_that_stops_on_an_exception_removes_its_row_too(db):
    with pytest.raises(SystemExit), heartbeat.beating("worker", interval=60):
        raise SystemExit(0)  # how db_worker leaves on SIGTERM
    assert not Heartbeat.objects.exists()


def test_the_scheduler_beats_on_each_loop(db):
    with heartbeat.for_scheduler(30, loop=True) as beat_now:
        Heartbeat.objects.update(last_seen_at=timezone.now() - timedelta(minutes=5))
        assert status_json()["schedulers"][0]["state"] == "gone"
        beat_now()
        assert status_json()["schedulers"][0]["state"] == "live"
    assert not Heartbeat.objects.exists()
    with heartbeat.for_scheduler(30, loop=False) as beat_now:
        beat_now()
        assert not Heartbeat.objects.exists()  # a single run from cron keeps none


@pytest.mark.django_db(transaction=True)  # the worker closes its connection (PostgreSQL)
def test_the_worker_command_records_its_heartbeat(monkeypatch):
    seen = []
    original = heartbeat.Beat.start

    def start(self):
        original(self)
        seen.append(list(Heartbeat.objects.values_list("kind", "pid")))

    monkeypatch.setattr(heartbeat.Beat, "start", start)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)}
    try:
        call_command(
            "worker", "--batch", "--no-startup-delay", "--interval", "0", "--no-reload", verbosity=0
        )
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert seen == [[("worker", os.getpid())]]
    assert not Heartbeat.objects.exists()


def test_a_row_left_by_a_killed_process_with_the_same_pid_is_replaced(db):
    beat(pid=os.getpid(), seen_ago=3600, hostname=socket.gethostname())
    with heartbeat.beating("worker", interval=60):
        (row,) = Heartbeat.objects.all()
        assert row.is_live(timezone.now())
