"""Test connection: each step a sync depends on, in order, each failure in plain words with
the fix. Stops at the first failure, since every later step depends on it."""

from __future__ import annotations

from dataclasses import dataclass

from .credentials import AuthenticationError
from .dataverse import DataverseError
from .mapping import Mapping
from .models import DynamicsCrmSetting
from .sync import open_client
from .webhooks import remember_organization_id


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def test_connection(setting: DynamicsCrmSetting) -> list[Check]:
    checks: list[Check] = []
    try:
        client = open_client(setting, max_retries=1, max_throttle_wait=30)
    except (AuthenticationError, DataverseError, ValueError) as exc:
        return [Check("Credentials", False, str(exc))]
    with client:
        try:
            client.tokens.token()
            checks.append(
                Check(
                    "Sign in to Entra ID",
                    True,
                    f"A token for {setting.organization_uri} was issued.",
                )
            )
            who = client.whoami()
            # The webhook checks that events come from this organization.
            remember_organization_id(setting, who)
            checks.append(
                Check(
                    "Reach Dynamics 365 (WhoAmI)",
                    True,
                    f"Connected as application user {who.get('UserId', '?')}.",
                )
            )
            mapping = Mapping.for_setting(setting)
            url = client.collection_url(mapping.source.key, select=mapping.columns)
            client.page_size = 1
            next(client.pages(url))
            checks.append(Check("Read users", True, f"It can read {mapping.source.label.lower()}."))
            tracking = client.change_tracking_enabled(mapping.source.logical_name)
            checks.append(
                Check(
                    "Change tracking",
                    True,
                    "On: scheduled syncs read only what changed."
                    if tracking
                    else f"Off for the {mapping.source.logical_name} table: scheduled syncs poll for "
                    "recent changes instead, and "
                    "deletions are noticed at each full reconciliation. An administrator can turn "
                    "on Track changes for the table in Power Apps.",
                )
            )
        except AuthenticationError as exc:
            checks.append(Check("Sign in to Entra ID", False, str(exc)))
        except DataverseError as exc:
            step = {
                0: "Sign in to Entra ID",
                1: "Reach Dynamics 365 (WhoAmI)",
                2: "Read users",
            }.get(len(checks), "Change tracking")
            checks.append(Check(step, False, str(exc)))
    return checks
