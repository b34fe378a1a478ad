"""WebHooks, as Dataverse registers and sends them.

Web API entity sets (``/api/data/v9.x/``):

* ``serviceendpoints`` — POST (``name``, ``url``, ``contract`` 8, ``authtype`` 4 WebhookKey /
  5 HttpHeader / 6 HttpQueryString, ``authvalue``, ``messageformat``), GET (list or by key;
  ``authvalue`` is never returned, ``isauthvalueset`` says whether one is stored), DELETE
  (its steps go with it).
* ``sdkmessageprocessingsteps`` — POST with ``eventhandler_serviceendpoint@odata.bind``,
  ``sdkmessageid@odata.bind``, ``sdkmessagefilterid@odata.bind``, ``stage``, ``mode``,
  ``rank``, ``supporteddeployment``, ``asyncautodelete``, ``filteringattributes``; GET; DELETE.
* ``sdkmessages`` (Create, Update, Delete) and ``sdkmessagefilters`` (those × systemuser,
  contact), read-only; ``$filter`` understands ``name eq '...'`` (or-ed), and
  ``primaryobjecttypecode eq '...'`` / ``_sdkmessageid_value eq <id>`` (and-ed).

Creating either without the privilege (switched off through the control API) answers 403
``0x80040220`` "Principal user ... is missing prvCreateServiceEndpoint privilege ...".

When a user or contact changes through the control API, each enabled step registered on
that message and table sends a RemoteExecutionContext JSON to its endpoint from a background
thread, with the endpoint's authentication; a 502/503/504 gets exactly one more attempt after
``retry_delay_seconds`` (Dataverse's delay is not documented; 10 s here by default), any
other failure is final (the "system job" fails, statuscode 31). Deliveries are listed by
``GET /_control/webhooks/deliveries``.

Outgoing HTTPS trusts no CA at all unless one is configured (``ca_bundle``); plain
``http://`` is allowed to loopback addresses only (Learnexa's test server), and registering
requires port 443 for https / 80 for http except on loopback — a simulator's relaxation.
"""

from __future__ import annotations

import calendar
import http.client
import ipaddress
import json
import queue
import re
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit
from xml.etree import ElementTree

from .http_util import Response, odata_response
from .webapi_query import NOT_FOUND, ApiError, json_object

ENTITY_SETS = ("serviceendpoints", "sdkmessageprocessingsteps", "sdkmessages", "sdkmessagefilters")
MESSAGES = ("Create", "Update", "Delete")
ENTITIES = ("systemuser", "contact")
PRIVILEGES = {
    "serviceendpoints": ("prvCreateServiceEndpoint", 4618, "serviceendpoint"),
    "sdkmessageprocessingsteps": (
        "prvCreateSdkMessageProcessingStep",
        4608,
        "sdkmessageprocessingstep",
    ),
}
_NS = uuid.UUID("5e1a7c1e-0000-4000-8000-00000000a11d")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
_CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
_STOP = object()


def message_id(name: str) -> str:
    return str(uuid.uuid5(_NS, f"sdkmessage:{name}"))


def filter_id(message: str, entity: str) -> str:
    return str(uuid.uuid5(_NS, f"sdkmessagefilter:{message}:{entity}"))


def _wcf_date(text: str) -> str:
    seconds = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    return f"/Date({int(seconds * 1000)})/"


def _value(value: Any) -> Any:
    if isinstance(value, str) and _DATE.match(value):
        return _wcf_date(value)
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _settings_pairs(authvalue: str) -> list[tuple[str, str]]:
    """``<settings><setting name="..." value="..." /></settings>`` → pairs."""
    try:
        root = ElementTree.fromstring(authvalue)
    except ElementTree.ParseError:
        return []
    return [(s.get("name", ""), s.get("value", "")) for s in root.iter("setting") if s.get("name")]


class Webhooks:
    """Registrations and deliveries of one organization."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        base_url: Callable[[], str],
        organization_id: str,
        organization_name: str,
        business_unit_id: str,
        workers: int = 4,
    ) -> None:
        self.clock = clock
        self._base_url = base_url
        self.organization_id = organization_id
        self.organization_name = organization_name
        self.business_unit_id = business_unit_id
        self.lock = threading.Lock()
        self.endpoints: dict[str, dict[str, Any]] = {}
        self._authvalues: dict[str, str] = {}
        self.steps: dict[str, dict[str, Any]] = {}
        self.denied: set[str] = set()  # create privileges the application user lacks
        self.retry_delay_seconds = 10.0
        self.timeout_seconds = 60.0
        self.ca_bundle: str | None = None
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._queue: queue.Queue = queue.Queue()
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self._timers: set[threading.Timer] = set()
        self._pending = 0

    # ------------------------------------------------------------------ control
    def settings(self) -> dict[str, Any]:
        return {
            "retry_delay_seconds": self.retry_delay_seconds,
            "timeout_seconds": self.timeout_seconds,
            "ca_bundle": self.ca_bundle,
            "denied": sorted(self.denied),
        }

    def configure(self, **options: Any) -> dict[str, Any]:
        unknown = set(options) - {"retry_delay_seconds", "timeout_seconds", "ca_bundle"}
        if unknown:
            raise ValueError(f"unknown webhook settings {sorted(unknown)}")
        for name in ("retry_delay_seconds", "timeout_seconds"):
            if name in options:
                value = options[name]
                if not isinstance(value, (int, float)) or value < 0:
                    raise ValueError(f"{name} must be a number >= 0")
                setattr(self, name, float(value))
        if "ca_bundle" in options:
            self.ca_bundle = options["ca_bundle"] or None
        return self.settings()

    def set_privileges(self, register: bool | None = None, deny: list | None = None) -> dict:
        """``register=False``: the application user lacks both create privileges; ``deny``:
        exactly these privilege names (see PRIVILEGES)."""
        known = {p[0] for p in PRIVILEGES.values()}
        if deny is not None:
            if not isinstance(deny, list) or not set(deny) <= known:
                raise ValueError(f"deny must be a list of {sorted(known)}")
            self.denied = set(deny)
        if register is not None:
            self.denied = set() if register else set(known)
        return self.settings()

    def registrations(self) -> dict[str, Any]:
        with self.lock:
            return {
                "serviceendpoints": [dict(e) for e in self.endpoints.values()],
                "sdkmessageprocessingsteps": [dict(s) for s in self.steps.values()],
            }

    def delivery_log(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.deliveries)

    def clear_deliveries(self) -> None:
        with self.lock:
            self.deliveries.clear()

    def reset(self) -> None:
        with self.lock:
            self.endpoints.clear()
            self._authvalues.clear()
            self.steps.clear()
            self.denied.clear()
            self.deliveries.clear()
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
        self.retry_delay_seconds = 10.0
        self.timeout_seconds = 60.0
        self.ca_bundle = None

    def stop(self) -> None:
        with self.lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)
        for thread in threads:
            thread.join(timeout=2)

    # ------------------------------------------------------------------ Web API
    @staticmethod
    def handles(path: str) -> bool:
        name = path.partition("/")[0].partition("(")[0]
        return name in ENTITY_SETS

    def handle(self, method, api, path, raw_query, prefer, body, caller) -> Response:
        name, sep, rest = path.partition("/")
        key = None
        if "(" in name and name.endswith(")"):
            name, _, key = name[:-1].partition("(")
            key = key.strip().lower()
        if sep:
            raise ApiError(404, "0x80060888", f"Resource not found for the segment '{rest}'.")
        if name in ("sdkmessages", "sdkmessagefilters"):
            if method != "GET":
                raise ApiError(
                    405,
                    "0x80060888",
                    f"The requested resource does not support http method '{method}'.",
                )
            rows = self._messages() if name == "sdkmessages" else self._filters()
            return self._list(api, name, rows, raw_query, key)
        if method == "GET":
            with self.lock:
                rows = list((self.endpoints if name == "serviceendpoints" else self.steps).values())
            return self._list(api, name, [dict(r) for r in rows], raw_query, key)
        if method == "POST" and key is None:
            self._require_create(name, caller)
            data = json_object(body)
            created = (
                self._create_endpoint(data)
                if name == "serviceendpoints"
                else self._create_step(data)
            )
            return self._created(api, name, created, prefer)
        if method == "DELETE" and key is not None:
            self._delete(name, key)
            resp = Response(204, b"")
            resp.header("OData-Version", "4.0")
            return resp
        raise ApiError(
            405, "0x80060888", f"The requested resource does not support http method '{method}'."
        )

    def _require_create(self, name: str, caller: str) -> None:
        privilege, otc, logical = PRIVILEGES[name]
        if privilege in self.denied:
            raise ApiError(
                403,
                "0x80040220",
                f"Principal user (Id={caller}, type=8, roleCount=1, privilegeCount=0, "
                f"accessMode=4), is missing {privilege} privilege "
                f"(Id={uuid.uuid5(uuid.NAMESPACE_URL, privilege)}) on OTC={otc} for entity "
                f"'{logical}'. context.Caller={caller}",
            )

    def _messages(self) -> list[dict[str, Any]]:
        return [{"sdkmessageid": message_id(m), "name": m} for m in MESSAGES]

    def _filters(self) -> list[dict[str, Any]]:
        return [
            {
                "sdkmessagefilterid": filter_id(m, e),
                "primaryobjecttypecode": e,
                "_sdkmessageid_value": message_id(m),
            }
            for m in MESSAGES
            for e in ENTITIES
        ]

    def _list(self, api, name, rows, raw_query, key) -> Response:
        primary = {
            "serviceendpoints": "serviceendpointid",
            "sdkmessageprocessingsteps": "sdkmessageprocessingstepid",
            "sdkmessages": "sdkmessageid",
            "sdkmessagefilters": "sdkmessagefilterid",
        }[name]
        if key is not None:
            for row in rows:
                if row[primary] == key:
                    return odata_response(
                        200, {"@odata.context": f"{api}/$metadata#{name}/$entity", **row}
                    )
            raise ApiError(404, NOT_FOUND, f"{name[:-1]} With Id = {key} Does Not Exist")
        options = dict(parse_qsl(raw_query, keep_blank_values=True))
        condition = options.get("$filter", "")
        # The few filters registration needs: equality on a column, or-ed or and-ed.
        pairs = re.findall(r"(\w+) eq '?([\w-]+)'?", condition)
        if pairs:
            joined_by_or = " or " in condition

            def keep(row):
                hits = [str(row.get(c, "")).lower() == v.lower() for c, v in pairs]
                return any(hits) if joined_by_or else all(hits)

            rows = [row for row in rows if keep(row)]
        select = [c for c in options.get("$select", "").split(",") if c]
        if select:
            rows = [{c: row.get(c) for c in {primary, *select}} for row in rows]
        return odata_response(200, {"@odata.context": f"{api}/$metadata#{name}", "value": rows})

    def _create_endpoint(self, data: dict[str, Any]) -> dict[str, Any]:
        for column in ("name", "contract"):
            if data.get(column) in (None, ""):
                raise ApiError(400, "0x80040203", f"Required field '{column}' is missing.")
        if data["contract"] == 8:
            url = str(data.get("url") or "")
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ApiError(
                    400, "0x80040203", f"The url '{url}' is not a valid http(s) address."
                )
            port = parts.port or (443 if parts.scheme == "https" else 80)
            if port != {"https": 443, "http": 80}[parts.scheme] and not _is_loopback(
                parts.hostname
            ):
                raise ApiError(
                    400,
                    "0x80040203",
                    "A WebHook may only use port 443 (https) or 80 (http).",
                )
            if data.get("authtype") not in (4, 5, 6):
                raise ApiError(
                    400,
                    "0x80040203",
                    "A WebHook's authtype must be 4 (WebhookKey), 5 (HttpHeader) or 6 (HttpQueryString).",
                )
            if not data.get("authvalue"):
                raise ApiError(400, "0x80040203", "A WebHook needs an authvalue.")
        sid = str(data.get("serviceendpointid") or uuid.uuid4()).lower()
        row = {
            "serviceendpointid": sid,
            "name": str(data["name"])[:256],
            "url": data.get("url"),
            "contract": data["contract"],
            "authtype": data.get("authtype"),
            "messageformat": data.get("messageformat", 2),
            "messagecharset": data.get("messagecharset", 0),
            "userclaim": data.get("userclaim", 1),
            "connectionmode": data.get("connectionmode", 1),
            "path": data.get("path", " "),
            "isauthvalueset": bool(data.get("authvalue")),
        }
        with self.lock:
            self.endpoints[sid] = row
            self._authvalues[sid] = str(data.get("authvalue") or "")
        return row

    @staticmethod
    def _bound(data: dict[str, Any], nav: str, entity_set: str) -> str:
        value = str(data.get(f"{nav}@odata.bind") or "")
        found = re.fullmatch(rf"(?:.*/)?{entity_set}\(([0-9a-fA-F-]{{36}})\)", value)
        if not found:
            raise ApiError(
                400, "0x80040203", f"'{nav}@odata.bind' must be /{entity_set}(<id>), not {value!r}."
            )
        return found.group(1).lower()

    def _create_step(self, data: dict[str, Any]) -> dict[str, Any]:
        for column in data:
            if "@" in column and column.split("@")[0] not in (
                "eventhandler_serviceendpoint",
                "sdkmessageid",
                "sdkmessagefilterid",
            ):
                # Dataverse's navigation properties are lower case (PascalCase answers 400).
                raise ApiError(
                    400, "0x80060888", f"An undeclared property '{column.split('@')[0]}' was found."
                )
        endpoint = self._bound(data, "eventhandler_serviceendpoint", "serviceendpoints")
        message = self._bound(data, "sdkmessageid", "sdkmessages")
        filters = {f["sdkmessagefilterid"]: f for f in self._filters()}
        messages = {m["sdkmessageid"]: m["name"] for m in self._messages()}
        if message not in messages:
            raise ApiError(404, NOT_FOUND, f"sdkmessage With Id = {message} Does Not Exist")
        filter_key = data.get("sdkmessagefilterid@odata.bind")
        entity = None
        if filter_key:
            fid = self._bound(data, "sdkmessagefilterid", "sdkmessagefilters")
            if fid not in filters:
                raise ApiError(404, NOT_FOUND, f"sdkmessagefilter With Id = {fid} Does Not Exist")
            if filters[fid]["_sdkmessageid_value"] != message:
                raise ApiError(400, "0x80040203", "The message filter belongs to another message.")
            entity = filters[fid]["primaryobjecttypecode"]
        if data.get("stage") not in (10, 20, 40):
            raise ApiError(400, "0x80040203", "stage must be 10, 20 or 40.")
        if data.get("mode") not in (0, 1):
            raise ApiError(400, "0x80040203", "mode must be 0 (synchronous) or 1 (asynchronous).")
        with self.lock:
            if endpoint not in self.endpoints:
                raise ApiError(
                    404, NOT_FOUND, f"serviceendpoint With Id = {endpoint} Does Not Exist"
                )
            sid = str(uuid.uuid4())
            row = {
                "sdkmessageprocessingstepid": sid,
                "name": str(data.get("name") or ""),
                "stage": data["stage"],
                "mode": data["mode"],
                "rank": data.get("rank", 1),
                "supporteddeployment": data.get("supporteddeployment", 0),
                "asyncautodelete": bool(data.get("asyncautodelete", False)),
                "filteringattributes": data.get("filteringattributes") or None,
                "statecode": 0,
                "statuscode": 1,
                "_eventhandler_value": endpoint,
                "_sdkmessageid_value": message,
                "_sdkmessagefilterid_value": filter_key
                and self._bound(data, "sdkmessagefilterid", "sdkmessagefilters"),
                # Not Dataverse columns: what the step fires on, for the control API.
                "message": messages[message],
                "primaryobjecttypecode": entity,
            }
            self.steps[sid] = row
        return row

    def _created(self, api, name, row, prefer) -> Response:
        key = row[
            "serviceendpointid" if name == "serviceendpoints" else "sdkmessageprocessingstepid"
        ]
        entity_url = f"{api}/{name}({key})"
        if prefer.get("return") == "representation":
            resp = odata_response(201, {"@odata.context": f"{api}/$metadata#{name}/$entity", **row})
            resp.header("Preference-Applied", "return=representation")
        else:
            resp = Response(204, b"")
            resp.header("OData-Version", "4.0")
        resp.header("OData-EntityId", entity_url)
        return resp

    def _delete(self, name: str, key: str) -> None:
        with self.lock:
            rows = self.endpoints if name == "serviceendpoints" else self.steps
            if rows.pop(key, None) is None:
                raise ApiError(404, NOT_FOUND, f"{name[:-1]} With Id = {key} Does Not Exist")
            if name == "serviceendpoints":
                self._authvalues.pop(key, None)
                for sid in [
                    s for s, step in self.steps.items() if step["_eventhandler_value"] == key
                ]:
                    del self.steps[sid]

    # ------------------------------------------------------------------ events
    def notify(
        self, message: str, entity: str, record_id: str, attributes: dict[str, Any] | None = None
    ) -> int:
        """A row changed: queue a call for each matching step; returns how many."""
        with self.lock:
            matched = []
            for step in self.steps.values():
                if step["statecode"] != 0 or step["message"] != message:
                    continue
                if step["primaryobjecttypecode"] not in (None, entity):
                    continue
                wanted = step.get("filteringattributes")
                if message == "Update" and wanted and attributes is not None:
                    columns = {c.strip().lower() for c in wanted.split(",")}
                    if not columns & {a.lower() for a in attributes}:
                        continue
                endpoint = self.endpoints.get(step["_eventhandler_value"])
                if endpoint is not None:
                    matched.append(
                        (step, endpoint, self._authvalues.get(endpoint["serviceendpointid"], ""))
                    )
            if not matched:
                return 0
            self._start_workers()
        now = self.clock()
        for step, endpoint, authvalue in matched:
            body = self._context(step, message, entity, record_id, attributes or {}, now)
            self._queue.put(
                {
                    "step": step["sdkmessageprocessingstepid"],
                    "endpoint": dict(endpoint),
                    "authvalue": authvalue,
                    "message": message,
                    "entity": entity,
                    "record_id": record_id,
                    "body": body,
                    "attempt": 1,
                    "queued_at": now,
                }
            )
        return len(matched)

    def _context(self, step, message, entity, record_id, attributes, now) -> dict[str, Any]:
        caller = str(uuid.uuid5(_NS, "application-user"))
        if message == "Delete":
            target: dict[str, Any] = {
                "__type": f"EntityReference:{_CONTRACTS}",
                "Id": record_id,
                "KeyAttributes": [],
                "LogicalName": entity,
                "Name": None,
                "RowVersion": None,
            }
        else:
            target = {
                "__type": f"Entity:{_CONTRACTS}",
                "Attributes": [
                    {"key": k, "value": _value(v)}
                    for k, v in attributes.items()
                    if not k.startswith("_") and "@" not in k
                ],
                "EntityState": None,
                "FormattedValues": [],
                "Id": record_id,
                "KeyAttributes": [],
                "LogicalName": entity,
                "RelatedEntities": [],
                "RowVersion": None,
            }
        milliseconds = int(now * 1000)
        return {
            "BusinessUnitId": self.business_unit_id,
            "CorrelationId": str(uuid.uuid4()),
            "Depth": 1,
            "InitiatingUserAzureActiveDirectoryObjectId": "00000000-0000-0000-0000-000000000000",
            "InitiatingUserId": caller,
            "InputParameters": [{"key": "Target", "value": target}],
            "IsExecutingOffline": False,
            "IsInTransaction": False,
            "IsOfflinePlayback": False,
            "IsolationMode": 1,
            "MessageName": message,
            "Mode": step["mode"],
            "OperationCreatedOn": f"/Date({milliseconds}+0000)/",
            "OperationId": str(uuid.uuid4()),
            "OrganizationId": self.organization_id,
            "OrganizationName": self.organization_name,
            "OutputParameters": [{"key": "id", "value": record_id}] if message == "Create" else [],
            "OwningExtension": {
                "Id": step["sdkmessageprocessingstepid"],
                "KeyAttributes": [],
                "LogicalName": "sdkmessageprocessingstep",
                "Name": step["name"],
                "RowVersion": None,
            },
            "ParentContext": None,
            "PostEntityImages": [],
            "PreEntityImages": [],
            "PrimaryEntityId": record_id,
            "PrimaryEntityName": entity,
            "RequestId": str(uuid.uuid4()),
            "SecondaryEntityName": "none",
            "SharedVariables": [],
            "Stage": step["stage"],
            "UserAzureActiveDirectoryObjectId": "00000000-0000-0000-0000-000000000000",
            "UserId": caller,
        }

    def _start_workers(self) -> None:
        # Called with the lock held.
        while len(self._threads) < self._workers:
            thread = threading.Thread(target=self._work, name="dataverse_sim-webhooks", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            try:
                self._deliver(job)
            except Exception as exc:  # never let a worker die
                self._log(job, None, f"{type(exc).__name__}: {exc}", final=True)

    def _deliver(self, job: dict[str, Any]) -> None:
        endpoint = job["endpoint"]
        url = str(endpoint["url"])
        authtype, authvalue = endpoint.get("authtype"), job["authvalue"]
        headers = {
            "Content-Type": "application/json",
            "x-ms-dynamics-organization": urlsplit(self._base_url()).netloc,
            "x-ms-dynamics-entity-name": job["entity"],
            "x-ms-dynamics-request-name": job["message"],
            "x-ms-correlation-request-id": job["body"]["CorrelationId"],
            "x-request-id": str(uuid.uuid4()),
        }
        query: list[tuple[str, str]] = []
        if authtype == 4:
            query.append(("code", authvalue))
        elif authtype == 5:
            headers.update(dict(_settings_pairs(authvalue)))
        elif authtype == 6:
            query.extend(_settings_pairs(authvalue))
        parts = urlsplit(url)
        target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        extra = urlencode(query)
        if parts.query or extra:
            target += "?" + "&".join(q for q in (parts.query, extra) if q)
        status, error = None, ""
        try:
            connection = self._connection(parts)
            try:
                connection.request(
                    "POST", target, body=json.dumps(job["body"]).encode(), headers=headers
                )
                status = connection.getresponse().status
            finally:
                connection.close()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if status is not None and 200 <= status < 300:
            self._log(job, status, "", final=True, succeeded=True)
            return
        retry = status in (502, 503, 504) and job["attempt"] == 1
        self._log(job, status, error or f"HTTP {status}", final=not retry)
        if retry:
            self._retry({**job, "attempt": 2})

    def _connection(self, parts) -> http.client.HTTPConnection:
        host = parts.hostname or ""
        if parts.scheme == "http":
            if not _is_loopback(host):
                raise ValueError("plain http is only sent to loopback addresses by the simulator")
            return http.client.HTTPConnection(host, parts.port or 80, timeout=self.timeout_seconds)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts nothing by default
        if self.ca_bundle:
            context.load_verify_locations(cafile=self.ca_bundle)
        return http.client.HTTPSConnection(
            host, parts.port or 443, timeout=self.timeout_seconds, context=context
        )

    def _retry(self, job: dict[str, Any]) -> None:
        def put() -> None:
            with self.lock:
                self._timers.discard(timer)
            self._queue.put(job)

        timer = threading.Timer(self.retry_delay_seconds, put)
        timer.daemon = True
        with self.lock:
            self._timers.add(timer)
        timer.start()

    def _log(self, job, status, error, *, final: bool, succeeded: bool = False) -> None:
        endpoint = job["endpoint"]
        entry = {
            "step": job["step"],
            "serviceendpointid": endpoint["serviceendpointid"],
            "url": str(endpoint["url"]).split("?")[0],
            "message": job["message"],
            "entity": job["entity"],
            "record_id": job["record_id"],
            "attempt": job["attempt"],
            "status": status,
            "error": error,
            # The system job's statuscode: 30 Succeeded, 31 Failed, 0 waiting to retry.
            "statuscode": 30 if succeeded else (31 if final else 0),
            "queued_at": job["queued_at"],
            "at": self.clock(),
        }
        with self.lock:
            self.deliveries.append(entry)
