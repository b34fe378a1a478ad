"""The one way to connect a company to a simulated organization, and to get a token from
its Entra ID, for the demo, the tests and the benchmarks. `info` is what the simulator
describes itself with (`Simulator.info`, or the file `--info-file` writes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from learnexa.accounts.models import Company
    from learnexa.dynamics_crm.models import DynamicsCrmSetting

CONNECTION_FIELDS = ("organization_uri", "authority_host", "tenant_id", "client_id")


def connect_company(company: Company, info: dict, **fields) -> DynamicsCrmSetting:
    """Connect `company` to the simulated organization with its client secret, as the
    integration page would; `fields` set any other of the settings. A new connection is
    scheduled by its frequency; an existing one keeps its schedule and history."""
    # Imported here: app_token serves the simulator's benchmark, which runs without Django.
    from learnexa.dynamics_crm.models import DynamicsCrmSetting

    setting = DynamicsCrmSetting.objects.filter(company=company).first() or DynamicsCrmSetting(
        company=company
    )
    previous_uri = setting.organization_uri
    for name in CONNECTION_FIELDS:
        setattr(setting, name, info[name])
    # The simulator may be on another port than last time: a delta link to the old one
    # would fail (the delta link is a URL on the organization).
    if setting.pk and previous_uri and previous_uri != setting.organization_uri:
        setting.forget_delta()
    for name, value in fields.items():
        setattr(setting, name, value)
    setting.set_client_secret(info["client_secret"])
    if setting.pk is None:
        setting.schedule_next()
    setting.save()
    return setting


def app_token(info: dict, post: Callable) -> str:
    """An access token for the simulated organization, as the app registration gets one
    (client credentials). `post` is an HTTP client's post, trusting the simulator's CA."""
    response = post(
        f"{info['authority_host']}/{info['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": info["client_id"],
            "client_secret": info["client_secret"],
            "scope": f"{info['organization_uri']}/.default",
        },
    )
    response.raise_for_status()
    return response.json()["access_token"]
