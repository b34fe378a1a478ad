"""The lexer of the ``$filter`` language (see ``odata_filter``): tokens, date/time
literals, and the JSON arrays ``Microsoft.Dynamics.CRM.In`` takes."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any


class FilterError(ValueError):
    """A $filter expression could not be parsed or bound."""


# ----------------------------------------------------------------------------- lexer

GUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DATETIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2})?)?"
)
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[LlMmDdFf]?")
_IDENT_RE = re.compile(r"[A-Za-z_@$][A-Za-z0-9_./]*")
_WS = " \t\r\n"


@dataclass
class Tok:
    kind: str  # ident, string, jstring, number, guid, datetime, punct, end
    value: Any
    pos: int


def tokenize(text: str) -> list[Tok]:
    toks: list[Tok] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in _WS:
            i += 1
            continue
        if c == "'":
            start = i
            i += 1
            buf = []
            while True:
                j = text.find("'", i)
                if j < 0:
                    raise FilterError(
                        f"There is an unterminated literal at position {n} in '{text}'."
                    )
                buf.append(text[i:j])
                i = j + 1
                if i < n and text[i] == "'":
                    buf.append("'")
                    i += 1
                    continue
                break
            toks.append(Tok("string", "".join(buf), start))
            continue
        if c == '"':
            start = i
            i += 1
            buf = []
            while True:
                if i >= n:
                    raise FilterError(
                        f"There is an unterminated literal at position {n} in '{text}'."
                    )
                ch = text[i]
                if ch == "\\" and i + 1 < n:
                    buf.append(text[i : i + 2])
                    i += 2
                    continue
                if ch == '"':
                    i += 1
                    break
                buf.append(ch)
                i += 1
            try:
                value = json.loads('"' + "".join(buf) + '"')
            except ValueError as exc:
                raise FilterError(f"Syntax error at position {start} in '{text}'.") from exc
            toks.append(Tok("jstring", value, start))
            continue
        if c in "(),=[]":
            toks.append(Tok("punct", c, i))
            i += 1
            continue
        m = GUID_RE.match(text, i)
        if m and not _continues_word(text, m.end()):
            toks.append(Tok("guid", m.group().lower(), i))
            i = m.end()
            continue
        m = _DATETIME_RE.match(text, i)
        if m and not _continues_word(text, m.end()):
            toks.append(Tok("datetime", parse_datetime(m.group()), i))
            i = m.end()
            continue
        m = _NUMBER_RE.match(text, i)
        if m and not _continues_word(text, m.end()):
            raw = m.group()
            core = raw.rstrip("LlMmDdFf")
            if re.fullmatch(r"-?\d+", core):
                toks.append(Tok("number", int(core), i))
            else:
                toks.append(Tok("number", float(core), i))
            i = m.end()
            continue
        m = _IDENT_RE.match(text, i)
        if m:
            toks.append(Tok("ident", m.group(), i))
            i = m.end()
            continue
        raise FilterError(
            f"Syntax error: character '{c}' is not valid at position {i} in '{text}'."
        )
    toks.append(Tok("end", None, n))
    return toks


def _continues_word(text: str, end: int) -> bool:
    return end < len(text) and (text[end].isalnum() or text[end] in "_")


def parse_datetime(raw: str) -> str:
    """Normalise a date/time literal to UTC 'YYYY-MM-DDTHH:MM:SS[.ffffff]' (no zone)."""
    try:
        if "T" not in raw:
            value = dt.datetime.fromisoformat(raw).replace(tzinfo=dt.UTC)
        else:
            value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            value = value.astimezone(dt.UTC)
    except ValueError as exc:
        raise FilterError(
            f"The DateTimeOffset text '{raw}' should be in format 'yyyy-mm-ddThh:mm:ss('.'s+)?"
            f"(zzzzzz)?' and each field value is within valid range."
        ) from exc
    out = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        out += f".{value.microsecond:06d}".rstrip("0")
    return out


_JSON_MISSING_COMMA = (
    "Invalid JSON. A comma character ',' was expected in scope 'Array'. Every two elements in "
    "an array and properties of an object must be separated by commas."
)
_JSON_OPEN_SCOPE = (
    "Invalid JSON. An unexpected end of input was found in JSON content. Not all object and "
    "array scopes were closed."
)
_JSON_TRAILING = (
    "Invalid JSON. More than one value was found at the root of the JSON content. JSON content "
    "can only have one value at the root level, which is an array, an object or a primitive "
    "value."
)


def read_json_array(raw: str) -> list[str]:
    """Read a parameter alias holding an array of scalars the way ODL's JSON reader does:
    strings may be quoted with double or single quotes, so an apostrophe inside a
    single-quoted value ends it early and the reader then misses a comma."""
    n = len(raw)
    i = 1
    values: list[str] = []

    def skip_ws(k: int) -> int:
        while k < n and raw[k] in _WS:
            k += 1
        return k

    i = skip_ws(i)
    if i < n and raw[i] == "]":
        i += 1
    else:
        while True:
            i = skip_ws(i)
            if i >= n:
                raise FilterError(_JSON_OPEN_SCOPE)
            quote = raw[i]
            if quote in "'\"":
                j = i + 1
                buf = []
                while True:
                    if j >= n:
                        raise FilterError(_JSON_OPEN_SCOPE)
                    ch = raw[j]
                    if ch == "\\" and j + 1 < n:
                        try:
                            buf.append(json.loads('"' + raw[j : j + 2] + '"'))
                        except ValueError as exc:
                            raise FilterError(f"Syntax error at position 0 in '{raw}'.") from exc
                        j += 2
                        continue
                    if ch == quote:
                        break
                    buf.append(ch)
                    j += 1
                values.append("".join(buf))
                i = j + 1
            else:
                j = i
                while j < n and raw[j] not in ",]" and raw[j] not in _WS:
                    j += 1
                token = raw[i:j]
                if not token or not re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false", token):
                    raise FilterError(f"Syntax error at position 0 in '{raw}'.")
                values.append(token)
                i = j
            i = skip_ws(i)
            if i >= n:
                raise FilterError(_JSON_OPEN_SCOPE)
            if raw[i] == ",":
                i += 1
                continue
            if raw[i] == "]":
                i += 1
                break
            raise FilterError(_JSON_MISSING_COMMA)
    if skip_ws(i) < n:
        raise FilterError(_JSON_TRAILING)
    return values
