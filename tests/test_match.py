"""Matching on the database: the users a page's records could be, loaded with only what
planning reads, so that planning and preparing the page's rows never query."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from learnexa.accounts.models import User
from learnexa.dynamics_crm.mapping import DEFAULT_MAPPING, MappedRecord
from learnexa.dynamics_crm.sync import match_page, plan_page, prepare_plan
from learnexa.dynamics_crm.sync.match import UNREAD_FIELDS

LINK = "dynamics_systemuser_id"


def record(n: int, *, email: str, enabled: bool = True, entra: str | None = None, **fields):
    return MappedRecord(
        record_id=str(uuid.UUID(int=n)),
        email=email,
        email_key=email.lower(),
        fields={rule.field: fields.get(rule.field, "") for rule in DEFAULT_MAPPING.rules},
        is_enabled=enabled,
        disabled_reason="" if enabled else "Disabled in Dynamics.",
        entra_object_id=entra,
    )


@pytest.mark.django_db
def test_matched_users_carry_what_planning_reads_and_planning_makes_no_query(company):
    entra = str(uuid.uuid4())
    linked = User.objects.create(
        company=company,
        email="Linked@Example.com",
        first_name="Lin",
        job_title="Clerk",
        dynamics_systemuser_id=uuid.UUID(int=1),
        is_active=False,
        deactivated_by_sync_at=timezone.now(),
    )
    by_entra = User.objects.create(company=company, email="e@example.com", entra_object_id=entra)
    by_email = User.objects.create(company=company, email="Mail@Example.com")
    records = [
        record(1, email="linked@example.com", first_name="Lin", job_title="Head Clerk"),
        record(2, email="other@example.com", entra=entra),
        record(3, email="mail@example.com"),
    ]

    with CaptureQueriesContext(connection) as matching:
        candidates = match_page(company, records, LINK)
    assert len(matching.captured_queries) == 2  # by link; by Entra object id or email

    found = {
        u.pk: u
        for c in (candidates.by_id, candidates.by_entra, candidates.by_email)
        for u in c.values()
    }
    assert set(found) == {linked.pk, by_entra.pk, by_email.pk}
    user = found[linked.pk]
    # GUIDs as text, as the records have them; other columns as Django gives them.
    assert user.dynamics_systemuser_id == str(uuid.UUID(int=1))
    assert found[by_entra.pk].entra_object_id == entra
    assert user.is_active is False and found[by_email.pk].is_site_admin is False
    assert isinstance(user.deactivated_by_sync_at, datetime)
    assert user.deactivated_by_sync_at.tzinfo is not None
    assert (user.email, user.first_name, user.job_title) == ("Linked@Example.com", "Lin", "Clerk")
    assert user.get_deferred_fields() == set(UNREAD_FIELDS)

    with CaptureQueriesContext(connection) as planning:
        plan = plan_page(company, records, DEFAULT_MAPPING, candidates)
        prepare_plan(plan, run_id=1, seen=[], connection=connection)
    assert planning.captured_queries == []
    # Reactivated (the sync had deactivated them), retitled, its email's case followed;
    # the other two linked to their records.
    assert plan.counts["reactivated"] == 1 and plan.counts["updated"] == 2
    assert user.is_active is True and user.deactivated_by_sync_at is None
    assert user.job_title == "Head Clerk" and user.email == "linked@example.com"
    assert found[by_email.pk].dynamics_systemuser_id == str(uuid.UUID(int=3))
