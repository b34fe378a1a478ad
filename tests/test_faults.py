"""The sync under faults: throttling, server errors, broken connections, slow and garbled
answers, tokens and secrets going bad, Dynamics going away, and the database itself
misbehaving. After each, either the user table is exactly what a clean sync makes of the
same data, or the run failed cleanly (whole pages applied, nothing deactivated, a clear
error) and a retry of the same run converges."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from learnexa.accounts.models import Company, User
from learnexa.dynamics_crm import jobs
from learnexa.dynamics_crm.models import SyncChange, SyncRun
from learnexa.dynamics_crm.sync import execute_run, open_client

PAGE = 25
USERS = 250
POSTGRES = django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
SQLITE = django_settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _small_pages(settings):
    settings.LEARNEXA_DYNAMICS_PAGE_SIZE = PAGE


def new_run(setting, trigger=SyncRun.Trigger.COMMAND_LINE) -> SyncRun:
    return SyncRun.objects.create(setting=setting, company=setting.company, trigger=trigger)


def sync(setting, **kwargs) -> SyncRun:
    return execute_run(new_run(setting), **kwargs)


def table(company) -> list[tuple]:
    return sorted(
        User.objects.filter(company=company).values_list(
            "email",
            "first_name",
            "last_name",
            "job_title",
            "phone",
            "city",
            "country",
            "employee_id",
            "department",
            "is_active",
            "created_source",
            "dynamics_systemuser_id",
            "entra_object_id",
        )
    )


def clean_table(connect, sim, slug="clean") -> list[tuple]:
    """What a sync without faults makes of the simulator's data, in a company of its own."""
    sim.clear_faults()
    clean = Company.objects.create(slug=slug, name=slug.title())
    run = sync(connect(clean, sim))
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    return table(clean)


def assert_sound(company) -> None:
    """Nobody twice, and nobody deactivated: every record here is enabled or was skipped."""
    users = User.objects.filter(company=company)
    emails = Counter(e.lower() for e in users.values_list("email", flat=True))
    ids = Counter(
        users.exclude(dynamics_systemuser_id=None).values_list("dynamics_systemuser_id", flat=True)
    )
    assert [e for e, n in emails.items() if n > 1] == []
    assert [i for i, n in ids.items() if n > 1] == []
    assert not users.filter(is_active=False).exists()
    assert not SyncChange.objects.filter(
        run__company=company, action=SyncChange.Action.DEACTIVATED
    ).exists()


# Pages a sync holds past the one it writes: one planned while that one is written, one
# mapped and one being mapped, one fetched and one being fetched.
PAGES_IN_FLIGHT = 5


def assert_failed_cleanly(run: SyncRun, *, pages: int, ahead: int = 0) -> None:
    """Failed with an explanation, after `pages` whole pages (up to `ahead` more where the
    fault came between pages, and the next ones may have been fetched already), before any
    deactivation."""
    run.refresh_from_db()
    assert run.status == SyncRun.Status.FAILED
    assert run.error and "stopped on an unexpected error" not in run.error
    assert pages <= run.pages <= pages + ahead and not run.read_complete and not run.settled
    assert run.next_page_url or run.pages == 0  # the checkpoint to resume from, if any
    assert run.deactivated == 0
    # Whole pages: every record read so far has exactly one change record, no more.
    assert run.changes.count() == run.records == run.pages * PAGE
    assert_sound(run.company)


def fault_hits(sim, kind: str) -> int:
    return sum(1 for entry in sim.request_log() if entry.get("fault") == kind)


def total_pages(sim) -> int:
    return math.ceil(sum(1 for _ in sim.store.users()) / PAGE)


# -- throttling -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_429_storm_is_waited_out_as_retry_after_says(setting, simulator, connect):
    simulator.inject_fault("status", count=12, status=429, retry_after=7, path_contains="skiptoken")
    waits = []

    run = sync(setting, client=open_client(setting, sleep=waits.append))

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert waits == [7.0] * 12  # each Retry-After honoured, and no more
    assert run.throttle_wait_seconds == 84
    assert fault_hits(simulator, "status") == 12
    assert run.pages == total_pages(simulator)
    assert table(setting.company) == clean_table(connect, simulator)
    assert_sound(setting.company)


@pytest.mark.django_db
def test_retry_after_is_really_waited(setting, simulator):
    simulator.inject_fault("status", count=2, status=429, retry_after=1, path_contains="skiptoken")
    started = time.monotonic()

    run = sync(setting)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert time.monotonic() - started >= 2
    assert run.throttle_wait_seconds == 2


@pytest.mark.django_db
def test_throttling_beyond_the_budget_fails_retryable_and_the_retry_converges(
    settings, setting, simulator, connect
):
    settings.LEARNEXA_DYNAMICS_MAX_THROTTLE_WAIT = 60
    # Pages 1 and 2 are read; page 3 is throttled for longer than the budget allows.
    simulator.inject_fault(
        "status", count=100, status=429, retry_after=25, path_contains="pagenumber=%223%22"
    )
    waits = []
    run = new_run(setting, trigger=SyncRun.Trigger.SCHEDULE)

    execute_run(run, client=open_client(setting, sleep=waits.append))

    assert sum(waits) <= 60 and waits == [25.0, 25.0]
    assert_failed_cleanly(run, pages=2)
    assert "throttling" in run.error and "60 seconds" in run.error
    assert run.retryable and run.will_retry
    setting.refresh_from_db()
    assert setting.consecutive_failures == 0  # not a failure while it will be retried

    simulator.clear_faults()
    jobs.retry(run)
    jobs.sync_company.call(run.pk)

    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.attempt == 2 and run.pages == total_pages(simulator)
    assert table(setting.company) == clean_table(connect, simulator)
    assert_sound(setting.company)


# -- server errors and broken connections -------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "faults",
    [
        [("status", {"status": 500, "count": 3})],
        [("status", {"status": 503, "count": 4})],
        [("status", {"status": 502, "count": 2}), ("status", {"status": 504, "count": 2})],
        [("reset", {"count": 4})],
        [("truncated", {"count": 4})],
        [("malformed", {"count": 3})],
        [
            ("reset", {"count": 1}),
            ("status", {"status": 503, "count": 1}),
            ("truncated", {"count": 1}),
            ("malformed", {"count": 1}),
        ],
    ],
    ids=["500x3", "503x4", "502-504", "reset", "truncated", "malformed", "mixed"],
)
def test_a_burst_within_the_retries_changes_nothing(faults, setting, simulator, connect):
    for kind, options in faults:
        simulator.inject_fault(kind, path_contains="skiptoken", **options)

    run = sync(setting)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    for kind, options in faults:
        assert fault_hits(simulator, kind) >= options["count"]
    assert run.pages == total_pages(simulator)
    assert run.records == sum(1 for _ in simulator.store.users())
    assert table(setting.company) == clean_table(connect, simulator)
    assert_sound(setting.company)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "kind, options, says",
    [
        ("status", {"status": 503}, "HTTP 503"),
        ("status", {"status": 500}, "HTTP 500"),
        ("reset", {}, "couldn't be reached"),
        ("truncated", {}, "couldn't be reached"),
        ("malformed", {}, "JSON that couldn't be read"),
    ],
)
def test_a_burst_beyond_the_retries_fails_retryable_and_the_retry_converges(
    kind, options, says, setting, simulator, connect
):
    # Page 4 fails on every attempt; pages 1 to 3 are applied.
    simulator.inject_fault(kind, count=5, path_contains="pagenumber=%224%22", **options)
    run = new_run(setting, trigger=SyncRun.Trigger.SCHEDULE)

    execute_run(run)

    assert_failed_cleanly(run, pages=3)
    assert says in run.error, run.error
    assert run.retryable and run.will_retry
    assert fault_hits(simulator, kind) == 5

    jobs.retry(run)
    jobs.sync_company.call(run.pk)

    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.pages == total_pages(simulator)
    assert run.changes.count() == run.records == sum(1 for _ in simulator.store.users())
    assert table(setting.company) == clean_table(connect, simulator)
    assert_sound(setting.company)


@pytest.mark.django_db
def test_answers_slower_than_the_timeout_are_retried(settings, setting, simulator, connect, caplog):
    settings.LEARNEXA_DYNAMICS_TIMEOUT = 0.5
    simulator.inject_fault("slow", count=3, seconds=1.5, path_contains="skiptoken")

    run = sync(setting)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert simulator.faults.pending() == []
    assert sum("ReadTimeout" in r.getMessage() for r in caplog.records) == 3
    assert table(setting.company) == clean_table(connect, simulator)
    assert_sound(setting.company)


@pytest.mark.django_db
def test_a_dynamics_that_stays_too_slow_fails_retryable(settings, setting, simulator):
    settings.LEARNEXA_DYNAMICS_TIMEOUT = 0.3
    simulator.inject_fault("slow", count=5, seconds=1, path_contains="pagenumber=%222%22")
    run = new_run(setting, trigger=SyncRun.Trigger.SCHEDULE)

    execute_run(run)

    assert_failed_cleanly(run, pages=1)
    assert "didn't answer in time, 5 times" in run.error
    assert run.retryable


# -- tokens and secrets -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_token_that_expires_mid_run_is_renewed(setting, simulator, connect):
    def expire_after_page_3(run):
        if run.pages == 3:
            simulator.expire_tokens()

    run = sync(setting, progress=expire_after_page_3)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert [e["status"] for e in simulator.request_log()].count(401) == 1
    assert run.pages == total_pages(simulator)
    assert table(setting.company) == clean_table(connect, simulator)
    assert_sound(setting.company)


@pytest.mark.django_db
def test_a_secret_revoked_mid_run_fails_cleanly_and_a_new_secret_resumes(
    setting, simulator, connect
):
    def revoke_after_page_3(run):
        if run.pages == 3:
            simulator.revoke_secret()
            simulator.expire_tokens()

    secret = setting.client_secret()
    run = new_run(setting, trigger=SyncRun.Trigger.SCHEDULE)
    execute_run(run, progress=revoke_after_page_3)

    assert_failed_cleanly(run, pages=3, ahead=PAGES_IN_FLIGHT)
    assert "client secret is wrong" in run.error
    assert secret and secret not in run.error
    assert not run.retryable and not run.will_retry  # an admin must act
    setting.refresh_from_db()
    assert setting.status == setting.Status.ERROR and setting.last_error == run.error
    assert setting.consecutive_failures == 1
    applied = table(setting.company)
    assert len(applied) > 0

    # The admin saves a new secret; the same run carries on from its checkpoint.
    setting.set_client_secret(simulator.rotate_secret())
    setting.save()
    execute_run(run)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.pages == total_pages(simulator)
    final = table(setting.company)
    assert set(applied) <= set(final)
    assert final == clean_table(connect, simulator)
    assert_sound(setting.company)


# -- Dynamics goes away and comes back --------------------------------------------------


@pytest.mark.django_db
def test_dynamics_going_away_fails_retryable_and_the_retry_resumes_when_it_is_back(
    setting, simulator, simulator_state, connect
):
    from dataverse_sim.server import Simulator

    def stop_after_page_3(run):
        if run.pages == 3:
            simulator.stop()

    info, port = simulator.info, simulator.port
    run = new_run(setting, trigger=SyncRun.Trigger.SCHEDULE)
    execute_run(run, progress=stop_after_page_3)

    assert_failed_cleanly(run, pages=3, ahead=PAGES_IN_FLIGHT)
    assert "couldn't be reached" in run.error
    assert run.retryable and run.will_retry
    checkpoint, failed_at = run.next_page_url, run.pages

    again = Simulator(users=USERS, seed=7, host="127.0.0.1", port=port, state_dir=simulator_state)
    again.start()
    try:
        assert again.info["organization_uri"] == info["organization_uri"]
        jobs.retry(run)
        jobs.sync_company.call(run.pk)

        run.refresh_from_db()
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        # It resumed where it stopped rather than starting over.
        paths = [e["path"] for e in again.request_log() if "systemusers" in e["path"]]
        assert checkpoint.split("/api/data/")[1] in [p.split("/api/data/")[1] for p in paths]
        assert len(paths) == total_pages(again) - failed_at
        assert run.pages == total_pages(again)
        assert table(setting.company) == clean_table(connect, again)
        assert_sound(setting.company)
    finally:
        again.stop()


# -- the database -----------------------------------------------------------------------


# Only where the database is PostgreSQL (collected only there, rather than skipped).
if POSTGRES:

    @pytest.mark.django_db(transaction=True)
    def test_a_dropped_database_connection_fails_the_run_and_a_rerun_converges(
        setting, simulator, connect
    ):
        import psycopg

        params = connection.get_connection_params()
        dsn = {
            k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")
        }

        def drop_after_page_3(run):
            if run.pages == 3:
                pid = connection.connection.info.backend_pid
                with psycopg.connect(**dsn, autocommit=True) as other:
                    other.execute("SELECT pg_terminate_backend(%s)", [pid])

        run = new_run(setting, trigger=SyncRun.Trigger.SCHEDULE)
        execute_run(run, progress=drop_after_page_3)  # returns: the failure is recorded

        # Pages that come faster than they are written share a transaction: the drop after
        # page 3 may undo up to all three, never part of one.
        assert_failed_cleanly(run, pages=0, ahead=3)
        assert "lost its connection to the database" in run.error, run.error
        assert run.retryable and run.will_retry
        setting.refresh_from_db()
        assert setting.lease_owner is None  # released: a retry needn't wait for it to expire

        jobs.retry(run)
        jobs.sync_company.call(run.pk)

        run.refresh_from_db()

        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        assert table(setting.company) == clean_table(connect, simulator)
        assert_sound(setting.company)


# Where the database is SQLite (collected only there): another process holds the write lock.
SQLITE_SYNC = r"""
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "learnexa.settings")
import django
django.setup()
from django.core.management import call_command
from learnexa.accounts.models import Company
from learnexa.dynamics_crm.models import DynamicsCrmSetting

info = json.loads(sys.argv[1])
call_command("migrate", verbosity=0)
for slug in ("acme", "clean"):
    setting = DynamicsCrmSetting(
        company=Company.objects.create(slug=slug, name=slug), sync_frequency="off",
        **{k: info[k] for k in ("organization_uri", "authority_host", "tenant_id", "client_id")},
    )
    setting.set_client_secret(info["client_secret"])
    setting.save()
call_command("dynamics", "sync", "acme", "--json")
call_command("dynamics", "sync", "clean", "--json")
"""

if SQLITE:

    def test_a_write_lock_held_by_another_process_is_waited_out(tmp_path, simulator):
        info = simulator.info
        path = tmp_path / "learnexa.sqlite3"
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{path}",
            "LEARNEXA_DATA_DIR": str(tmp_path),
            "LEARNEXA_ENCRYPTION_KEYS": django_settings.LEARNEXA_ENCRYPTION_KEYS[0],
            "LEARNEXA_DYNAMICS_ALLOWED_HOSTS": info["organization_uri"].removeprefix("https://"),
            "LEARNEXA_DYNAMICS_CA_BUNDLE": info["ca_bundle"],
            "LEARNEXA_DYNAMICS_PAGE_SIZE": "10",
            "LEARNEXA_LOG_LEVEL": "ERROR",
        }
        proc = subprocess.Popen(
            [sys.executable, "-c", SQLITE_SYNC, json.dumps(info)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        output = []
        reader = threading.Thread(target=lambda: output.extend(proc.communicate()), daemon=True)
        reader.start()

        def pages() -> int:
            rows = db.execute(
                "SELECT pages FROM dynamics_crm_syncrun r JOIN companies c "
                "ON c.id = r.company_id WHERE c.slug = 'acme'"
            ).fetchall()
            return rows[0][0] if rows else 0

        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            while time.monotonic() < deadline:
                try:
                    if pages() >= 2:
                        break
                except sqlite3.OperationalError:  # not migrated yet
                    pass
                time.sleep(0.005)
            db.execute("BEGIN IMMEDIATE")  # the write lock, for 3 seconds
            held_at = pages()
            time.sleep(3)
            assert pages() == held_at  # the sync waited for it...
            assert proc.poll() is None
            db.execute("COMMIT")
            reader.join(timeout=60)

            assert proc.returncode == 0, output  # ...and then carried on
            summary = json.loads(output[0].splitlines()[0])
            total = sum(1 for _ in simulator.store.users())
            assert summary["status"] == "succeeded", summary
            assert summary["pages"] == math.ceil(total / 10) and summary["records"] == total
            columns = (
                "email, first_name, last_name, job_title, phone, city, country, employee_id, "
                "department, is_active, created_source, dynamics_systemuser_id, entra_object_id"
            )

            def table(slug):
                return sorted(
                    db.execute(
                        f"SELECT {columns} FROM users WHERE company_id = "
                        "(SELECT id FROM companies WHERE slug = ?)",
                        (slug,),
                    ).fetchall()
                )

            assert len(table("acme")) > 200 and table("acme") == table("clean")
        finally:
            db.close()
            if proc.poll() is None:
                proc.kill()


@pytest.mark.django_db
def test_a_failed_run_counts_the_requests_it_sent(setting, simulator):
    # Pages 1 and 2 are written; page 3 fails after its retries.
    simulator.inject_fault("status", count=100, status=503, path_contains="pagenumber=%223%22")
    run = new_run(setting, trigger=SyncRun.Trigger.SCHEDULE)

    execute_run(run)

    run.refresh_from_db()
    assert run.status == SyncRun.Status.FAILED
    sent = [r for r in simulator.request_log() if r.get("kind") == "webapi"]
    assert run.requests == len(sent) > 2
