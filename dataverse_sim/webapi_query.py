"""What every Web API resource shares: its errors and the parsing of query options
(``$select``, ``$orderby`` and the option names themselves)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from .http_util import Response, odata_error
from .tables import Table

QUERY_ERROR = "0x80060888"
NOT_FOUND = "0x80040217"
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


def json_object(body: bytes) -> dict:
    """A request body that must be a JSON object, or the 400 Dataverse answers."""
    try:
        data = json.loads(body.decode("utf-8") or "{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "0x80040216", f"Invalid JSON in request body: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "0x80040216", "The request body must be a JSON object.")
    return data


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


def entity_type(table_logical: str) -> str:
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
                f"Could not find a property named '{c}' on type '{entity_type(logical)}'."
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
                f"'{entity_type(table.logical_name)}'."
            )
        result.append((col, direction == "desc"))
    return result


_GUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def is_guid(text: str) -> bool:
    """Whether ``text`` is a GUID in its usual 8-4-4-4-12 hexadecimal form."""
    return _GUID_RE.fullmatch(text) is not None
