"""The Web API's writes: ``PATCH`` (update or upsert), ``POST`` and ``DELETE`` on
``systemusers``."""

from __future__ import annotations

from typing import Any

from .http_util import Response, odata_response
from .layout import READ_ONLY_COLUMNS
from .tables import Table
from .webapi_query import NOT_FOUND, ApiError, entity_type, json_object


class Writes:
    """Creates, updates and deletes (mixed into ``WebApi``)."""

    def _json_body(self, body: bytes) -> dict[str, Any]:
        return {k: v for k, v in json_object(body).items() if not k.startswith("@")}

    def _check_writable(self, table: Table, data: dict[str, Any]) -> None:
        for col in data:
            if col not in table.types:
                raise ApiError(
                    400,
                    "0x80060888",
                    f"The property '{col}' does not exist on type "
                    f"'{entity_type(table.logical_name)}'. Make sure to only use property "
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

    def _patch(self, api, table: Table, guid, headers, prefer, body) -> Response:
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

    def _create(self, api, table: Table, prefer, body) -> Response:
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
