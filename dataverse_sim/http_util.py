"""Small helpers shared by the HTTP handlers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JSON_ODATA = "application/json; odata.metadata=minimal"


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = None

    def header(self, name: str, value: str) -> Response:
        self.headers.append((name, value))
        return self


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(status: int, obj: Any, content_type: str = "application/json; charset=utf-8"):
    return Response(status, dumps(obj), content_type=content_type)


def dumps_fast(obj: Any) -> bytes:
    """Like ``dumps`` but escapes non-ASCII characters (equivalent JSON, about twice as fast
    to produce); used for large collection pages."""
    return json.dumps(obj, separators=(",", ":")).encode("ascii")


def odata_response(status: int, obj: Any, *, fast: bool = False) -> Response:
    resp = Response(status, dumps_fast(obj) if fast else dumps(obj), content_type=JSON_ODATA)
    resp.header("OData-Version", "4.0")
    return resp


def odata_error(status: int, code: str, message: str) -> Response:
    return odata_response(status, {"error": {"code": code, "message": message}})


def split_header_list(value: str) -> list[str]:
    """Split a comma-separated header value, keeping commas inside double quotes."""
    items: list[str] = []
    buf: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
            buf.append(ch)
        elif ch == "," and not quoted:
            item = "".join(buf).strip()
            if item:
                items.append(item)
            buf = []
        else:
            buf.append(ch)
    item = "".join(buf).strip()
    if item:
        items.append(item)
    return items


def parse_prefer(values: list[str]) -> dict[str, str | None]:
    """Parse every Prefer header (repeated or comma-joined) into {name: value}."""
    prefs: dict[str, str | None] = {}
    for value in values:
        for item in split_header_list(value):
            name, sep, val = item.partition("=")
            name = name.strip().lower()
            prefs[name] = val.strip() if sep else None
    return prefs
