"""Emails are unique per company ignoring case, through an index that every lookup by email
uses, and that on SQLite is on a column rather than on an expression (see CaseFolded)."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from learnexa.accounts.models import User
from learnexa.dynamics_crm.sync import _users_where

INDEX = "users_email_unique_per_company"


@pytest.mark.django_db
def test_an_email_is_taken_whatever_its_case_but_only_within_a_company(company):
    from learnexa.accounts.models import Company

    User.objects.create(company=company, email="Kim.Lee@Contoso.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(company=company, email="kim.lee@contoso.COM")
    other = Company.objects.create(slug="other", name="Other")
    User.objects.create(company=other, email="kim.lee@contoso.com")
    assert User.objects.for_email(company, " KIM.LEE@contoso.com ").get().email == (
        "Kim.Lee@Contoso.com"
    )


@pytest.mark.django_db
def test_the_email_index_serves_sign_in_and_matching(company):
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [INDEX])
            assert "lower((email)" in cursor.fetchone()[0].lower()
            return
        cursor.execute("SELECT sql FROM sqlite_master WHERE name = %s", [INDEX])
        definition = cursor.fetchone()[0]
    # A column with a collation: an expression such as LOWER() would make every multi-row
    # INSERT into users keep a statement journal.
    assert 'COLLATE "NOCASE"' in definition and "LOWER" not in definition.upper()

    assert INDEX in User.objects.for_email(company, "kim@contoso.com").explain()
    with CaptureQueriesContext(connection) as queries:
        _users_where(company, {"lower(email)": ["kim@contoso.com"]})
    (matching,) = queries.captured_queries
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {matching['sql']}")
        plan = " ".join(str(row) for row in cursor.fetchall())
    assert f"USING INDEX {INDEX}" in plan
