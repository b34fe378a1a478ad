"""The sync engine, one module per stage, in the order data flows through them:

    fetch a page → map → match → plan → apply → record, page after page; then settle

    fetch.py    the client a run reads Dynamics with (mapping.py maps each page as it comes)
    match.py    the platform users a page's records could be: two queries per page
    plan.py     what happens to each record's user, in Python only: a Plan
    apply.py    the plan written with bulk statements, with the run's progress (record)
    flow.py     PageFlow: a run's pages through those stages, three pages at a time
    settle.py   what a complete read decides: missing users, limits, held deactivations
    run.py      a whole run: lease, mode (delta or full), pages, settling, its record
    context.py  what a run works with, built once: settings, company, mapping, client

Each page is matched with two queries (users by linked id; by Entra object id or email),
planned in Python, and applied with bulk statements, so the work per page is constant
however large the company. A page is written in one transaction with the run's checkpoint
(pages that come in faster than they are written share one): a run that stops half-way
leaves whole pages behind, never half of one, and resumes from its checkpoint. While a page
is written, the next one is planned in one thread, the one after it mapped in another and
the next fetched in a third.

Deactivations wait until the read is complete: only then is "missing from Dynamics" known,
and only then is the run's total compared with the company's limits, above which they are
held for an admin instead of applied.

The names below are the engine's interface; PageFlow calls the page's stages through them
(`sync.match_page`, …), so that a test or a benchmark can wrap one.
"""

from .apply import LeaseLost, PageTransactions, apply_plan, prepare_plan
from .context import SyncContext
from .fetch import open_client
from .flow import PageFlow, SliceEnded, plan_changes
from .match import GUID_FIELDS, Candidates, _users_where, match_page
from .plan import (
    ADMIN_LEFT_ACTIVE,
    SITE_ADMIN_REASON,
    SWITCHED_OFF,
    Action,
    Change,
    NewUser,
    Plan,
    plan_page,
)
from .run import SyncAlreadyRunning, execute_run, finish_run, run_lease, start_run
from .settle import MISSING_REASON, apply_deactivations, decide_held, settle_at_once

__all__ = [
    "ADMIN_LEFT_ACTIVE",
    "GUID_FIELDS",
    "MISSING_REASON",
    "SITE_ADMIN_REASON",
    "SWITCHED_OFF",
    "Action",
    "Candidates",
    "Change",
    "LeaseLost",
    "NewUser",
    "PageFlow",
    "PageTransactions",
    "Plan",
    "SliceEnded",
    "SyncAlreadyRunning",
    "SyncContext",
    "_users_where",
    "apply_deactivations",
    "apply_plan",
    "decide_held",
    "execute_run",
    "finish_run",
    "match_page",
    "open_client",
    "plan_changes",
    "plan_page",
    "prepare_plan",
    "run_lease",
    "settle_at_once",
    "start_run",
]
