"""/healthz and /readyz: unauthenticated, cheap, up or down and which check failed."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder
from django.db.utils import OperationalError


def test_healthz_answers_without_a_session_or_a_database(db, client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies
    assert response["X-Request-ID"]


def test_readyz_passes_with_the_database_up(db, client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_fails_with_the_database_down(db, client):
    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    with mock.patch.object(connections["default"], "cursor", down):
        response = client.get("/readyz")
    assert response.status_code == 503
    # Which check failed, and nothing else (not the error's text).
    assert response.json() == {"status": "failing", "failed": ["database"]}
    assert b"refused" not in response.content


def test_readyz_fails_with_a_migration_pending(db, client, monkeypatch):
    from learnexa.ops import views

    monkeypatch.setattr(views, "_migrated", False)  # as a process that never saw them applied
    MigrationRecorder.Migration.objects.filter(app="ops", name="0001_initial").delete()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "failing", "failed": ["migrations"]}


def test_readyz_fails_when_the_queue_is_unreadable(db, client, monkeypatch):
    from learnexa.ops import views

    def unreadable():
        raise OperationalError('no such table: "django_tasks_database_dbtaskresult"')

    monkeypatch.setitem(views.CHECKS, "queue", unreadable)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "failing", "failed": ["queue"]}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_by_address_over_http_are_neither_refused_nor_redirected(db, client, settings, path):
    """A load balancer probes the backend by its IP address, over plain HTTP: neither
    ALLOWED_HOSTS nor the HTTPS redirect may turn it away, and no sign-in is asked for."""
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["learn.example.com"]
    response = client.get(path, HTTP_HOST="10.0.0.7:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    # The rest of the site is still redirected to HTTPS.
    assert client.get("/login/", HTTP_HOST="learn.example.com").status_code == 301


def test_probes_need_no_csrf_token(db, settings):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    assert strict.get("/readyz").status_code == 200
    assert strict.head("/healthz").status_code == 200
