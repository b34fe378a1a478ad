"""A Dataverse Web API client: headers, paging, errors and retries; it knows HTTP and OData,
not users.

Every request goes to the configured organization URI only: a nextLink pointing anywhere
else is refused, because the bearer token travels with it.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import orjson

from . import hosts, tls
from .credentials import AuthenticationError, TokenProvider
from .retries import RetryBudget, retry_after_seconds

API_VERSION = "v9.2"
FORMATTED_VALUE = "OData.Community.Display.V1.FormattedValue"
MAX_PAGE_SIZE = 5000
TRANSIENT_STATUSES = {500, 502, 503, 504}


class DataverseError(Exception):
    """A request to Dataverse failed; the message says what happened and what to fix."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str = "", retryable: bool = False
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        # Worth trying again later by itself (throttling, an outage), as opposed to a
        # problem an admin must fix.
        self.retryable = retryable


class DataverseThrottled(DataverseError):
    pass


class DeltaExpired(DataverseError):
    """The delta token is too old (or unknown): Dataverse asks for a full sync."""


@dataclass
class Page:
    records: list[dict]
    next_link: str | None
    url: str
    delta_link: str | None = None

    @property
    def deleted_ids(self) -> list[str]:
        """Ids of the $deletedEntity rows of a delta page."""
        if len(self.rows) == len(self.records):
            return []  # nearly every page: spared a second look at each record
        return [
            r["id"]
            for r in self.records
            if r.get("reason") == "deleted"
            and "id" in r
            and str(r.get("@odata.context", "")).endswith("$deletedEntity")
        ]

    @functools.cached_property
    def rows(self) -> list[dict]:
        """The page's records, without $deletedEntity rows."""
        return [r for r in self.records if not (r.get("reason") == "deleted" and "id" in r)]


def _parse_json(content: bytes):
    # orjson parses a page of 5,000 records several times faster than json; json still
    # reads what orjson refuses but a browser would take (a lone surrogate, a huge number),
    # so that one odd value doesn't lose a whole page.
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content)


class DataverseClient:
    def __init__(
        self,
        organization_uri: str,
        tokens: TokenProvider,
        *,
        page_size: int = MAX_PAGE_SIZE,
        timeout: float = 60.0,
        max_retries: int = 4,
        max_throttle_wait: float = 300.0,
        backoff_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        retry: RetryBudget | None = None,
    ):
        self.origin = hosts.normalize_organization_uri(organization_uri)
        self.api_root = f"{self.origin}/api/data/{API_VERSION}"
        self.tokens = tokens
        self.page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        # The run's budget, shared with its token requests when the caller gives one.
        self.retry = retry or RetryBudget(
            max_retries=max_retries,
            backoff_seconds=backoff_seconds,
            max_throttle_wait=max_throttle_wait,
            sleep=sleep,
        )
        self.requests = 0
        self._http = httpx.Client(
            verify=tls.ssl_context(),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            trust_env=False,
            follow_redirects=False,
            transport=transport,
            headers={
                "Accept": "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
                "If-None-Match": "null",
                "User-Agent": "Learnexa-Dynamics-Sync/1.0",
            },
        )

    @property
    def max_retries(self) -> int:
        return self.retry.max_retries

    @property
    def throttle_wait_seconds(self) -> float:
        return self.retry.throttle_wait_seconds

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DataverseClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- queries ------------------------------------------------------------------------

    def collection_url(
        self, entity_set: str, *, select: list[str], filter: str | None = None
    ) -> str:
        query = f"$select={','.join(select)}"
        if filter:
            query += f"&$filter={quote(filter, safe='')}"
        return f"{self.api_root}/{entity_set}?{query}"

    def pages(
        self,
        url: str,
        *,
        track_changes: bool = False,
        formatted_values: Callable[[], bool] = lambda: True,
    ) -> Iterator[Page]:
        """Yield each page of a collection, following @odata.nextLink unchanged.

        `url` is a collection URL, a delta link, or a nextLink kept from an earlier run to
        resume from. With `track_changes`, the last page carries the delta link for the
        next read. `formatted_values` says, before each request, whether the page should
        carry Dataverse's formatted values (display names of lookups and choices).
        """
        prefer = [f"odata.maxpagesize={self.page_size}"]
        if track_changes or "$deltatoken=" in url:
            prefer.append("odata.track-changes")
        annotations = f'odata.include-annotations="{FORMATTED_VALUE}"'
        while url:
            asked = prefer[:1] + [annotations] + prefer[1:] if formatted_values() else prefer
            body = self.get(url, prefer=",".join(asked))
            records = body.get("value")
            if not isinstance(records, list):
                raise DataverseError(
                    f"Dynamics answered {url} without a 'value' list; this doesn't look like "
                    "a Dataverse collection."
                )
            next_link = body.get("@odata.nextLink")
            yield Page(
                records=records,
                next_link=next_link,
                url=url,
                delta_link=body.get("@odata.deltaLink"),
            )
            url = next_link

    def change_tracking_enabled(self, logical_name: str) -> bool:
        body = self.get(
            f"{self.api_root}/EntityDefinitions?$select=LogicalName,ChangeTrackingEnabled"
            f"&$filter=LogicalName%20eq%20'{logical_name}'"
        )
        rows = body.get("value") or [{}]
        return rows[0].get("ChangeTrackingEnabled") is True

    def whoami(self) -> dict:
        return self.get(f"{self.api_root}/WhoAmI")

    def record_count(self, logical_name: str) -> int:
        """A table's row count from RetrieveTotalRecordCount (a snapshot up to a day old: an
        estimate). One request, not retried nor waited for, so as to spend none of the run's
        budget; raises DataverseError on failure."""
        url = f"{self.api_root}/RetrieveTotalRecordCount(EntityNames=['{logical_name}'])"
        response = self._once("GET", url)
        counts = self._json(response, response.content).get("EntityRecordCountCollection")
        try:
            value = int(dict(zip(counts["Keys"], counts["Values"], strict=True))[logical_name])
        except (KeyError, TypeError, ValueError):
            value = -1
        if value < 0:
            raise DataverseError(f"Dynamics gave no row count of {logical_name}.")
        return value

    # -- writes (the webhook's registration; the sync itself only reads) -------------------

    def post(self, url: str, body: dict) -> dict:
        """Create a row; returns it (Prefer: return=representation), or {"@odata.id": ...}
        from the OData-EntityId header when the server answers 204."""
        response = self._once("POST", url, body)
        if response.status_code == 204:
            return {"@odata.id": response.headers.get("OData-EntityId", "")}
        return self._json(response, response.content)

    def delete(self, url: str) -> bool:
        """Delete a row; False if it was gone already (404)."""
        return self._once("DELETE", url, None, missing_ok=True).status_code != 404

    def _once(
        self, method: str, url: str, body: dict | None = None, *, missing_ok: bool = False
    ) -> httpx.Response:
        # Not retried: a create that timed out may have happened, and an estimate isn't worth
        # the run's budget of waits. Only a 401 gets one more try with a fresh token, as
        # reads do.
        if not hosts.same_origin(url, self.origin):
            raise DataverseError(f"Refused to send the access token to {url.split('?')[0]}.")
        headers = {"Prefer": "return=representation"} if method == "POST" else {}
        for refreshed in (False, True):
            headers["Authorization"] = f"Bearer {self.tokens.token()}"
            self.requests += 1
            try:
                response = self._http.request(method, url, json=body, headers=headers)
            except httpx.TransportError as exc:
                raise DataverseError(self._network_advice(exc), retryable=True) from exc
            if response.status_code == 401 and not refreshed:
                self.tokens.invalidate()
                continue
            break
        if response.status_code < 300 or (missing_ok and response.status_code == 404):
            return response
        raise self._error(response)

    # -- transport ----------------------------------------------------------------------

    def get(self, url: str, *, prefer: str | None = None) -> dict:
        if not hosts.same_origin(url, self.origin):
            raise DataverseError(
                f"Refused to send the access token to {url.split('?')[0]}: it is not the "
                f"configured organization {self.origin}."
            )
        headers = {"Prefer": prefer} if prefer else {}
        refreshed_token = False
        attempt = 0
        while True:
            try:
                headers["Authorization"] = f"Bearer {self.tokens.token()}"
                self.requests += 1
                with self._http.stream("GET", url, headers=headers) as response:
                    # Read into a variable of ours rather than kept on the response: an httpx
                    # response and its stream refer to each other, so a page's bytes kept
                    # there would wait for the garbage collector, which a sync calls rarely.
                    content = (
                        b"".join(response.iter_bytes())
                        if response.status_code == 200
                        else response.read()
                    )
            except AuthenticationError:
                raise
            except httpx.TransportError as exc:
                attempt += 1
                if not self.retry.backoff(attempt, f"{type(exc).__name__} from {self.origin}"):
                    raise DataverseError(self._network_advice(exc), retryable=True) from exc
                continue

            status = response.status_code
            if status == 200:
                try:
                    return self._json(response, content)
                except DataverseError as exc:
                    # JSON cut short or garbled on the way is as transient as a reset.
                    attempt += 1
                    if not exc.retryable or not self.retry.backoff(
                        attempt, f"Unreadable JSON from {self.origin}"
                    ):
                        raise
                    continue
            if status == 401 and not refreshed_token:
                # The token may have expired or been revoked mid-run: get a fresh one, once.
                self.tokens.invalidate()
                refreshed_token = True
                continue
            if status == 429:
                self._wait_for_throttle(response)
                continue
            if status in TRANSIENT_STATUSES:
                attempt += 1
                if self.retry.backoff(attempt, f"HTTP {status} from {self.origin}"):
                    continue
            raise self._error(response)

    def _wait_for_throttle(self, response: httpx.Response) -> None:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        if self.retry.throttled(wait, "Dynamics throttled the request"):
            return
        code, message = error_body(response)
        raise DataverseThrottled(
            f"Dynamics kept throttling the sync (HTTP 429) {self.retry.limit_reached()}; it "
            f"will be retried later. Dynamics said: {message or 'Too Many Requests'}",
            status=429,
            code=code,
            retryable=True,
        )

    def _json(self, response: httpx.Response, content: bytes) -> dict:
        content_type = response.headers.get("Content-Type", "")
        try:
            body = _parse_json(content)
        except ValueError as exc:
            if "json" in content_type.lower():
                raise DataverseError(
                    f"Dynamics answered {response.request.url.path} with JSON that couldn't "
                    f"be read (cut short or garbled), {self.max_retries + 1} times.",
                    status=response.status_code,
                    retryable=True,
                ) from exc
            raise DataverseError(
                f"Dynamics answered {response.request.url.path} with something that isn't "
                f"JSON (Content-Type: {content_type or 'none'}). Check that the organization "
                "URI is a Dynamics 365 environment's address.",
                status=response.status_code,
            ) from exc
        if not isinstance(body, dict):
            raise DataverseError("Dynamics answered with JSON that isn't an object.")
        return body

    def _network_advice(self, exc: httpx.TransportError) -> str:
        if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return f"The TLS certificate of {self.origin} isn't trusted."
        if isinstance(exc, httpx.TimeoutException):
            return f"Dynamics at {self.origin} didn't answer in time, {self.max_retries + 1} times."
        return (
            f"Dynamics at {self.origin} couldn't be reached ({type(exc).__name__}: {exc}). "
            "Check the organization URI and the network."
        )

    def _error(self, response: httpx.Response) -> DataverseError:
        status = response.status_code
        code, message = error_body(response)
        said = f" Dynamics said: {message}" if message else ""
        if status == 401:
            text = (
                "Dynamics rejected the access token (HTTP 401). Check that the organization "
                "URI belongs to the tenant, and that the environment has an application user "
                "for this client ID (Power Platform admin center → Environments → Settings → "
                "Users + permissions → Application users)."
            )
        elif status == 403:
            text = (
                "The application user isn't allowed to read this data (HTTP 403). Give it a "
                "security role with organization-level Read on Users (and on Contacts to sync "
                "contacts)."
            )
        elif status == 404:
            text = (
                f"Dynamics has no such address: {response.request.url.path} (HTTP 404). Check "
                "the organization URI."
            )
        elif status == 429:
            text = "Dynamics is throttling requests (HTTP 429)."
        elif status in TRANSIENT_STATUSES:
            text = f"Dynamics kept failing with HTTP {status} after {self.max_retries} retries."
        else:
            text = f"Dynamics refused the request with HTTP {status}."
        cls = DataverseThrottled if status == 429 else DataverseError
        if "perform a full sync" in message or code == "0x80044352":
            cls = DeltaExpired
        return cls(
            text + said,
            status=status,
            code=code,
            retryable=status == 429 or status in TRANSIENT_STATUSES,
        )


def error_body(response: httpx.Response) -> tuple[str, str]:
    """Return (code, message) from Dataverse's {"error": {...}} body, if there is one."""
    try:
        error = response.json().get("error") or {}
        return str(error.get("code") or ""), str(error.get("message") or "")[:500]
    except (ValueError, AttributeError):
        return "", ""
