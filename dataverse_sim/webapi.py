"""The Dataverse Web API (``/api/data/v9.x/`` and ``/api/data/v8.x/``).

Implements the read side a user-sync client needs: the service document, ``WhoAmI``,
``EntityDefinitions``, ``systemusers`` and ``businessunits`` collections with
``$select``/``$filter``/``$orderby``/``$top``/``$count``, server-driven paging with
Dataverse's paging cookies, ``$count`` segments, reads by key and change tracking
(``Prefer: odata.track-changes`` / ``$deltatoken``).  Writes (PATCH/POST/DELETE on
``systemusers``) are supported for the common cases.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

from . import schema
from .annotations import PICKLISTS, annotator, wanted
from .data import ORGANIZATION_ID, READ_ONLY_COLUMNS, ROOT_BUSINESS_UNIT_ID, Store, iso
from .http_util import Response, dumps, odata_error, odata_response, parse_prefer
from .odata_filter import FilterError, compile_filter
from .paging import (
    Cookie,
    PagingError,
    braced,
    dotnet_urlencode,
    encode_outer,
    make_deltatoken,
    parse_deltatoken,
    parse_skiptoken,
)
from .tables import Table, guid_from_sort_key, guid_sort_key

MAX_PAGE = 5000
COUNT_LIMIT = 5000
FAST_JSON_ROWS = 500  # pages this large are serialized with ASCII escapes (faster)
QUERY_ERROR = "0x80060888"
NOT_FOUND = "0x80040217"
SUPPORTED_VERSIONS = {"v8.0", "v8.1", "v8.2", "v9.0", "v9.1", "v9.2"}
_SYSTEM_OPTIONS = {
    "$select",
    "$filter",
    "$orderby",
    "$top",
    "$count",
    "$expand",
    "$apply",
    "$skiptoken",
    "$deltatoken",
}
_REFUSED = {"$skip", "$search", "$format"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> Response:
        return odata_error(self.status, self.code, self.message)


def query_error(message: str) -> ApiError:
    return ApiError(400, QUERY_ERROR, message)


@dataclass
class Query:
    pairs: list[tuple[str, str]]
    options: dict[str, str]
    aliases: dict[str, str]


def parse_query(raw: str) -> Query:
    """Fully URL-decode the query string ('+' is a space) and check the option names."""
    pairs = parse_qsl(raw, keep_blank_values=True)
    options: dict[str, str] = {}
    aliases: dict[str, str] = {}
    for key, value in pairs:
        if key.startswith("@"):
            aliases[key] = value
            continue
        if not key.startswith("$"):
            continue  # custom query options are ignored
        if key in _REFUSED:
            raise query_error(f"The query parameter {key} is not supported")
        if key not in _SYSTEM_OPTIONS:
            raise query_error(f"The query parameter {key} is not supported")
        if key in options:
            raise query_error(
                f"Query option '{key}' was specified more than once, but it must be specified "
                "at most once."
            )
        options[key] = value
    return Query(pairs, options, aliases)


def _entity_type(table_logical: str) -> str:
    return f"Microsoft.Dynamics.CRM.{table_logical}"


def parse_select(table_columns, value: str | None, logical: str) -> list[str] | None:
    if value is None:
        return None
    cols = [c.strip() for c in value.split(",")]
    if not value.strip() or any(not c for c in cols):
        raise query_error(f"Syntax error at position {len(value)} in '{value}'.")
    if cols == ["*"]:
        return None
    for c in cols:
        if c not in table_columns:
            raise query_error(
                f"Could not find a property named '{c}' on type '{_entity_type(logical)}'."
            )
    return list(dict.fromkeys(cols))


def parse_orderby(table: Table, value: str | None) -> list[tuple[str, bool]]:
    if value is None:
        return []
    result = []
    for item in value.split(","):
        parts = item.split()
        if not parts or len(parts) > 2:
            raise query_error(f"Syntax error at position {len(value)} in '{value}'.")
        col = parts[0]
        direction = parts[1] if len(parts) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise query_error(f"Syntax error at position {value.find(direction)} in '{value}'.")
        if col not in table.types:
            raise query_error(
                f"Could not find a property named '{col}' on type "
                f"'{_entity_type(table.logical_name)}'."
            )
        result.append((col, direction == "desc"))
    return result


def _norm_sort(typ: str, value: Any):
    if value is None:
        return (False, "")
    if typ == schema.STRING:
        return (True, value.lower())
    if typ == schema.GUID:
        return (True, guid_sort_key(value.lower()))
    if typ == schema.DATETIME:
        return (True, value.rstrip("Z"))
    return (True, value)


def _cookie_value(typ: str, value: Any) -> str | None:
    if value is None:
        return None
    if typ == schema.GUID:
        return braced(value)
    if typ == schema.BOOL:
        return "1" if value else "0"
    if typ == schema.FLOAT:
        return repr(float(value))
    return str(value)


def _from_cookie(typ: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        if typ == schema.GUID:
            return text.strip("{}").lower()
        if typ == schema.INT:
            return int(text)
        if typ == schema.FLOAT:
            return float(text)
        if typ == schema.BOOL:
            return text in ("1", "true", "True")
    except ValueError as exc:
        raise PagingError("The paging cookie in $skiptoken could not be parsed.") from exc
    return text


class WebApi:
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
                return self._metadata(api, annotations)
            if path in ("WhoAmI", "WhoAmI()"):
                if method != "GET":
                    raise ApiError(
                        405,
                        "0x80060888",
                        f"The requested resource does not support http method '{method}'.",
                    )
                return self._whoami(api, claims)
            if path.startswith("EntityDefinitions"):
                return self._entity_definitions(api, path, raw_query)
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

    def _metadata(self, api: str, annotations: bool = False) -> Response:
        edm = {
            schema.GUID: "Edm.Guid",
            schema.INT: "Edm.Int32",
            schema.FLOAT: "Edm.Double",
            schema.BOOL: "Edm.Boolean",
            schema.DATETIME: "Edm.DateTimeOffset",
            schema.STRING: "Edm.String",
        }
        parts = [
            '<?xml version="1.0" encoding="utf-8"?>',
            '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
            "<edmx:DataServices>",
            '<Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" '
            'xmlns="http://docs.oasis-open.org/odata/ns/edm">',
        ]
        for table in self.store.tables().values():
            parts.append(f'<EntityType Name="{table.logical_name}">')
            parts.append(f'<Key><PropertyRef Name="{table.primary_key}" /></Key>')
            for col in table.columns:
                if col.startswith("_"):
                    continue
                parts.append(f'<Property Name="{col}" Type="{edm[table.types[col]]}" />')
            parts.append("</EntityType>")
        parts.append('<EntityContainer Name="System">')
        for table in self.store.tables().values():
            entity_set = (
                f'<EntitySet Name="{table.entity_set}" '
                f'EntityType="Microsoft.Dynamics.CRM.{table.logical_name}"'
            )
            if annotations and self.change_tracking:
                parts.append(
                    entity_set + '><Annotation Term="Org.OData.Capabilities.V1.ChangeTracking">'
                    '<Record><PropertyValue Property="Supported" Bool="true" /></Record>'
                    "</Annotation></EntitySet>"
                )
            else:
                parts.append(entity_set + " />")
        parts.append("</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>")
        resp = Response(200, "".join(parts).encode(), content_type="application/xml")
        resp.header("OData-Version", "4.0")
        return resp

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

    # ------------------------------------------------------------------ metadata
    def _entity_metadata(self) -> list[dict[str, Any]]:
        rows = []
        for otc, table in (
            (10, self.store.businessunits),
            (2, self.store.contacts),
            (8, self.store.systemusers),
        ):
            schema_name = {
                "systemuser": "SystemUser",
                "businessunit": "BusinessUnit",
                "contact": "Contact",
            }[table.logical_name]
            rows.append(
                {
                    "MetadataId": {
                        "systemuser": "e2cfe0ad-1d63-4ec4-93d8-6d2bfbbd1fb9",
                        "businessunit": "a8a0d1c8-0ccf-4d8a-9e0d-0b2f6c1a0a10",
                        "contact": "608861bc-50a4-4c5f-a02c-21fe1943e2cf",
                    }[table.logical_name],
                    "LogicalName": table.logical_name,
                    "SchemaName": schema_name,
                    "EntitySetName": table.entity_set,
                    "LogicalCollectionName": table.entity_set,
                    "CollectionSchemaName": schema_name + "s",
                    "PrimaryIdAttribute": table.primary_key,
                    "PrimaryNameAttribute": table.primary_name,
                    "ObjectTypeCode": otc,
                    "OwnershipType": "UserOwned" if otc == 2 else "BusinessOwned",
                    "IsCustomEntity": False,
                    "ChangeTrackingEnabled": self.change_tracking,
                    "CanChangeTrackingBeEnabled": {
                        "Value": True,
                        "CanBeChanged": False,
                        "ManagedPropertyLogicalName": "canchangetrackingbeenabled",
                    },
                }
            )
        return rows

    _META_TYPES = {
        "MetadataId": schema.GUID,
        "LogicalName": schema.STRING,
        "SchemaName": schema.STRING,
        "EntitySetName": schema.STRING,
        "LogicalCollectionName": schema.STRING,
        "CollectionSchemaName": schema.STRING,
        "PrimaryIdAttribute": schema.STRING,
        "PrimaryNameAttribute": schema.STRING,
        "ObjectTypeCode": schema.INT,
        "OwnershipType": schema.STRING,
        "IsCustomEntity": schema.BOOL,
        "ChangeTrackingEnabled": schema.BOOL,
        "CanChangeTrackingBeEnabled": "complex",
    }

    def _entity_definitions(self, api: str, path: str, raw_query: str) -> Response:
        query = parse_query(raw_query)
        head, slash, attributes = path.partition("/")
        if slash:
            return self._attribute_definitions(api, head, attributes, query)
        select = parse_select(self._META_TYPES, query.options.get("$select"), "EntityMetadata")
        rows = self._entity_metadata()

        def project(row: dict[str, Any]) -> dict[str, Any]:
            if select is None:
                return dict(row)
            out = {c: row[c] for c in select}
            out["MetadataId"] = row["MetadataId"]
            return out

        context_sel = f"({','.join(select)})" if select else ""
        if path == "EntityDefinitions":
            flt = query.options.get("$filter")
            if flt:
                filter_cols = {k: v for k, v in self._META_TYPES.items() if v != "complex"}
                # the Value of a managed property, e.g. CanChangeTrackingBeEnabled/Value
                filter_cols["CanChangeTrackingBeEnabled/Value"] = schema.BOOL
                try:
                    pred = compile_filter(
                        flt,
                        filter_cols,
                        lambda c: (
                            (lambda r, c=c: r[c.split("/")[0]]["Value"])
                            if "/" in c
                            else (lambda r, c=c: r[c])
                        ),
                        "EntityMetadata",
                        query.aliases,
                    )
                except FilterError as exc:
                    raise query_error(str(exc)) from exc
                rows = [r for r in rows if pred(r)]
            return odata_response(
                200,
                {
                    "@odata.context": f"{api}/$metadata#EntityDefinitions{context_sel}",
                    "value": [project(r) for r in rows],
                },
            )
        key = path[len("EntityDefinitions") :]
        if not (key.startswith("(") and key.endswith(")")):
            raise ApiError(404, "0x80060888", f"Resource not found for the segment '{path}'.")
        key = key[1:-1]
        match = None
        for row in rows:
            if key in (
                f"LogicalName='{row['LogicalName']}'",
                row["MetadataId"],
            ):
                match = row
        if match is None:
            raise ApiError(
                404,
                "0x80040217",
                f"Could not find entity with key {key}.",
            )
        body = {"@odata.context": f"{api}/$metadata#EntityDefinitions{context_sel}/$entity"}
        body.update(project(match))
        return odata_response(200, body)

    _PICKLIST_CAST = "Microsoft.Dynamics.CRM.PicklistAttributeMetadata"

    def _attribute_definitions(self, api: str, head: str, rest: str, query: Query) -> Response:
        """``EntityDefinitions(LogicalName='x')/Attributes/Microsoft.Dynamics.CRM.
        PicklistAttributeMetadata`` with ``$select=LogicalName`` and ``$expand=OptionSet``:
        the choice columns of a table and their options (``statecode``/``statuscode`` are
        State/Status attributes, not picklists)."""
        key = head[len("EntityDefinitions") :]
        table = None
        for candidate in self.store.tables().values():
            if key == f"(LogicalName='{candidate.logical_name}')":
                table = candidate
        if table is None:
            raise ApiError(404, "0x80040217", f"Could not find entity with key {key[1:-1]}.")
        if rest == "Attributes":
            return self._attributes(api, table, query)
        if rest != f"Attributes/{self._PICKLIST_CAST}":
            raise ApiError(404, "0x80060888", f"Resource not found for the segment '{rest}'.")
        types = {
            "LogicalName": schema.STRING,
            "SchemaName": schema.STRING,
            "MetadataId": schema.GUID,
        }
        select = parse_select(types, query.options.get("$select"), "PicklistAttributeMetadata")
        expand = query.options.get("$expand")
        if expand not in (None, "OptionSet", "OptionSet($select=Options)"):
            raise query_error(f"The query parameter $expand value '{expand}' is not supported.")
        names = [
            c for c in table.columns if c in PICKLISTS and c not in ("statecode", "statuscode")
        ]

        def metadata_id(*parts: str) -> str:
            return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join((table.logical_name, *parts))))

        def label(text: str, *parts: str) -> dict[str, Any]:
            localized = {
                "Label": text,
                "LanguageCode": 1033,
                "IsManaged": True,
                "MetadataId": metadata_id(*parts, "label"),
                "HasChanged": None,
            }
            return {"LocalizedLabels": [localized], "UserLocalizedLabel": dict(localized)}

        values = []
        for name in names:
            item: dict[str, Any] = {
                "LogicalName": name,
                "SchemaName": name[:1].upper() + name[1:],
                "MetadataId": metadata_id(name),
            }
            if select is not None:
                item = {c: item[c] for c in (*select, "MetadataId")}
            if expand is not None:
                item["OptionSet"] = {
                    "MetadataId": metadata_id(name, "optionset"),
                    "Options": [
                        {
                            "Value": value,
                            "Color": None,
                            "IsManaged": True,
                            "ExternalValue": "",
                            "ParentValues": [],
                            "Tag": None,
                            "IsHidden": False,
                            "MetadataId": None,
                            "HasChanged": None,
                            "Label": label(text, name, str(value)),
                            "Description": {"LocalizedLabels": [], "UserLocalizedLabel": None},
                        }
                        for value, text in PICKLISTS[name].items()
                    ],
                }
            values.append(item)
        sel = ",".join(select) if select else ""
        if expand is not None:
            sel = f"{sel},OptionSet(Options)" if sel else "OptionSet(Options)"
        context = (
            f"{api}/$metadata#EntityDefinitions('{table.logical_name}')/Attributes/"
            f"{self._PICKLIST_CAST}" + (f"({sel})" if sel else "")
        )
        return odata_response(200, {"@odata.context": context, "value": values})

    # ------------------------------------------------------------------ entity sets
    _ATTRIBUTE_TYPES = {
        schema.GUID: "Uniqueidentifier",
        schema.INT: "Integer",
        schema.FLOAT: "Double",
        schema.BOOL: "Boolean",
        schema.DATETIME: "DateTime",
        schema.STRING: "String",
    }

    def _attributes(self, api: str, table: Table, query: Query) -> Response:
        """``EntityDefinitions(LogicalName='x')/Attributes``: the table's columns, with
        ``$select`` of LogicalName, SchemaName, AttributeType, AttributeOf, MetadataId."""
        types = {
            name: schema.STRING
            for name in ("LogicalName", "SchemaName", "AttributeType", "AttributeOf", "MetadataId")
        }
        select = parse_select(types, query.options.get("$select"), "AttributeMetadata")
        rows = []
        for column, kind in table.types.items():
            # A lookup is read as _x_value, but its attribute is x.
            logical = (
                column[1:-6] if column.startswith("_") and column.endswith("_value") else column
            )
            row = {
                "LogicalName": logical,
                "SchemaName": logical[:1].upper() + logical[1:],
                "AttributeType": "Lookup"
                if logical != column
                else self._ATTRIBUTE_TYPES.get(kind, "String"),
                "AttributeOf": None,
                "MetadataId": str(
                    uuid.uuid5(uuid.NAMESPACE_URL, f"{table.logical_name}/{logical}")
                ),
            }
            rows.append({c: row[c] for c in (*select, "MetadataId")} if select else row)
        sel = f"({','.join(select)})" if select else ""
        return odata_response(
            200,
            {
                "@odata.context": f"{api}/$metadata#EntityDefinitions('{table.logical_name}')/Attributes{sel}",
                "value": rows,
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
            if not _is_guid(guid):
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
                return self._patch(api, table, guid, headers, prefer, body, claims)
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
            return self._create(api, table, headers, prefer, body, claims)
        raise ApiError(
            405, "0x80060888", f"The requested resource does not support http method '{method}'."
        )

    def _filter(self, table: Table, query: Query):
        text = query.options.get("$filter")
        if text is None:
            return None
        try:
            return compile_filter(
                text, table.types, table.getter, table.logical_name, query.aliases
            )
        except FilterError as exc:
            raise query_error(str(exc)) from exc

    def _count(self, table: Table, raw_query: str) -> Response:
        query = parse_query(raw_query)
        pred = self._filter(table, query)
        with self.store.lock:
            if "$deltatoken" in query.options:
                n = min(self._delta_change_count(table, query.options["$deltatoken"]), COUNT_LIMIT)
            elif pred is None:
                n = min(len(table), COUNT_LIMIT)
            else:
                n = 0
                for row in table.iter_from(None):
                    if pred(row):
                        n += 1
                        if n >= COUNT_LIMIT:
                            break
        resp = Response(200, str(n).encode(), content_type="text/plain")
        resp.header("OData-Version", "4.0")
        return resp

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

    # ------------------------------------------------------------------ collections
    def _list(self, api: str, table: Table, raw_query: str, prefer) -> Response:
        query = parse_query(raw_query)
        opts = query.options
        tracking = "odata.track-changes" in prefer or "$deltatoken" in opts
        if tracking:
            for opt in ("$filter", "$orderby", "$expand", "$top"):
                if opt in opts:
                    raise ApiError(
                        400,
                        "0x80060888",
                        f'The "{opt}" query parameter isn\'t supported when Change Tracking is '
                        "enabled.",
                    )
            if not self.change_tracking:
                raise ApiError(
                    400,
                    "0x80060888",
                    f"Change tracking is not enabled for the entity '{table.logical_name}'.",
                )
        if "$expand" in opts or "$apply" in opts:
            opt = "$expand" if "$expand" in opts else "$apply"
            raise query_error(f"The query parameter {opt} is not implemented by dataverse_sim.")
        select = parse_select(table.types, opts.get("$select"), table.logical_name)
        orderby = parse_orderby(table, opts.get("$orderby"))
        pred = self._filter(table, query)

        applied: list[str] = []
        page_size = MAX_PAGE
        maxpagesize = prefer.get("odata.maxpagesize")
        has_maxpagesize = False
        if maxpagesize is not None:
            try:
                requested = int(maxpagesize)
            except ValueError:
                requested = None
            if requested is not None and requested > 0:
                page_size = min(requested, MAX_PAGE)
                has_maxpagesize = True
                applied.append(f"odata.maxpagesize={page_size}")
        top = None
        if "$top" in opts:
            raw = opts["$top"]
            if not raw.isdigit():
                raise query_error(
                    f"Invalid value '{raw}' for $top query option found. The $top query option "
                    "requires a non-negative integer value."
                )
            if not has_maxpagesize:
                top = min(int(raw), MAX_PAGE)
        count = False
        if "$count" in opts:
            if opts["$count"] not in ("true", "false"):
                raise query_error(f"'{opts['$count']}' is not a valid count option.")
            count = opts["$count"] == "true"
        annotations = prefer.get("odata.include-annotations")
        want_total = False
        if annotations is not None:
            ann = annotations.strip('"')
            want_total = (
                ann == "*"
                or "totalrecordcount" in ann
                or ann.startswith("Microsoft.Dynamics.CRM.*")
            )
            applied.append(f"odata.include-annotations={annotations}")

        cookie = None
        if "$skiptoken" in opts:
            try:
                cookie = parse_skiptoken(opts["$skiptoken"])
            except PagingError as exc:
                raise ApiError(400, "0x80040203", str(exc)) from exc

        if tracking:
            if "odata.track-changes" in prefer:
                applied.append("odata.track-changes")
            if "$deltatoken" in opts:
                return self._delta(api, table, query, select, page_size, cookie, applied)

        sel = f"({','.join(select)})" if select else ""
        context = f"{api}/$metadata#{table.entity_set}{sel}"
        render = self._with_annotations(table, table.renderer(select), annotations)
        limit = top if top is not None else page_size
        with self.store.lock:
            if orderby:
                rows, more = self._page_ordered(table, orderby, pred, cookie, limit)
            else:
                rows, more = self._page_by_key(table, pred, cookie, limit)
            total = None
            if count or want_total:
                total = self._capped_count(table, pred)
            tracking_version = None
            if tracking:
                if cookie is not None and cookie.extra.get("trackingversion", "").isdigit():
                    tracking_version = int(cookie.extra["trackingversion"])
                else:
                    tracking_version = self.store.version
            values = [render(r) for r in rows]
        body: dict[str, Any] = {"@odata.context": context}
        if count:
            body["@odata.count"] = total
        if want_total:
            body["@Microsoft.Dynamics.CRM.totalrecordcount"] = total if count else -1
            body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = bool(
                total is not None and total >= COUNT_LIMIT
            )
        body["value"] = values
        if more and top is None and rows:
            pagenumber = cookie.pagenumber + 1 if cookie else 2
            nxt = self._next_cookie(table, orderby, rows, pagenumber, tracking, tracking_version)
            body["@odata.nextLink"] = self._link(
                api, table, query, "$skiptoken", encode_outer(nxt.skiptoken())
            )
        elif tracking:
            token = make_deltatoken(tracking_version, self.clock())
            body["@odata.deltaLink"] = self._link(
                api, table, query, "$deltatoken", dotnet_urlencode(token), keep_only_select=True
            )
        resp = odata_response(200, body, fast=len(values) >= FAST_JSON_ROWS)
        for item in applied:
            resp.header("Preference-Applied", item)
        return resp

    def _with_annotations(self, table: Table, render, annotations: str | None):
        formatted, lookups = wanted(annotations)
        if not (formatted or lookups):
            return render
        tables = self.store.tables()

        def names(target: str, guid: str) -> str | None:
            other = tables.get(target + "s")
            if other is None:
                return None
            row = other.get(guid)
            return None if row is None else other.value(row, other.primary_name)

        annotate = annotator(table, names, formatted, lookups)
        return lambda row: annotate(render(row))

    def _capped_count(self, table: Table, pred) -> int:
        if pred is None:
            return min(len(table), COUNT_LIMIT)
        n = 0
        for row in table.iter_from(None):
            if pred(row):
                n += 1
                if n >= COUNT_LIMIT:
                    break
        return n

    def _page_by_key(self, table: Table, pred, cookie: Cookie | None, limit: int):
        after = None
        if cookie is not None:
            found, last = cookie.last(table.primary_key)
            if not found or last is None or not _is_guid(last.strip("{}")):
                raise ApiError(
                    400, "0x80040203", "The paging cookie in $skiptoken does not match this query."
                )
            after = guid_sort_key(last.strip("{}").lower())
        rows = []
        want = limit + 1
        for row in table.iter_from(after):
            if pred is None or pred(row):
                rows.append(row)
                if len(rows) >= want:
                    break
        more = len(rows) > limit
        return rows[:limit], more

    def _page_ordered(self, table: Table, orderby, pred, cookie: Cookie | None, limit: int):
        getters = [(table.getter(c), table.types[c], desc) for c, desc in orderby]
        rows = [r for r in table.iter_from(None) if pred is None or pred(r)]
        # stable multi-key sort: primary key ascending is the final tie-breaker
        for g, typ, desc in reversed(getters):
            rows.sort(key=lambda r, g=g, typ=typ: _norm_sort(typ, g(r)), reverse=desc)
        start = 0
        if cookie is not None:
            last_keys = []
            for col, _desc in orderby:
                found, text = cookie.last(col)
                if not found:
                    raise ApiError(
                        400,
                        "0x80040203",
                        "The paging cookie in $skiptoken does not match this query.",
                    )
                last_keys.append(_norm_sort(table.types[col], _from_cookie(table.types[col], text)))
            found, pk = cookie.last(table.primary_key)
            if not found or pk is None:
                raise ApiError(
                    400, "0x80040203", "The paging cookie in $skiptoken does not match this query."
                )
            last_pk = guid_sort_key(pk.strip("{}").lower())
            dirs = [desc for _c, desc in orderby]

            def after(row) -> bool:
                for (g, typ, _d), lk, desc in zip(getters, last_keys, dirs, strict=True):
                    v = _norm_sort(typ, g(row))
                    if v != lk:
                        return (v > lk) != desc
                return guid_sort_key(row[0]) > last_pk

            lo, hi = 0, len(rows)
            while lo < hi:
                mid = (lo + hi) // 2
                if after(rows[mid]):
                    hi = mid
                else:
                    lo = mid + 1
            start = lo
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        return page, more

    def _next_cookie(self, table, orderby, rows, pagenumber, tracking, tracking_version):
        first, last = rows[0], rows[-1]
        cols = []
        for col, _desc in orderby:
            g = table.getter(col)
            typ = table.types[col]
            cols.append((col, _cookie_value(typ, g(last)), _cookie_value(typ, g(first))))
        cols.append((table.primary_key, braced(last[0]), braced(first[0])))
        extra = {}
        if tracking and tracking_version is not None:
            extra["trackingversion"] = str(tracking_version)
        return Cookie(
            pagenumber=pagenumber,
            page=pagenumber - 1,
            columns=cols,
            istracking=bool(tracking),
            extra=extra,
        )

    def _link(self, api, table, query: Query, name: str, encoded: str, keep_only_select=False):
        parts = []
        for key, value in query.pairs:
            if key in ("$skiptoken", "$deltatoken"):
                continue
            if keep_only_select and key != "$select":
                continue
            parts.append(f"{quote(key, safe='$@')}={quote(value, safe="$()',/:@*;=!")}")
        parts.append(f"{name}={encoded}")
        return f"{api}/{table.entity_set}?" + "&".join(parts)

    # ------------------------------------------------------------------ change tracking
    def _since(self, table: Table, deltatoken: str) -> int:
        """The version a delta token was issued at (checked for expiry)."""
        if not self.change_tracking:
            raise ApiError(
                400,
                "0x80060888",
                f"Change tracking is not enabled for the entity '{table.logical_name}'.",
            )
        try:
            since, issued = parse_deltatoken(deltatoken)
        except PagingError as exc:
            raise ApiError(400, "0x80060888", str(exc)) from exc
        if self.clock() - issued > self.change_tracking_days * 86400:
            raise ApiError(
                400,
                "0x80044352",
                "Version stamp associated with the client has expired. Please perform a full sync.",
            )
        return since

    def _delta_change_count(self, table: Table, deltatoken: str) -> int:
        """``<set>/$count?$deltatoken=...``: changed rows plus deletions since the token."""
        since = self._since(table, deltatoken)
        upper = self.store.version
        vi = table.version_index
        changed = sum(1 for r in table.rows.values() if since < r[vi] <= upper)
        deleted = sum(
            1
            for v, entity_set, _guid in self.store.tombstones
            if entity_set == table.entity_set and since < v <= upper
        )
        return changed + deleted

    def _delta(self, api, table: Table, query: Query, select, page_size, cookie, applied):
        since = self._since(table, query.options["$deltatoken"])
        render = table.renderer(select)
        sel = f"({','.join(select)})" if select else ""
        deleted_context = f"{api}/$metadata#{table.entity_set}/$deletedEntity"
        with self.store.lock:
            if cookie is not None and cookie.extra.get("upper", "").isdigit():
                upper = int(cookie.extra["upper"])
                phase = int(cookie.extra.get("phase", "0"))
                after_version = int(cookie.extra.get("after", "0"))
            else:
                upper = self.store.version
                phase, after_version = 0, since
            vi = table.version_index
            items: list[tuple[int, int, Any]] = []
            if phase == 0:
                changed = [r for r in table.rows.values() if after_version < r[vi] <= upper]
                changed.sort(key=lambda r: r[vi])
                items.extend((0, r[vi], r) for r in changed)
                floor = since
            else:
                floor = after_version
            deletes = sorted(
                (v, guid)
                for v, entity_set, guid in self.store.tombstones
                if entity_set == table.entity_set and floor < v <= upper
            )
            items.extend((1, v, guid) for v, guid in deletes)
            page = items[:page_size]
            more = len(items) > page_size
            values = []
            for kind, _v, item in page:
                if kind == 0:
                    values.append(render(item))
                else:
                    values.append(
                        {"@odata.context": deleted_context, "id": item, "reason": "deleted"}
                    )
        body: dict[str, Any] = {"@odata.context": f"{api}/$metadata#{table.entity_set}{sel}/$delta"}
        body["value"] = values
        if more:
            last_kind, last_version, _ = page[-1]
            pagenumber = cookie.pagenumber + 1 if cookie else 2
            nxt = Cookie(
                pagenumber=pagenumber,
                page=pagenumber - 1,
                columns=[],
                istracking=True,
                extra={"upper": str(upper), "phase": str(last_kind), "after": str(last_version)},
            )
            body["@odata.nextLink"] = self._link(
                api, table, query, "$skiptoken", encode_outer(nxt.skiptoken())
            )
            # the delta token must survive in the next link
            body["@odata.nextLink"] += "&$deltatoken=" + dotnet_urlencode(
                query.options["$deltatoken"]
            )
        else:
            token = make_deltatoken(upper, self.clock())
            body["@odata.deltaLink"] = self._link(
                api, table, query, "$deltatoken", dotnet_urlencode(token), keep_only_select=True
            )
        resp = odata_response(200, body)
        # Delta pages carry no annotations here (Microsoft doesn't document that they do),
        # so the preference isn't reported as applied to them either.
        for item in applied:
            if not item.startswith("odata.include-annotations"):
                resp.header("Preference-Applied", item)
        return resp

    # ------------------------------------------------------------------ writes
    def _json_body(self, body: bytes) -> dict[str, Any]:
        import json

        try:
            data = json.loads(body.decode("utf-8") or "{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "0x80040216", f"Invalid JSON in request body: {exc}") from exc
        if not isinstance(data, dict):
            raise ApiError(400, "0x80040216", "The request body must be a JSON object.")
        return {k: v for k, v in data.items() if not k.startswith("@")}

    def _check_writable(self, table: Table, data: dict[str, Any]) -> None:
        for col in data:
            if col not in table.types:
                raise ApiError(
                    400,
                    "0x80060888",
                    f"The property '{col}' does not exist on type "
                    f"'{_entity_type(table.logical_name)}'. Make sure to only use property "
                    "names that are defined by the type.",
                )
            if col in READ_ONLY_COLUMNS and col != table.primary_key:
                raise ApiError(
                    400,
                    "0x80048d19",
                    f"Error identified in Payload provided by the user for Entity :"
                    f"'{table.entity_set}', For more information on this error please follow "
                    f"this help link https://go.microsoft.com/fwlink/?linkid=2195293  ---->  "
                    f"InnerException : Microsoft.OData.ODataException: The property '{col}' "
                    "is read-only.",
                )

    def _patch(self, api, table: Table, guid, headers, prefer, body, claims) -> Response:
        if table.entity_set != "systemusers":
            raise ApiError(405, "0x80060888", "Updates are only supported on systemusers.")
        data = self._json_body(body)
        self._check_writable(table, data)
        with self.store.lock:
            row = table.get(guid)
            if_match = headers.get("If-Match")
            if row is None:
                if if_match is not None:
                    raise ApiError(
                        404, NOT_FOUND, f"{table.logical_name} With Id = {guid} Does Not Exist"
                    )
                data["systemuserid"] = guid
                self.store.create_user(**data)
                return self._write_result(api, table, guid, prefer, created=True)
            if headers.get("If-None-Match") == "*":
                raise ApiError(
                    412, "0x80040237", "A record with matching key values already exists."
                )
            if if_match not in (None, "*") and if_match != table.etag(row):
                raise ApiError(
                    412,
                    "0x80060882",
                    "The version of the existing record doesn't match the RowVersion property "
                    "provided.",
                )
            if row[table.stored_index["applicationid"]] is not None:
                raise ApiError(
                    400,
                    "0x80041d48",
                    "The user representing an OAuth application cannot not be updated",
                )
            data.pop("systemuserid", None)
            self.store.update_user(guid, **data)
        return self._write_result(api, table, guid, prefer, created=False)

    def _create(self, api, table: Table, headers, prefer, body, claims) -> Response:
        if table.entity_set != "systemusers":
            raise ApiError(405, "0x80060888", "Creates are only supported on systemusers.")
        data = self._json_body(body)
        self._check_writable(table, data)
        try:
            guid = self.store.create_user(**data)
        except ValueError as exc:
            raise ApiError(
                412, "0x80040237", f"A record with matching key values already exists. ({exc})"
            ) from exc
        return self._write_result(api, table, guid, prefer, created=True)

    def _write_result(self, api, table, guid, prefer, *, created: bool) -> Response:
        entity_url = f"{api}/{table.entity_set}({guid})"
        if prefer.get("return") == "representation":
            with self.store.lock:
                row = table.get(guid)
                record = table.render(row)
            body = {"@odata.context": f"{api}/$metadata#{table.entity_set}/$entity"}
            body.update(record)
            resp = odata_response(201 if created else 200, body)
            resp.header("Preference-Applied", "return=representation")
        else:
            resp = Response(204, b"")
            resp.header("OData-Version", "4.0")
        resp.header("OData-EntityId", entity_url)
        return resp

    def _delete(self, table: Table, guid: str, headers) -> Response:
        if table.entity_set != "systemusers":
            raise ApiError(405, "0x80060888", "Deletes are only supported on systemusers.")
        with self.store.lock:
            row = table.get(guid)
            if row is None:
                raise ApiError(
                    404, NOT_FOUND, f"{table.logical_name} With Id = {guid} Does Not Exist"
                )
            if_match = headers.get("If-Match")
            if if_match not in (None, "*") and if_match != table.etag(row):
                raise ApiError(
                    412,
                    "0x80060882",
                    "The version of the existing record doesn't match the RowVersion property "
                    "provided.",
                )
            self.store.delete_user(guid)
        resp = Response(204, b"")
        resp.header("OData-Version", "4.0")
        return resp


def _is_guid(text: str) -> bool:
    import re

    return (
        re.fullmatch(
            r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", text
        )
        is not None
    )


__all__ = ["WebApi", "ApiError", "parse_query", "dumps", "iso", "guid_from_sort_key"]
