"""Bulk inserts with ids reserved beforehand, on SQLite and PostgreSQL."""

import uuid

import pytest
from django.db import DataError, transaction
from django.utils import timezone

from learnexa.accounts.models import Company, User
from learnexa.dataflow.bulk import allocate_ids, insert_rows

FIELDS = [f.name for f in User._meta.concrete_fields]


def new_users(company, ids, prefix):
    now = timezone.now()
    for pk in ids:
        values = {f.name: None if f.null else f.get_default() for f in User._meta.concrete_fields}
        values.update(
            id=pk,
            company=company.pk,
            email=f"{prefix}{pk}@acme.test",
            password="!",
            dynamics_systemuser_id=uuid.uuid4(),
            created_at=now,
            updated_at=now,
        )
        yield [values[name] for name in FIELDS]


@pytest.mark.django_db(transaction=True)
def test_reserved_ids_are_new_and_never_taken_again():
    company = Company.objects.create(slug="acme", name="Acme")
    before = User.objects.create(company=company, email="before@acme.test")
    with transaction.atomic():
        ids = allocate_ids(User, 5)
        insert_rows(User, FIELDS, new_users(company, ids, "bulk"))
    assert len(set(ids)) == 5 and min(ids) > before.pk
    assert set(User.objects.filter(email__startswith="bulk").values_list("pk", flat=True)) == set(
        ids
    )
    # Deleting the newest user does not free its id, and the ORM carries on past them.
    User.objects.filter(pk=max(ids)).delete()
    with transaction.atomic():
        again = allocate_ids(User, 2)
    assert min(again) > max(ids)
    after = User.objects.create(company=company, email="after@acme.test")
    assert after.pk > max(again)


def a_run():
    from learnexa.dynamics_crm.models import DynamicsCrmSetting, SyncRun

    company = Company.objects.create(slug="acme", name="Acme")
    setting = DynamicsCrmSetting.objects.create(
        company=company, organization_uri="https://acme.crm.dynamics.com"
    )
    return SyncRun.objects.create(setting=setting, company=company)


@pytest.mark.django_db(transaction=True)
def test_insert_rows_converts_uuids_dates_and_json():
    from learnexa.dynamics_crm.models import SyncChange

    run = a_run()
    record = uuid.uuid4()
    insert_rows(
        SyncChange,
        ["run", "systemuser_id", "email", "action", "fields", "reason", "pending"],
        [(run.pk, record, "a@acme.test", "created", {"city": [None, "Oslo"]}, "", False)],
    )
    change = SyncChange.objects.get(run=run)
    assert change.systemuser_id == record
    assert change.fields == {"city": [None, "Oslo"]}
    # The fields are JSON kept as text: written by the ORM too, read back the same.
    by_orm = SyncChange.objects.create(run=run, action="updated", fields={"job_title": ["a", "b"]})
    by_orm.refresh_from_db()
    assert by_orm.fields == {"job_title": ["a", "b"]}


@pytest.mark.django_db(transaction=True)
def test_a_uuid_may_come_as_text_in_any_spelling_and_is_stored_as_the_orm_stores_it():
    from learnexa.dynamics_crm.models import SeenRecord

    run = a_run()
    ids = [uuid.uuid4() for _ in range(4)]
    spellings = [ids[0], str(ids[1]), str(ids[2]).upper(), f"{{{ids[3]}}}"]
    insert_rows(SeenRecord, ["run", "record_id"], [(run.pk, value) for value in spellings])
    # Found by the ORM, which compares with the UUIDs: stored exactly as it stores them.
    assert SeenRecord.objects.filter(record_id__in=ids).count() == 4
    # Text that isn't a UUID is refused: by the conversion, or by PostgreSQL's uuid type.
    with pytest.raises((ValueError, DataError)), transaction.atomic():
        insert_rows(SeenRecord, ["run", "record_id"], [(run.pk, "not-a-guid")])
    assert SeenRecord.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_a_failing_row_in_a_transaction_leaves_no_row_of_its_page():
    """Inside a transaction the multi-row INSERTs are OR FAIL (no statement journal on
    SQLite): the rows before a failing one are undone by the rollback, not kept."""
    from django.db import IntegrityError

    company = Company.objects.create(slug="acme", name="Acme")
    User.objects.create(company=company, email="KIM@acme.test")
    rows = list(new_users(company, [101, 102, 103], "ok"))
    rows[2][FIELDS.index("email")] = "kim@ACME.test"  # the same email, ignoring case
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(User, FIELDS, rows)
    assert list(User.objects.values_list("email", flat=True)) == ["KIM@acme.test"]


def test_a_column_of_uuids_converts_as_its_values_one_by_one():
    from learnexa.dataflow.bulk import _uuid_hex, _uuid_hex_column

    ids = [uuid.uuid4() for _ in range(5)]
    text = [str(i) for i in ids]
    columns = [
        text,  # as the sync has them: converted joined
        [text[0], None, text[1], None],
        [None, None],
        [],
        [ids[0], text[1]],  # a UUID among the text
        [text[0], text[1].upper()],
        [text[0], "{" + text[1] + "}"],
        [text[0], text[1][:8] + text[1][9:13] + "-" + text[1][13:]],  # a hyphen moved
    ]
    for column in columns:
        assert _uuid_hex_column(column) == [None if v is None else _uuid_hex(v) for v in column]
    assert _uuid_hex_column(text) == [i.hex for i in ids]
    for junk in ("g" * 8 + text[0][8:], text[0][:35], "not-a-guid"):
        with pytest.raises(ValueError):
            _uuid_hex_column([text[1], junk])


@pytest.mark.django_db(transaction=True)
def test_columns_the_same_in_every_row_are_bound_once_per_statement_on_sqlite():
    from django.db import connection

    from learnexa.dataflow.bulk import Rows
    from learnexa.dynamics_crm.models import SyncChange

    run = a_run()
    fields = ["run", "user", "email", "action", "fields", "reason", "pending"]
    rows = [(run.pk, None, f"p{n}@acme.test", "created", {"n": n}, "", False) for n in range(5)]
    prepared = Rows(SyncChange, fields, rows, later=["user"])
    users = User.objects.bulk_create(
        [User(company=run.company, email=f"p{n}@acme.test") for n in range(5)]
    )
    # A column given later, and one folded but given all the same (not named in `later`).
    prepared.set_column("user", [u.pk for u in users])
    prepared.set_column("reason", [f"why {n}" for n in range(5)])
    assert list(prepared.rows())[4] == [
        run.pk,
        users[4].pk,
        "p4@acme.test",
        "created",
        '{"n":4}',
        "why 4",
        False,
    ]
    statements = []

    def capture(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture), transaction.atomic():
        prepared.insert()

    got = list(
        SyncChange.objects.filter(run=run)
        .order_by("email")
        .values_list("user", "email", "action", "fields", "reason", "pending")
    )
    assert got == [
        (u.pk, f"p{n}@acme.test", "created", {"n": n}, f"why {n}", False)
        for n, u in enumerate(users)
    ]
    if connection.vendor == "sqlite":
        # run, action and pending once a statement; user, email, fields and reason for
        # each row (5 rows: statements of 4 and 1).
        inserts = [sql for sql in statements if sql.startswith("INSERT")]
        assert [sql.count("?") for sql in inserts] == [3 + 4 * 4, 3 + 4 * 1]
