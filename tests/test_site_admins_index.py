"""Finding a company's site admins (told of every held or failed sync) is an index search,
not a read of every active user: 5 s among a million learners on SQLite without it."""

import pytest
from django.db import connection

pytestmark = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="reads SQLite's query plan; PostgreSQL plans by size"
)


@pytest.mark.django_db
def test_the_site_admins_are_found_through_their_index(company, site_admin):
    sql, params = company.site_admins().values_list("email", flat=True).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = " ".join(str(row[-1]) for row in cursor.fetchall())
    assert "USING INDEX users_company_site_admins" in plan, plan
    assert list(company.site_admins()) == [site_admin]
