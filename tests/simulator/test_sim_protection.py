"""Service protection limits and injected faults."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest


def test_request_limit_gives_429_with_retry_after(sim, api):
    sim.set_limits(requests=3, window_seconds=60)
    statuses = [api.get("/WhoAmI").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    resp = api.get("/WhoAmI")
    assert resp.status_code == 429
    retry = int(resp.headers["retry-after"])
    assert 1 <= retry <= 60
    error = resp.json()["error"]
    assert error["code"] == "0x80072322"
    assert error["message"] == (
        "Number of requests exceeded the limit of 3 over time window of 60 seconds."
    )
    sim.advance_clock(retry + 1)
    assert api.get("/WhoAmI").status_code == 200


def test_rate_limit_headers(sim, api):
    sim.set_limits(requests=10)
    first = api.get("/WhoAmI")
    second = api.get("/WhoAmI")
    assert int(first.headers["x-ms-ratelimit-burst-remaining-xrm-requests"]) == 9
    assert int(second.headers["x-ms-ratelimit-burst-remaining-xrm-requests"]) == 8


def test_concurrency_limit(sim, api):
    sim.set_limits(concurrency=1)
    sim.inject_fault("slow", seconds=0.6)
    results = {}

    def slow_call():
        results["slow"] = api.get("/WhoAmI").status_code

    thread = threading.Thread(target=slow_call)
    thread.start()
    time.sleep(0.2)
    resp = api.get("/WhoAmI")
    thread.join()
    assert results["slow"] == 200
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "0x80072326"
    assert "Retry-After" in resp.headers


def test_injected_429_then_recovers(sim, api):
    sim.inject_fault("status", status=429, count=2, retry_after=7)
    first, second, third = (api.get("/WhoAmI") for _ in range(3))
    assert first.status_code == second.status_code == 429
    assert first.headers["retry-after"] == "7"
    assert first.json()["error"]["code"] == "0x80072322"
    assert third.status_code == 200


@pytest.mark.parametrize("status", [500, 503])
def test_injected_server_errors(sim, api, status):
    sim.inject_fault("status", status=status)
    resp = api.get("/systemusers?$top=1")
    assert resp.status_code == status
    assert "error" in resp.json()
    assert api.get("/systemusers?$top=1").status_code == 200


def test_injected_reset(sim, api):
    sim.inject_fault("reset")
    with pytest.raises(httpx.TransportError):
        api.get("/WhoAmI")
    assert api.get("/WhoAmI").status_code == 200


def test_injected_truncated_body(sim, api):
    sim.inject_fault("truncated")
    with pytest.raises(httpx.TransportError):
        api.get("/systemusers?$select=fullname")
    assert api.get("/systemusers?$select=fullname").status_code == 200


def test_injected_malformed_json(sim, api):
    sim.inject_fault("malformed")
    resp = api.get("/systemusers?$select=fullname")
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.text)
    assert api.get("/systemusers?$select=fullname").json()["value"]


def test_faults_only_hit_the_web_api(sim, api, new_token):
    sim.inject_fault("status", status=503)
    assert new_token()  # token endpoint unaffected
    assert api.get("/WhoAmI").status_code == 503


def test_execution_time_limit(sim, api):
    sim.set_limits(execution_ms=300, window_seconds=60)
    sim.inject_fault("slow", seconds=0.4)
    assert api.get("/WhoAmI").status_code == 200  # over the budget after the fact
    resp = api.get("/WhoAmI")
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "0x80072321"
    assert resp.json()["error"]["message"].startswith(
        "Combined execution time of incoming requests exceeded limit of 300 milliseconds"
    )
    assert int(resp.headers["retry-after"]) >= 1
