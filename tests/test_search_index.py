"""The Manage site's users search: served by pg_trgm indexes on PostgreSQL."""

import pytest
from django.db import connection

from learnexa.accounts.models import User

pytestmark = pytest.mark.django_db

INDEXES = {"users_email_upper_trgm", "users_first_name_upper_trgm", "users_last_name_upper_trgm"}


def indexes():
    with connection.cursor() as cursor:
        return set(connection.introspection.get_constraints(cursor, "users"))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's indexes")
def test_the_search_uses_the_trigram_indexes(company):
    assert INDEXES <= indexes()
    User.objects.bulk_create(
        User(company=company, email=f"u{n}@acme.test", first_name=f"F{n}", last_name=f"L{n}")
        for n in range(200)
    )
    from django.db.models import Q

    query = User.objects.filter(
        Q(email__icontains="garcia")
        | Q(first_name__icontains="garcia")
        | Q(last_name__icontains="garcia"),
    )
    # The expressions Django writes are the indexes' own: with few rows, the planner takes
    # them once the alternatives are off (web_load.py --explain shows it at 100,000 users).
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        plan = query.explain()
    assert all(name in plan for name in INDEXES), plan


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite")
def test_sqlite_gets_no_new_index():
    assert not INDEXES & indexes()


def test_search_finds_any_case_and_unicode(client, site_admin, company):
    User.objects.create(
        company=company, email="zoe@acme.test", first_name="Zoë", last_name="O'Hara"
    )
    User.objects.create(company=company, email="bob@acme.test", first_name="Bob", last_name="Smith")
    client.force_login(site_admin)
    for q in ("o'HARA", "ZOE@", "smi"):
        response = client.get("/manage/users/", {"q": q})
        assert response.status_code == 200
    assert "O&#x27;Hara" in client.get("/manage/users/", {"q": "o'hara"}).text
    assert "Smith" not in client.get("/manage/users/", {"q": "o'hara"}).text


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's storage")
def test_a_synced_change_to_an_unindexed_column_is_a_hot_update(company):
    """A tenth of each page is left free (migration 0012), so a new version of a row stays on
    its page and touches no index, even right after a bulk insert filled the table: for a
    sync's few changes a page (here one user in twenty, as 5 % changed in Dynamics)."""
    User.objects.bulk_create(
        User(company=company, email=f"u{n}@acme.test", last_name=f"L{n}") for n in range(2000)
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'users'")
        assert cursor.fetchone()[0] == ["fillfactor=90"]
        before = _hot_updates(cursor)
        changed = [user.pk for user in User.objects.filter(company=company)][::20]
        User.objects.filter(pk__in=changed).update(job_title="Analyst", city="Lyon")
        # A transaction's own counts, at once.
        assert _hot_updates(cursor) - before == len(changed) == 100


def _hot_updates(cursor) -> int:
    cursor.execute("SELECT n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'users'")
    return cursor.fetchone()[0]
