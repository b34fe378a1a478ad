"""/metrics: figures read from the database at scrape time, for loopback or a token only."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "scrape-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def _count_at_once(settings):
    # Runs are counted once finished for this long (60 s in production).
    settings.LEARNEXA_METRICS_SETTLE_SECONDS = 0
    settings.LEARNEXA_METRICS_TOKEN = TOKEN


def run_sync(setting, **fields):
    from learnexa.dynamics_crm.models import SyncRun
    from learnexa.dynamics_crm.sync import execute_run

    run = SyncRun.objects.create(
        setting=setting, company=setting.company, trigger="manual", **fields
    )
    return execute_run(run)


def scrape(client, **extra) -> dict[tuple, float]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_a_sync_shows_under_its_status_and_mode(db, setting, client):
    run = run_sync(setting)
    assert run.status == "succeeded" and run.mode == "full" and run.records > 0

    samples = scrape(client)
    assert value(samples, "learnexa_sync_runs_total", status="succeeded", mode="full") == 1
    assert value(samples, "learnexa_sync_runs_total", status="failed", mode="full") == 0
    assert value(samples, "learnexa_sync_runs_total", status="succeeded", mode="delta") == 0
    assert value(samples, "learnexa_sync_run_seconds_count", status="succeeded", mode="full") == 1
    assert value(
        samples, "learnexa_sync_run_seconds_sum", status="succeeded", mode="full"
    ) == pytest.approx(run.duration.total_seconds())
    assert value(samples, "learnexa_sync_records_read_total", mode="full") == run.records
    assert value(samples, "learnexa_dynamics_requests_total", mode="full") == run.requests
    assert value(samples, "learnexa_dynamics_throttle_wait_seconds_total", mode="full") == (
        pytest.approx(run.throttle_wait_seconds)
    )
    assert value(samples, "learnexa_sync_companies_failing") == 0
    assert value(samples, "learnexa_sync_runs_active", status="running") == 0

    # A second scrape counts the run once, not twice; the next run, a delta, adds to delta.
    again = run_sync(setting)
    assert again.mode == "delta"
    samples = scrape(client)
    assert value(samples, "learnexa_sync_runs_total", status="succeeded", mode="full") == 1
    assert value(samples, "learnexa_sync_runs_total", status="succeeded", mode="delta") == 1

    # Pruning old runs doesn't make a counter fall.
    from learnexa.dynamics_crm.models import SyncRun

    SyncRun.objects.all().delete()
    samples = scrape(client)
    assert value(samples, "learnexa_sync_runs_total", status="succeeded", mode="full") == 1
    assert value(samples, "learnexa_sync_records_read_total", mode="full") == run.records


def test_a_failed_sync_and_a_dry_run(db, setting, client, simulator):
    run_sync(setting, dry_run=True)
    simulator.stop()  # Dynamics unreachable: the run fails
    failed = run_sync(setting)
    assert failed.status == "failed"
    samples = scrape(client)
    assert value(samples, "learnexa_sync_runs_total", status="succeeded", mode="dry_run") == 1
    assert (
        sum(
            v
            for (name, labels), v in samples.items()
            if name == "learnexa_sync_runs_total" and ("status", "failed") in labels
        )
        == 1
    )
    assert value(samples, "learnexa_sync_companies_failing") == 1


def test_no_company_label_unless_asked(db, setting, client, settings):
    run_sync(setting)
    body = client.get("/metrics").content.decode()
    assert "acme" not in body
    settings.LEARNEXA_METRICS_PER_COMPANY = True
    samples = scrape(client)
    assert (
        value(samples, "learnexa_sync_runs_total", status="succeeded", mode="full", company="acme")
        == 1
    )
    assert value(samples, "learnexa_sync_company_last_run_failed", company="acme") == 0


def test_queue_holds_processes_and_nothing_per_user_or_secret(db, setting, client, queued_job):
    from datetime import timedelta

    from django.utils import timezone

    from learnexa.ops.models import Heartbeat

    queued_job(minutes=10)
    now = timezone.now()
    for pid, seen in ((1, now), (2, now - timedelta(hours=1))):
        Heartbeat.objects.create(
            kind="worker", hostname="h", pid=pid, interval=15, started_at=now, last_seen_at=seen
        )
    samples = scrape(client)
    assert value(samples, "learnexa_queue_depth") == 1
    assert 590 <= value(samples, "learnexa_queue_oldest_age_seconds") <= 700
    assert value(samples, "learnexa_processes_live", kind="worker") == 1
    assert value(samples, "learnexa_processes_gone", kind="worker") == 1
    assert value(samples, "learnexa_processes_live", kind="scheduler") == 0
    assert value(samples, "learnexa_sync_holds_waiting") == 0
    assert "learnexa_sign_ins_last_hour" in {name for name, _ in samples}
    body = client.get("/metrics").content.decode()
    assert "@" not in body and setting.client_id not in body and TOKEN not in body
    assert all(name.startswith("learnexa_") for name, _ in samples)


def test_a_scrape_from_elsewhere_needs_the_token(db, client, settings):
    elsewhere = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.get("/metrics", **elsewhere).status_code == 403
    assert (
        client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token", **elsewhere).status_code
        == 403
    )
    assert client.get("/metrics", HTTP_AUTHORIZATION=TOKEN, **elsewhere).status_code == 403
    accepted = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **elsewhere)
    assert accepted.status_code == 200
    assert re.search(r"^learnexa_queue_depth ", accepted.content.decode(), re.M)
    # Loopback is served without it; with no token configured, a bearer never is.
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    settings.LEARNEXA_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ", **elsewhere).status_code == 403


def test_behind_a_proxy_a_forwarded_request_is_not_loopback(db, client, settings):
    settings.LEARNEXA_BEHIND_PROXY = True
    forwarded = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    assert client.get("/metrics", **forwarded).status_code == 403
    assert (
        client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **forwarded).status_code == 200
    )
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
