"""One person: look them up in Dynamics by email, show each step, and sync only them.

The design note looked people up with `contains(internalemailaddress, '…')`; but contains is
SQL LIKE in Dataverse, where `_` and `%` are wildcards, so `a_b@example.com` would also find
`axb@example.com`. An exact `eq` with the quotes doubled finds exactly that person (string
comparisons in Dataverse are case-insensitive).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from .credentials import AuthenticationError
from .dataverse import DataverseError, Page
from .mapping import Mapping
from .models import DynamicsCrmSetting, SyncRun
from .sync import (
    SyncAlreadyRunning,
    apply_plan,
    finish_run,
    open_client,
    plan_changes,
    prepare_plan,
    run_lease,
    settle_at_once,
)


@dataclass
class Lookup:
    email: str
    steps: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    run: SyncRun | None = None
    error: str = ""


# RFC 5321's limit on a forward path, as Django's EmailField has it.
EMAIL_MAX_LENGTH = 254


def email_problem(email: str) -> str:
    """Why `email` can't be looked up, or "": checked before any request, since a huge or
    malformed value would otherwise end up in the URL (httpx refuses over-long URLs)."""
    email = email.strip()
    if len(email) > EMAIL_MAX_LENGTH:
        return f"That email is {len(email):,} characters long; an email has at most {EMAIL_MAX_LENGTH}."
    try:
        validate_email(email)
    except ValidationError:
        return f"“{email}” is not a valid email address."
    return ""


def email_filter(email: str, column: str = "internalemailaddress") -> str:
    return f"{column} eq '" + email.strip().replace("'", "''") + "'"


def lookup_person(setting: DynamicsCrmSetting, email: str, *, apply: bool = False) -> Lookup:
    result = Lookup(email=email)
    if problem := email_problem(email):
        result.error = problem
        return result
    mapping = Mapping.for_setting(setting)
    run = SyncRun(
        setting=setting,
        company=setting.company,
        trigger=SyncRun.Trigger.LOOKUP,
        dry_run=not apply,
        mode=SyncRun.Mode.DELTA,
        mode_reason=f"One person: {email}",
    )
    try:
        with open_client(setting) as client:
            query = email_filter(email, mapping.source.email_column)
            url = client.collection_url(mapping.source.key, select=mapping.columns, filter=query)
            result.steps.append(f"Asked Entra ID for a token and Dynamics for: {query}")
            page = next(client.pages(url))
    except (AuthenticationError, DataverseError) as exc:
        result.error = str(exc)
        result.steps.append(f"Failed: {exc}")
        return result
    result.records = page.records
    result.steps.append(f"Dynamics found {len(page.records)} record(s) with that email.")
    mapped = [mapping.map(record) for record in page.records]
    plan = plan_changes(setting.company, mapped, mapping, create_users=setting.create_users)
    for change in plan.changes:
        detail = ", ".join(f"{k}: {v[0] or '—'} → {v[1] or '—'}" for k, v in change.fields.items())
        state = " (waits for the run's limits)" if change.pending else ""
        result.steps.append(
            f"{change.get_action_display()}{state}: {change.email} {detail} {change.reason}".strip()
        )
    if plan.counts["unchanged"]:
        result.steps.append("Already up to date: nothing to change.")
    if not apply:
        return result

    run.started_at = timezone.now()
    run.save()
    # A sync's lease and record, as execute_run has them; not marked running, so that a
    # lookup that fails half-way is not resumed as a whole sync.
    try:
        with run_lease(run, setting):
            prepare_plan(plan, run.pk, [])
            apply_plan(
                run,
                plan,
                Page(records=page.records, next_link=None, url=url),
                requests=client.requests,
                throttle_wait=client.throttle_wait_seconds,
            )
            settle_at_once(run)
            finish_run(run)
    except SyncAlreadyRunning:
        run.delete()
        raise SyncAlreadyRunning(
            f"A sync of {setting.company} is running; try again when it has finished."
        ) from None
    result.run = run
    result.steps.append(f"Applied as sync {run.pk}.")
    return result
