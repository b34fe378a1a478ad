"""Logs a machine can read: JSON lines with the sync's run and company, request ids, and
the 500 page quoting its request's id."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.test import Client
from django.urls import include, path

from learnexa.ops.logs import ContextFilter, JsonFormatter, TextFormatter, log_context


def _boom(request):
    raise RuntimeError("kaboom")


# This module is the URLconf of the 500 test: the site's routes, plus one that fails.
urlpatterns = [path("boom/", _boom), path("", include("learnexa.urls"))]
handler500 = "learnexa.ops.views.server_error"


@pytest.fixture
def console():
    """The console handler settings.LOGGING configured, printing JSON into a buffer."""
    handler = next(h for h in logging.getLogger("learnexa").handlers if h.name == "console")
    assert any(isinstance(f, ContextFilter) for f in handler.filters)
    buffer = io.StringIO()
    old_stream, old_formatter = handler.stream, handler.formatter
    handler.setStream(buffer)
    handler.setFormatter(JsonFormatter())
    yield buffer
    handler.setStream(old_stream)
    handler.setFormatter(old_formatter)


def lines(buffer) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_a_sync_logs_its_run_and_company(db, setting, console):
    from learnexa.dynamics_crm.models import SyncRun
    from learnexa.dynamics_crm.sync import execute_run

    run = SyncRun.objects.create(setting=setting, company=setting.company, trigger="manual")
    # What the sync engine does around a run (the line to add to execute_run).
    with log_context(run=run.pk, company=setting.company.slug):
        execute_run(run)
    logged = lines(console)
    finished = [e for e in logged if e["message"].startswith(f"Sync {run.pk} of acme")]
    assert finished, logged
    for entry in logged:
        assert entry["run"] == run.pk and entry["company"] == "acme"
        assert {"time", "level", "logger", "message"} <= entry.keys()
        assert entry["time"].endswith("Z")
    assert finished[0]["logger"].startswith("learnexa.dynamics_crm")
    assert finished[0]["level"] == "INFO"
    # And nothing after the block.
    logging.getLogger("learnexa.test").warning("after")
    assert "run" not in lines(console)[-1]


def test_json_lines_carry_the_exception(console):
    log = logging.getLogger("learnexa.test")
    with log_context(run=7, company="acme"):
        try:
            raise ValueError("bad page")
        except ValueError:
            log.exception("Sync %s failed", 7)
    (entry,) = lines(console)
    assert entry["message"] == "Sync 7 failed"
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "learnexa.test"
    assert "Traceback" in entry["exception"] and "ValueError: bad page" in entry["exception"]
    assert (entry["run"], entry["company"]) == (7, "acme")


def test_contexts_nest_and_end():
    record = logging.LogRecord("learnexa.x", logging.INFO, __file__, 1, "hi %s", ("there",), None)
    with log_context(request_id="r1"):
        with log_context(run=3, company="acme"):
            inner = logging.makeLogRecord(record.__dict__)
            ContextFilter().filter(inner)
        outer = logging.makeLogRecord(record.__dict__)
        ContextFilter().filter(outer)
    assert inner.context == {"request_id": "r1", "run": 3, "company": "acme"}
    assert outer.context == {"request_id": "r1"}
    assert inner.run == 3
    text = TextFormatter().format(inner)
    assert text.endswith("learnexa.x: hi there [request_id=r1 run=3 company=acme]")


def test_a_500_shows_its_request_id_and_logs_it(db, settings):
    settings.ROOT_URLCONF = __name__
    handler = logging.getLogger("django.request").handlers[0]
    assert any(isinstance(f, ContextFilter) for f in handler.filters)
    buffer = io.StringIO()
    old_stream, old_formatter = handler.stream, handler.formatter
    handler.setStream(buffer)
    handler.setFormatter(JsonFormatter())
    try:
        response = Client(raise_request_exception=False).get("/boom/")
    finally:
        handler.setStream(old_stream)
        handler.setFormatter(old_formatter)
    assert response.status_code == 500
    request_id = response["X-Request-ID"]
    assert len(request_id) == 36
    assert f"Quote this reference: <code>{request_id}</code>" in response.content.decode()
    assert "kaboom" not in response.content.decode()
    (entry,) = lines(buffer)
    assert entry["level"] == "ERROR" and entry["logger"] == "django.request"
    assert entry["request_id"] == request_id
    assert "RuntimeError: kaboom" in entry["exception"]


def test_every_response_carries_a_request_id(db, client):
    first = client.get("/login/")["X-Request-ID"]
    second = client.get("/login/")["X-Request-ID"]
    assert first != second
    sent = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    assert client.get("/login/", HTTP_X_REQUEST_ID=sent)["X-Request-ID"] == sent
    forged = client.get("/login/", HTTP_X_REQUEST_ID="x\nfake log line")["X-Request-ID"]
    assert "fake" not in forged
