"""The Web API's metadata resources: ``$metadata`` (CSDL) and ``EntityDefinitions`` with
their attributes and choice columns."""

from __future__ import annotations

import uuid
from typing import Any

from . import schema
from .annotations import PICKLISTS
from .http_util import Response, odata_response
from .odata_filter import FilterError, compile_filter
from .tables import Table
from .webapi_query import ApiError, Query, parse_query, parse_select, query_error


class MetadataResources:
    """``$metadata`` and ``EntityDefinitions`` (mixed into ``WebApi``)."""

    def _metadata(self, annotations: bool = False) -> Response:
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
                parts.append(
                    f'<Property Name="{col}" Type="{schema.EDM_TYPES[table.types[col]]}" />'
                )
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
                else schema.ATTRIBUTE_TYPES.get(kind, "String"),
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
