"""Fetch: the client a run reads Dynamics with, and how it reads lookups' names.

Mapping a page (mapping.py) happens in the mapping thread while the fetching thread asks for
the next page (flow.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings

from ..credentials import TokenProvider
from ..dataverse import DataverseClient, DataverseError
from ..entra_session import NO_LONGER_ALLOWED
from ..hosts import HostNotAllowed
from ..models import DynamicsCrmSetting
from ..retries import budget_from_settings

logger = logging.getLogger(__name__)

RETRY_OPTIONS = ("max_retries", "backoff_seconds", "max_throttle_wait", "max_waits", "sleep")


def open_client(setting: DynamicsCrmSetting, **options) -> DataverseClient:
    """A client for the company's organization, whose token requests share its budget of
    retries and waits. Nothing is sent yet."""
    retry = budget_from_settings(**{k: options.pop(k) for k in RETRY_OPTIONS if k in options})
    options = {
        "page_size": settings.LEARNEXA_DYNAMICS_PAGE_SIZE,
        "timeout": settings.LEARNEXA_DYNAMICS_TIMEOUT,
        **options,
    }
    try:
        return DataverseClient(
            setting.organization_uri, TokenProvider(setting, retry), retry=retry, **options
        )
    except HostNotAllowed as exc:
        raise DataverseError(f"{exc} {NO_LONGER_ALLOWED}") from exc


NAMES_PAGE_SIZE = 5000


def name_reader(client: DataverseClient) -> Callable[[str, list[str]], list[dict] | None]:
    """How a run reads lookups' related rows for their names (see mapping.LookupNames). A
    table the sync may not read (None) leaves those fields as they are here rather than
    failing the run; what may pass (throttling, an outage) fails it."""

    def read(entity_set: str, columns: list[str]) -> list[dict] | None:
        url, rows = client.collection_url(entity_set, select=columns), []
        try:
            # Pages as large as Dataverse serves, whatever the sync's page size: one request
            # for any organization's business units.
            while url:
                body = client.get(url, prefer=f"odata.maxpagesize={NAMES_PAGE_SIZE}")
                rows += [row for row in body.get("value") or () if isinstance(row, dict)]
                url = body.get("@odata.nextLink")
            return rows
        except DataverseError as exc:
            if exc.retryable:
                raise
            logger.warning("The sync could not read %s for their names: %s", entity_set, exc)
            return None

    return read
