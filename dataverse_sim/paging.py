"""Dataverse paging cookies (``$skiptoken``) and change-tracking delta tokens."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import quote, unquote
from xml.sax.saxutils import quoteattr

_HEX_ESCAPE = re.compile(r"%[0-9A-F]{2}")


class PagingError(ValueError):
    pass


def dotnet_urlencode(text: str) -> str:
    """Percent-encode like the inner paging cookie: everything but [A-Za-z0-9-_.] is
    escaped, spaces as %20, with lower-case hex digits."""
    return _HEX_ESCAPE.sub(lambda m: m.group().lower(), quote(text, safe="-_."))


def encode_outer(text: str) -> str:
    """Encode the skiptoken XML for the nextLink (keeps '=' and '/', upper-case hex)."""
    return quote(text, safe="=/")


def braced(guid: str) -> str:
    return "{" + guid.upper() + "}"


@dataclass
class Cookie:
    pagenumber: int
    page: int
    # (column, last value, first value); values are strings or None (null)
    columns: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    istracking: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def inner_xml(self) -> str:
        attrs = "".join(f" {k}={quoteattr(v)}" for k, v in self.extra.items())
        parts = [f'<cookie page="{self.page}"{attrs}>']
        for col, last, first in self.columns:
            piece = f"<{col}"
            piece += f" last={quoteattr(last)}" if last is not None else ' lastnull="1"'
            piece += f" first={quoteattr(first)}" if first is not None else ' firstnull="1"'
            parts.append(piece + " />")
        parts.append("</cookie>")
        return "".join(parts)

    def skiptoken(self) -> str:
        inner = dotnet_urlencode(self.inner_xml())
        tracking = "True" if self.istracking else "False"
        return (
            f'<cookie pagenumber="{self.pagenumber}" pagingcookie="{inner}" '
            f'istracking="{tracking}" />'
        )

    def last(self, col: str) -> tuple[bool, str | None]:
        for name, last, _first in self.columns:
            if name == col:
                return True, last
        return False, None


_OUTER = re.compile(
    r'\s*<cookie\s+pagenumber="(\d+)"\s+pagingcookie="([^"]*)"\s+istracking="(True|False|true|false)"'
    r"\s*/>\s*",
    re.DOTALL,
)


def parse_skiptoken(token: str) -> Cookie:
    m = _OUTER.fullmatch(token)
    if not m:
        raise PagingError("The $skiptoken value is not a valid paging cookie.")
    inner = unquote(m.group(2))
    try:
        root = ET.fromstring(inner)
    except ET.ParseError as exc:
        raise PagingError("The paging cookie in $skiptoken could not be parsed.") from exc
    if root.tag != "cookie" or not root.get("page", "").isdigit():
        raise PagingError("The paging cookie in $skiptoken could not be parsed.")
    cookie = Cookie(
        pagenumber=int(m.group(1)),
        page=int(root.get("page")),
        istracking=m.group(3).lower() == "true",
        extra={k: v for k, v in root.attrib.items() if k != "page"},
    )
    for child in root:
        last = None if child.get("lastnull") == "1" else child.get("last")
        first = None if child.get("firstnull") == "1" else child.get("first")
        if last is None and child.get("lastnull") != "1":
            raise PagingError("The paging cookie in $skiptoken could not be parsed.")
        cookie.columns.append((child.tag, last, first))
    return cookie


def make_deltatoken(version: int, when: float) -> str:
    stamp = dt.datetime.fromtimestamp(when, dt.UTC).strftime("%m/%d/%Y %H:%M:%S")
    return f"{version}!{stamp}"


def parse_deltatoken(token: str) -> tuple[int, float]:
    version, sep, stamp = token.partition("!")
    if not sep or not version.isdigit():
        raise PagingError(f"The delta token '{token}' is not valid.")
    try:
        when = dt.datetime.strptime(stamp, "%m/%d/%Y %H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise PagingError(f"The delta token '{token}' is not valid.") from exc
    return int(version), when.timestamp()
