"""The Dataverse Web API (``/api/data/v9.x/`` and ``/api/data/v8.x/``).

Implements the read side a user-sync client needs: the service document, ``WhoAmI``,
``EntityDefinitions``, ``systemusers`` and ``businessunits`` collections with
``$select``/``$filter``/``$orderby``/``$top``/``$count``, server-driven paging with
Dataverse's paging cookies, ``$count`` segments, reads by key and change tracking
(``Prefer: odata.track-changes`` / ``$deltatoken``).  Writes (PATCH/POST/DELETE on
``systemusers``) are supported for the common cases.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from .data import Store
from .http_util import Response, dumps, odata_response, parse_prefer
from .layout import ORGANIZATION_ID, ROOT_BUSINESS_UNIT_ID
from .tables import Table, guid_from_sort_key
from .values import iso
from .webapi_collections import CollectionQueries
from .webapi_metadata import MetadataResources
from .webapi_query import (
    NOT_FOUND,
    ApiError,
    is_guid,
    parse_query,
    parse_select,
    query_error,
)
from .webapi_writes import Writes

SUPPORTED_VERSIONS = {"v8.0", "v8.1", "v8.2", "v9.0", "v9.1", "v9.2"}


class WebApi(MetadataResources, CollectionQueries, Writes):
    """The Web API of one organization: routes a request to its resource."""

    def __init__(
        self,
        *,
        store: Store,
        base_url: Callable[[], str],
        clock: Callable[[], float],
        change_tracking: bool = True,
        change_tracking_days: int = 30,
    ) -> None:
        self.store = store
        self._base_url = base_url
        self.clock = clock
        self.change_tracking = change_tracking
        # Tables whose Read privilege the application user's security role lacks.
        self.read_denied: set[str] = set()
        self.change_tracking_days = change_tracking_days
        self._oid_cache: dict[str, str] = {}
        # serviceendpoints, sdkmessageprocessingsteps, ... (webhooks.Webhooks), if served.
        self.webhooks = None

    @property
    def base_url(self) -> str:
        return self._base_url()

    # ------------------------------------------------------------------ dispatch
    def handle(
        self,
        method: str,
        version: str,
        path: str,
        raw_query: str,
        headers,
        claims: dict[str, Any],
        body: bytes,
    ) -> Response:
        try:
            if version not in SUPPORTED_VERSIONS:
                raise ApiError(
                    404, "0x80060888", f"Resource not found for the segment '{version}'."
                )
            api = f"{self.base_url}/api/data/{version}"
            self._check_caller(claims)
            prefer = parse_prefer(headers.get_all("Prefer") or [])
            if path in ("", "/"):
                return self._service_document(api)
            if method == "GET" and path in ("$metadata",):
                annotations = dict(parse_qsl(raw_query)).get("annotations") == "true"
                return self._metadata(annotations)
            if path in ("WhoAmI", "WhoAmI()"):
                if method != "GET":
                    raise ApiError(
                        405,
                        "0x80060888",
                        f"The requested resource does not support http method '{method}'.",
                    )
                return self._whoami(api, claims)
            if path.startswith("RetrieveTotalRecordCount"):
                return self._total_record_count(method, api, path, raw_query)
            if path.startswith("EntityDefinitions"):
                return self._entity_definitions(api, path, raw_query)
            if self.webhooks is not None and self.webhooks.handles(path):
                caller = self.caller_id(claims) or ""
                return self.webhooks.handle(method, api, path, raw_query, prefer, body, caller)
            return self._entity_request(method, api, path, raw_query, headers, prefer, claims, body)
        except ApiError as exc:
            return exc.response()

    def _table(self, name: str) -> Table:
        table = self.store.tables().get(name)
        if table is None:
            raise ApiError(404, "0x80060888", f"Resource not found for the segment '{name}'.")
        return table

    # ------------------------------------------------------------------ simple resources
    def _service_document(self, api: str) -> Response:
        value = [
            {"name": name, "kind": "EntitySet", "url": name}
            for name in ("businessunits", "contacts", "systemusers")
        ]
        value.append({"name": "EntityDefinitions", "kind": "EntitySet", "url": "EntityDefinitions"})
        return odata_response(200, {"@odata.context": f"{api}/$metadata", "value": value})

    def caller_id(self, claims: dict[str, Any]) -> str | None:
        """The systemuserid of the caller (the application user for app-only tokens)."""
        tenant = self.store.tenant
        oid = claims.get("oid")
        if claims.get("idtyp") == "app" or oid == tenant.app_object_id:
            return tenant.app_user_id
        cached = self._oid_cache.get(oid)
        if cached and self.store.get_user(cached) is not None:
            return cached
        table = self.store.systemusers
        getter = table.getter("azureactivedirectoryobjectid")
        with self.store.lock:
            for row in table.iter_from(None):
                if getter(row) == oid:
                    self._oid_cache[oid] = row[0]
                    return row[0]
        return None

    def _check_caller(self, claims: dict[str, Any]) -> None:
        user_id = self.caller_id(claims)
        user = None if user_id is None else self.store.get_user(user_id)
        if user is None:
            raise ApiError(403, "0x80072560", "The user is not a member of the organization.")
        if user.get("isdisabled"):
            raise ApiError(
                403,
                "0x80040225",
                f"The user with SystemUserId={user_id} in OrganizationContext="
                f"{ORGANIZATION_ID} is disabled. Disabled users cannot access the system. "
                "Consider enabling this user. Also, users are disabled if they don't have a "
                "license assigned to them.",
            )

    def _whoami(self, api: str, claims: dict[str, Any]) -> Response:
        user_id = self.caller_id(claims) or self.store.tenant.app_user_id
        user = self.store.get_user(user_id)
        bu = (user or {}).get("_businessunitid_value") or ROOT_BUSINESS_UNIT_ID
        return odata_response(
            200,
            {
                "@odata.context": f"{api}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": bu,
                "UserId": user_id,
                "OrganizationId": ORGANIZATION_ID,
            },
        )

    def _total_record_count(self, method: str, api: str, path: str, raw_query: str) -> Response:
        """RetrieveTotalRecordCount(EntityNames=['systemuser']), or with a parameter alias
        (EntityNames=@p1, ?@p1=["systemuser"]): each table's row count. Dataverse's is a
        snapshot up to a day old; here it is the count as it is now."""
        if method != "GET":
            raise ApiError(
                405,
                "0x80060888",
                f"The requested resource does not support http method '{method}'.",
            )
        argument = path.removeprefix("RetrieveTotalRecordCount").strip()
        if not (argument.startswith("(") and argument.endswith(")")):
            raise query_error("RetrieveTotalRecordCount takes the parameter EntityNames.")
        name, _, value = argument[1:-1].partition("=")
        if name.strip() != "EntityNames":
            raise query_error(f"The parameter '{name.strip()}' is not in scope.")
        value = value.strip()
        if value.startswith("@"):
            value = dict(parse_qsl(raw_query)).get(value, "")
        try:
            names = json.loads(value.replace("'", '"'))
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise query_error("EntityNames must be a collection of logical names.")
        by_logical = {t.logical_name: t for t in self.store.tables().values()}
        counts = []
        for logical in names:
            table = by_logical.get(logical)
            if table is None:
                raise ApiError(
                    404,
                    "0x80041102",
                    f"The entity with a name = '{logical}' with namemapping = 'Logical' was "
                    "not found in the MetadataCache.",
                )
            with self.store.lock:
                counts.append(len(table))
        return odata_response(
            200,
            {
                "@odata.context": f"{api}/$metadata"
                "#Microsoft.Dynamics.CRM.RetrieveTotalRecordCountResponse",
                "EntityRecordCountCollection": {
                    "Count": len(names),
                    "IsReadOnly": False,
                    "Keys": names,
                    "Values": counts,
                },
            },
        )

    def _require_read(self, table: Table, claims) -> None:
        """403 as Dataverse answers when the caller's security roles lack Read on a table."""
        if table.logical_name in self.read_denied:
            privilege = {
                "systemuser": "prvReadUser",
                "contact": "prvReadContact",
                "businessunit": "prvReadBusinessUnit",
            }[table.logical_name]
            otc = {"systemuser": 8, "contact": 2, "businessunit": 10}[table.logical_name]
            caller = (claims or {}).get("oid", "00000000-0000-0000-0000-000000000000")
            raise ApiError(
                403,
                "0x80040220",
                f"Principal user (Id={caller}, type=8, roleCount=1, privilegeCount=0, "
                f"accessMode=4), is missing {privilege} privilege "
                f"(Id={uuid.uuid5(uuid.NAMESPACE_URL, privilege)}) on OTC={otc} for entity "
                f"'{table.logical_name}'. context.Caller={caller}",
            )

    def _entity_request(self, method, api, path, raw_query, headers, prefer, claims, body):
        name, sep, rest = path.partition("/")
        key = None
        if "(" in name and name.endswith(")"):
            name, _, key = name[:-1].partition("(")
        table = self._table(name)
        if method == "GET":
            self._require_read(table, claims)
        if key is not None:
            guid = key.strip()
            if guid.startswith(f"{table.primary_key}="):
                guid = guid.split("=", 1)[1]
            if not is_guid(guid):
                raise query_error(
                    f"Unrecognized 'Edm.Guid' literal '{key}' at '{len(name) + 1}' in "
                    f"'{name}({key})'."
                )
            guid = guid.lower()
            if sep:
                raise ApiError(404, "0x80060888", f"Resource not found for the segment '{rest}'.")
            if method == "GET":
                return self._get_by_key(api, table, guid, raw_query, headers)
            if method == "PATCH":
                return self._patch(api, table, guid, headers, prefer, body)
            if method == "DELETE":
                return self._delete(table, guid, headers)
            raise ApiError(
                405,
                "0x80060888",
                f"The requested resource does not support http method '{method}'.",
            )
        if sep:
            if rest == "$count" and method == "GET":
                return self._count(table, raw_query)
            raise ApiError(404, "0x80060888", f"Resource not found for the segment '{rest}'.")
        if method == "GET":
            return self._list(api, table, raw_query, prefer)
        if method == "POST":
            return self._create(api, table, prefer, body)
        raise ApiError(
            405, "0x80060888", f"The requested resource does not support http method '{method}'."
        )

    def _get_by_key(self, api, table: Table, guid: str, raw_query: str, headers) -> Response:
        query = parse_query(raw_query)
        for opt in query.options:
            if opt not in ("$select", "$expand"):
                raise query_error(
                    f"The query parameter {opt} is not supported for a single entity request."
                )
        if "$expand" in query.options:
            raise query_error("The query parameter $expand is not implemented by dataverse_sim.")
        select = parse_select(table.types, query.options.get("$select"), table.logical_name)
        with self.store.lock:
            row = table.get(guid)
            if row is None:
                raise ApiError(
                    404, NOT_FOUND, f"{table.logical_name} With Id = {guid} Does Not Exist"
                )
            etag = table.etag(row)
            prefer = parse_prefer(headers.get_all("Prefer") or [])
            annotations = prefer.get("odata.include-annotations")
            # annotations may come from related rows, so such a request is never answered 304
            if headers.get("If-None-Match") == etag and annotations is None:
                resp = Response(304, b"", content_type="application/json; odata.metadata=minimal")
                resp.header("ETag", etag)
                resp.header("OData-Version", "4.0")
                return resp
            record = self._with_annotations(table, table.renderer(select), annotations)(row)
        sel = f"({','.join(select)})" if select else ""
        body = {"@odata.context": f"{api}/$metadata#{table.entity_set}{sel}/$entity"}
        body.update(record)
        resp = odata_response(200, body)
        resp.header("ETag", etag)
        return resp


__all__ = ["WebApi", "ApiError", "parse_query", "dumps", "iso", "guid_from_sort_key"]
