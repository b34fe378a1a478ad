"""A page's updates in one UPDATE … FROM (VALUES …) statement, on SQLite and PostgreSQL."""

import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection

from learnexa.accounts.models import Company, User
from learnexa.dataflow import bulk
from learnexa.dataflow.bulk import update_objects

pytestmark = pytest.mark.django_db


def users(n, company=None):
    company = company or Company.objects.create(slug="acme", name="Acme")
    return [
        User.objects.create(
            company=company,
            email=f"u{i}@acme.test",
            first_name=f"First{i}",
            last_name=f"Last{i}",
            job_title="Clerk",
            city="Oslo",
        )
        for i in range(n)
    ]


class CaptureQueriesContext:
    """Every statement run, including those bulk runs past Django's debug cursor (through
    the connection's execute wrappers, as the ops metrics see them)."""

    def __init__(self, connection):
        self.connection, self.sql = connection, []

    def __enter__(self):
        def record(execute, sql, params, many, context):
            self.sql.append(sql)
            return execute(sql, params, many, context)

        self._wrapper = self.connection.execute_wrapper(record)
        self._wrapper.__enter__()
        return self

    def __exit__(self, *exc):
        self._wrapper.__exit__(*exc)


def updates(queries):
    return [sql for sql in queries.sql if sql.startswith("UPDATE") and '"users"' in sql]


def test_values_with_quotes_nulls_unicode_booleans_datetimes_and_uuids():
    a, b, c = users(3)
    when = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    record = uuid.uuid4()
    a.first_name, a.last_name = "O'Brien", 'Say "hi"; DROP TABLE users; --'
    a.city = "Zürich – 東京 🚀"
    a.updated_at = when
    b.is_active, b.deactivated_by_sync_at, b.updated_at = False, when, when
    b.entra_object_id = record
    c.job_title, c.dynamics_systemuser_id, c.updated_at = "", None, when
    c.is_active = True
    with CaptureQueriesContext(connection) as queries:
        update_objects(
            User,
            {
                ("city", "first_name", "last_name"): [a],
                ("deactivated_by_sync_at", "entra_object_id", "is_active"): [b],
                ("dynamics_systemuser_id", "job_title"): [c],
            },
            also=["updated_at"],
        )
    assert len(updates(queries)) == 1
    for user in (a, b, c):
        user.refresh_from_db()
    assert (a.first_name, a.last_name) == ("O'Brien", 'Say "hi"; DROP TABLE users; --')
    assert a.city == "Zürich – 東京 🚀"
    assert a.updated_at == when and a.job_title == "Clerk" and a.is_active is True
    assert b.is_active is False and b.deactivated_by_sync_at == when
    assert b.entra_object_id == record and b.first_name == "First1" and b.city == "Oslo"
    assert c.job_title == "" and c.dynamics_systemuser_id is None and c.first_name == "First2"
    assert User.objects.count() == 3


def test_fields_a_group_does_not_change_keep_the_value_in_the_database():
    a, b = users(2)
    a.job_title, b.city = "Chief", "Bergen"
    # Another writer changes b's job title after the page was planned: not overwritten.
    User.objects.filter(pk=b.pk).update(job_title="Changed meanwhile")
    with CaptureQueriesContext(connection) as queries:
        update_objects(User, {("job_title",): [a], ("city",): [b]})
    (sql,) = updates(queries)
    assert "CASE WHEN" in sql
    a.refresh_from_db(), b.refresh_from_db()
    assert (a.job_title, a.city) == ("Chief", "Oslo")
    assert (b.job_title, b.city) == ("Changed meanwhile", "Bergen")


def test_a_field_every_group_changes_is_set_without_a_flag():
    a, b = users(2)
    a.job_title, b.job_title, b.city = "A", "B", "C"
    with CaptureQueriesContext(connection) as queries:
        update_objects(User, {("job_title",): [a], ("city", "job_title"): [b]})
    (sql,) = updates(queries)
    assert sql.count("CASE WHEN") == 1  # city only
    assert list(User.objects.order_by("pk").values_list("job_title", "city")) == [
        ("A", "Oslo"),
        ("B", "C"),
    ]


def test_a_column_of_nulls_only():
    a, b = users(2)
    for user in (a, b):
        user.dynamics_systemuser_id = uuid.uuid4()
        user.save()
        user.dynamics_systemuser_id, user.deactivated_by_sync_at = None, None
    update_objects(User, {("deactivated_by_sync_at", "dynamics_systemuser_id"): [a, b]})
    assert list(User.objects.values_list("dynamics_systemuser_id", flat=True)) == [None, None]


def test_many_rows_one_statement_per_page_whatever_the_groups():
    people = users(60)
    groups = {}
    for n, user in enumerate(people):
        fields = ("job_title",) if n % 3 == 0 else ("city",) if n % 3 == 1 else ("first_name",)
        setattr(user, fields[0], f"new {n} ' é")
        groups.setdefault(fields, []).append(user)
    with CaptureQueriesContext(connection) as queries:
        update_objects(User, groups, also=["updated_at"])
    assert len(updates(queries)) == 1
    got = {u.pk: u for u in User.objects.all()}
    for n, user in enumerate(people):
        field = ("job_title", "city", "first_name")[n % 3]
        assert getattr(got[user.pk], field) == f"new {n} ' é"


def test_statements_split_only_past_the_parameter_limit(monkeypatch):
    people = users(10)
    for user in people:
        user.job_title = f"T{user.pk}"
    monkeypatch.setattr(bulk, "MAX_UPDATE_PARAMS", 8)  # 4 rows of 2 columns a statement
    with CaptureQueriesContext(connection) as queries:
        update_objects(User, {("job_title",): people})
    assert len(updates(queries)) == 3
    assert all(u.job_title == f"T{u.pk}" for u in User.objects.all())


def test_nothing_to_update_runs_nothing():
    with CaptureQueriesContext(connection) as queries:
        update_objects(User, {("job_title",): []})
    assert updates(queries) == []


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's fallback")
def test_an_old_sqlite_falls_back_to_bulk_update(monkeypatch):
    a, b = users(2)
    a.job_title, b.city = "X'", None or "Y"
    monkeypatch.setattr(bulk, "SQLITE_UPDATE_FROM", (99, 0, 0))
    with CaptureQueriesContext(connection) as queries:
        update_objects(User, {("job_title",): [a], ("city",): [b]}, also=["updated_at"])
    assert len(updates(queries)) == 2 and all("CASE WHEN" in q for q in updates(queries))
    a.refresh_from_db(), b.refresh_from_db()
    assert (a.job_title, b.city) == ("X'", "Y")


def test_the_statement_on_each_database():
    a, b = users(2)
    a.job_title, b.city = "A", "B"
    with CaptureQueriesContext(connection) as queries:
        update_objects(User, {("job_title",): [a], ("city",): [b]}, also=["updated_at"])
    (sql,) = updates(queries)
    assert sql.startswith('UPDATE "users" AS u SET ')
    if connection.vendor == "postgresql":
        assert ') AS v("id", ' in sql and "::bigint" in sql and "::boolean" in sql
        assert "::timestamp with time zone" in sql and 'WHERE u."id" = v."id"' in sql
    else:
        assert 'WHERE u."id" = v.column1' in sql


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's plan")
def test_sqlite_looks_the_rows_up_by_primary_key():
    users(3)
    fields = [User._meta.get_field("job_title")]
    sql = bulk.update_from_sql(User, fields, [], 2, connection)
    with connection.cursor() as cursor:
        plan = cursor.execute("EXPLAIN QUERY PLAN " + sql, [1, "a", 2, "b"]).fetchall()
    text = " ".join(str(row[-1]) for row in plan)
    assert "INTEGER PRIMARY KEY" in text and "SCAN u" not in text
