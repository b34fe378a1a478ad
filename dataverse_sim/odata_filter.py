"""A small recursive-descent parser for the OData ``$filter`` subset Dataverse supports.

The parser turns the expression into a Python predicate ``row -> bool`` over stored rows.
Semantics follow Dataverse (SQL Server underneath):

* string comparisons are case-insensitive;
* ``contains`` / ``startswith`` / ``endswith`` map to SQL ``LIKE``, so ``%``, ``_`` and
  ``[...]`` / ``[^...]`` inside the value are wildcards;
* comparisons follow SQL's three-valued logic: a comparison with a null column value
  (including ``ne`` and ``not (...)``) is unknown and the row is not returned; only
  ``eq null`` / ``ne null`` test for null;
* GUIDs and date/times are written unquoted; strings use single quotes with ``''`` as an
  escaped quote; ``Microsoft.Dynamics.CRM.In`` / ``NotIn`` take a JSON array of strings;
* parameter aliases (``@p1``) are resolved from the query string.

Errors raise :class:`FilterError` with a message shaped like the ones Dataverse
(Microsoft.OData.Core) returns.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import schema

Row = tuple
Getter = Callable[[Row], Any]


class FilterError(ValueError):
    """A $filter expression could not be parsed or bound."""


# ----------------------------------------------------------------------------- lexer

_GUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
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


def _tokenize(text: str) -> list[Tok]:
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
        m = _GUID_RE.match(text, i)
        if m and not _continues_word(text, m.end()):
            toks.append(Tok("guid", m.group().lower(), i))
            i = m.end()
            continue
        m = _DATETIME_RE.match(text, i)
        if m and not _continues_word(text, m.end()):
            toks.append(Tok("datetime", _parse_datetime(m.group(), text, i), i))
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


def _parse_datetime(raw: str, text: str, pos: int) -> str:
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


# ----------------------------------------------------------------------------- AST


@dataclass
class Prop:
    name: str
    type: str
    pos: int


@dataclass
class Lit:
    kind: str  # string, number, guid, datetime, bool, null
    value: Any
    pos: int


@dataclass
class BinOp:
    op: str
    left: Any
    right: Any
    pos: int


@dataclass
class Not:
    operand: Any


@dataclass
class Func:
    name: str
    args: list
    pos: int


@dataclass
class InFunc:
    prop: Prop
    values: list[str]
    negate: bool


_CMP_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}
_STRING_FUNCS = {"contains", "startswith", "endswith"}
_EDM = {
    schema.GUID: "Edm.Guid",
    schema.INT: "Edm.Int32",
    schema.FLOAT: "Edm.Double",
    schema.BOOL: "Edm.Boolean",
    schema.DATETIME: "Edm.DateTimeOffset",
    schema.STRING: "Edm.String",
}
_LIT_EDM = {
    "string": "Edm.String",
    "number": "Edm.Int32",
    "guid": "Edm.Guid",
    "datetime": "Edm.DateTimeOffset",
    "bool": "Edm.Boolean",
}
_OP_KIND = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}


class _Parser:
    def __init__(
        self,
        text: str,
        columns: Mapping[str, str],
        entity_type: str,
        aliases: Mapping[str, str],
        depth: int = 0,
    ) -> None:
        self.text = text
        self.columns = columns
        self.entity_type = entity_type
        self.aliases = aliases
        self.depth = depth
        self.toks = _tokenize(text)
        self.i = 0

    # helpers
    def peek(self) -> Tok:
        return self.toks[self.i]

    def take(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def error(self, pos: int | None = None) -> FilterError:
        p = self.peek().pos if pos is None else pos
        return FilterError(f"Syntax error at position {p} in '{self.text}'.")

    def expect(self, punct: str) -> Tok:
        tok = self.peek()
        if tok.kind != "punct" or tok.value != punct:
            if punct == ")":
                raise FilterError(f"')' or ',' expected at position {tok.pos} in '{self.text}'.")
            raise self.error()
        return self.take()

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok.kind == "ident" and tok.value == word

    # grammar
    def parse(self):
        if self.peek().kind == "end":
            raise FilterError(f"Expression expected at position 0 in '{self.text}'.")
        node = self.parse_or()
        tok = self.peek()
        if tok.kind != "end":
            raise FilterError(f"Syntax error at position {tok.pos} in '{self.text}'.")
        return node

    def parse_or(self):
        node = self.parse_and()
        while self.is_word("or"):
            pos = self.take().pos
            node = BinOp("or", node, self.parse_and(), pos)
        return node

    def parse_and(self):
        node = self.parse_not()
        while self.is_word("and"):
            pos = self.take().pos
            node = BinOp("and", node, self.parse_not(), pos)
        return node

    def parse_not(self):
        if self.is_word("not"):
            self.take()
            return Not(self.parse_not())
        return self.parse_cmp()

    def parse_cmp(self):
        left = self.parse_primary()
        tok = self.peek()
        if tok.kind == "ident" and tok.value in _CMP_OPS:
            self.take()
            right = self.parse_primary()
            return BinOp(tok.value, left, right, tok.pos)
        if (
            tok.kind == "ident"
            and tok.value not in ("and", "or")
            and tok.value.lower() in _CMP_OPS | {"and", "or"}
        ):
            raise self.error(tok.pos)  # operators are case-sensitive: 'EQ', 'AND'...
        return left

    def parse_primary(self):
        tok = self.peek()
        if tok.kind == "punct" and tok.value == "(":
            self.take()
            node = self.parse_or()
            self.expect(")")
            return node
        if tok.kind == "string":
            self.take()
            return Lit("string", tok.value, tok.pos)
        if tok.kind == "number":
            self.take()
            return Lit("number", tok.value, tok.pos)
        if tok.kind == "guid":
            self.take()
            return Lit("guid", tok.value, tok.pos)
        if tok.kind == "datetime":
            self.take()
            return Lit("datetime", tok.value, tok.pos)
        if tok.kind == "ident":
            word = tok.value
            if word in ("true", "false"):
                self.take()
                return Lit("bool", word == "true", tok.pos)
            if word == "null":
                self.take()
                return Lit("null", None, tok.pos)
            if word.startswith("@"):
                self.take()
                return self.resolve_alias(word, tok.pos)
            nxt = self.toks[self.i + 1]
            if nxt.kind == "punct" and nxt.value == "(":
                return self.parse_function()
            self.take()
            return self.prop(word, tok.pos)
        if tok.kind == "end":
            raise FilterError(f"Expression expected at position {tok.pos} in '{self.text}'.")
        raise self.error()

    def resolve_alias(self, name: str, pos: int):
        if name not in self.aliases:
            raise FilterError(
                f"Could not find a value for the parameter alias '{name}' in '{self.text}'."
            )
        if self.depth > 4:
            raise self.error(pos)
        sub = _Parser(
            self.aliases[name], self.columns, self.entity_type, self.aliases, self.depth + 1
        )
        return sub.parse_primary_only()

    def parse_primary_only(self):
        node = self.parse_primary()
        if self.peek().kind != "end":
            raise self.error()
        return node

    def prop(self, name: str, pos: int) -> Prop:
        if name in self.columns:
            return Prop(name, self.columns[name], pos)
        if "/" in name or "." in name:
            # navigation paths and casts are not supported by this simulator
            first = name.split("/")[0].split(".")[0]
            if first not in self.columns:
                raise self.unknown_property(first)
            raise FilterError(
                f"The query specified in the URI is not valid. Navigation through '{name}' is "
                "not supported."
            )
        if name not in self.columns:
            raise self.unknown_property(name)
        return Prop(name, self.columns[name], pos)

    def unknown_property(self, name: str) -> FilterError:
        return FilterError(
            f"Could not find a property named '{name}' on type "
            f"'Microsoft.Dynamics.CRM.{self.entity_type}'."
        )

    def parse_function(self):
        tok = self.take()
        name = tok.value
        self.expect("(")
        if name in _STRING_FUNCS:
            a = self.parse_or()
            self.expect_comma()
            b = self.parse_or()
            self.expect(")")
            return Func(name, [a, b], tok.pos)
        if name in ("Microsoft.Dynamics.CRM.In", "Microsoft.Dynamics.CRM.NotIn"):
            params: dict[str, Any] = {}
            while True:
                key = self.take()
                if key.kind != "ident" or key.value not in ("PropertyName", "PropertyValues"):
                    raise self.error(key.pos)
                self.expect("=")
                params[key.value] = self.parse_function_arg()
                if self.peek().kind == "punct" and self.peek().value == ",":
                    self.take()
                    continue
                self.expect(")")
                break
            if "PropertyName" not in params or "PropertyValues" not in params:
                raise FilterError(
                    f"The function '{name}' requires the parameters PropertyName and "
                    f"PropertyValues in '{self.text}'."
                )
            pname = params["PropertyName"]
            if not isinstance(pname, str):
                raise self.error(tok.pos)
            values = params["PropertyValues"]
            if not isinstance(values, list):
                raise self.error(tok.pos)
            return InFunc(self.prop(pname, tok.pos), values, name.endswith("NotIn"))
        if name in ("tolower", "toupper", "trim"):
            a = self.parse_or()
            self.expect(")")
            return Func(name, [a], tok.pos)
        raise FilterError(
            f"An unknown function with name '{name}' was found. This may also be a function "
            "import or a key lookup on a navigation property, which is not allowed."
        )

    def expect_comma(self):
        tok = self.peek()
        if tok.kind != "punct" or tok.value != ",":
            raise FilterError(f"')' or ',' expected at position {tok.pos} in '{self.text}'.")
        self.take()

    def parse_function_arg(self):
        tok = self.peek()
        if tok.kind == "string":
            self.take()
            return tok.value
        if tok.kind == "ident" and tok.value.startswith("@"):
            self.take()
            raw = self.aliases.get(tok.value)
            if raw is None:
                raise FilterError(
                    f"Could not find a value for the parameter alias '{tok.value}' in "
                    f"'{self.text}'."
                )
            return _parse_alias_value(raw, self.text)
        if tok.kind == "punct" and tok.value == "[":
            self.take()
            values: list[str] = []
            while True:
                t = self.take()
                if t.kind == "punct" and t.value == "]" and not values:
                    break
                if t.kind not in ("jstring", "string", "number", "guid", "datetime"):
                    raise self.error(t.pos)
                values.append(str(t.value))
                sep = self.take()
                if sep.kind == "punct" and sep.value == ",":
                    continue
                if sep.kind == "punct" and sep.value == "]":
                    break
                raise self.error(sep.pos)
            return values
        raise self.error()


def _parse_alias_value(raw: str, text: str):
    raw = raw.strip()
    if raw.startswith("["):
        return _read_json_array(raw)
    toks = _tokenize(raw)
    if len(toks) == 2 and toks[0].kind == "string":
        return toks[0].value
    raise FilterError(f"Syntax error at position 0 in '{raw}'.")


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


def _read_json_array(raw: str) -> list[str]:
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


# ----------------------------------------------------------------------------- compiler


def like_regex(pattern: str) -> re.Pattern[str]:
    """Translate a SQL LIKE pattern (%, _, [set], [^set]) into a compiled regex."""
    out = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "%":
            out.append(".*")
        elif c == "_":
            out.append(".")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body == "":
                    out.append(re.escape("[]"))
                else:
                    neg = body.startswith("^")
                    if neg:
                        body = body[1:]
                    chars = "".join(ch if ch == "-" else re.escape(ch) for ch in body)
                    out.append(("[^" if neg else "[") + chars + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _coerce_literal(lit: Lit, col_type: str, op: str, text: str):
    """Convert a literal for comparison against a column of ``col_type``."""
    if lit.kind == "null":
        return None
    kind = lit.kind
    ok = (
        (col_type == schema.STRING and kind == "string")
        or (col_type == schema.GUID and kind in ("guid", "string"))
        or (col_type in (schema.INT, schema.FLOAT) and kind == "number")
        or (col_type == schema.BOOL and kind == "bool")
        or (col_type == schema.DATETIME and kind == "datetime")
    )
    if not ok:
        raise FilterError(
            "A binary operator with incompatible types was detected. Found operand types "
            f"'{_EDM[col_type]}' and '{_LIT_EDM.get(kind, 'Edm.String')}' for operator kind "
            f"'{_OP_KIND.get(op, op)}'."
        )
    if col_type == schema.GUID:
        value = str(lit.value).lower()
        if not _GUID_RE.fullmatch(value):
            raise FilterError(f"Unrecognized 'Edm.Guid' literal '{lit.value}' in '{text}'.")
        return value
    if col_type == schema.STRING:
        return lit.value.lower()
    return lit.value


def _norm_getter(prop: Prop, getter_for: Callable[[str], Getter]) -> Getter:
    g = getter_for(prop.name)
    if prop.type == schema.STRING:
        return lambda r: None if (v := g(r)) is None else v.lower()
    if prop.type == schema.GUID:
        return lambda r: None if (v := g(r)) is None else v.lower()
    if prop.type == schema.DATETIME:
        return lambda r: None if (v := g(r)) is None else v.rstrip("Z")
    return g


def _and3(a, b: Callable[[Row], Any], r) -> bool | None:
    """SQL (Kleene) AND; ``b`` is evaluated lazily."""
    if a is False:
        return False
    bv = b(r)
    if a is True:
        return bv
    return False if bv is False else None


def _or3(a, b: Callable[[Row], Any], r) -> bool | None:
    """SQL (Kleene) OR; ``b`` is evaluated lazily."""
    if a is True:
        return True
    bv = b(r)
    if a is False:
        return bv
    return True if bv is True else None


def _compare(op: str, a, b) -> bool | None:
    if a is None or b is None:
        return None
    if op == "eq":
        return a == b
    if op == "ne":
        return a != b
    try:
        if op == "gt":
            return a > b
        if op == "ge":
            return a >= b
        if op == "lt":
            return a < b
        return a <= b
    except TypeError:
        return False


class _Compiler:
    def __init__(self, getter_for: Callable[[str], Getter], text: str) -> None:
        self.getter_for = getter_for
        self.text = text

    def compile(self, node) -> Callable[[Row], bool]:
        if isinstance(node, BinOp) and node.op in ("and", "or"):
            a = self.compile(node.left)
            b = self.compile(node.right)
            if node.op == "and":
                return lambda r: _and3(a(r), b, r)
            return lambda r: _or3(a(r), b, r)
        if isinstance(node, Not):
            inner = self.compile(node.operand)
            return lambda r: None if (v := inner(r)) is None else not v
        if isinstance(node, BinOp):
            return self.compile_cmp(node)
        if isinstance(node, Func) and node.name in _STRING_FUNCS:
            return self.compile_string_func(node)
        if isinstance(node, InFunc):
            return self.compile_in(node)
        if isinstance(node, Prop) and node.type == schema.BOOL:
            return self.getter_for(node.name)
        if isinstance(node, Lit) and node.kind == "bool":
            value = node.value
            return lambda r: value
        pos = getattr(node, "pos", 0)
        raise FilterError(
            f"The $filter expression must evaluate to a single boolean value (position {pos} in "
            f"'{self.text}')."
        )

    def operand(self, node) -> tuple[Getter, str]:
        """Compile a value operand; returns (getter, column type)."""
        if isinstance(node, Prop):
            return _norm_getter(node, self.getter_for), node.type
        if isinstance(node, Func) and node.name in ("tolower", "toupper", "trim"):
            inner, typ = self.operand(node.args[0])
            if node.name == "trim":
                return (lambda r: None if (v := inner(r)) is None else v.strip()), typ
            return inner, typ  # values are already compared case-insensitively
        raise FilterError(f"Syntax error at position {getattr(node, 'pos', 0)} in '{self.text}'.")

    def compile_cmp(self, node: BinOp) -> Callable[[Row], bool]:
        op = node.op
        left, right = node.left, node.right
        swapped = False
        if isinstance(left, Lit) and not isinstance(right, Lit):
            left, right = right, left
            swapped = True
        if isinstance(left, Lit) and isinstance(right, Lit):
            a = left.value
            b = right.value
            result = _compare(op, a, b)
            return lambda r: result
        if swapped:
            op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, op)
        g, typ = self.operand(left)
        if isinstance(right, Lit):
            if right.kind == "null":
                if op == "eq":
                    return lambda r: g(r) is None
                if op == "ne":
                    return lambda r: g(r) is not None
                return lambda r: False
            value = _coerce_literal(right, typ, op, self.text)
            if op == "eq":
                return lambda r: None if (v := g(r)) is None else v == value
            if op == "ne":
                return lambda r: None if (v := g(r)) is None else v != value
            if op == "gt":
                return lambda r: None if (v := g(r)) is None else v > value
            if op == "ge":
                return lambda r: None if (v := g(r)) is None else v >= value
            if op == "lt":
                return lambda r: None if (v := g(r)) is None else v < value
            return lambda r: None if (v := g(r)) is None else v <= value
        g2, typ2 = self.operand(right)
        if typ != typ2 and {typ, typ2} != {schema.INT, schema.FLOAT}:
            raise FilterError(
                "A binary operator with incompatible types was detected. Found operand types "
                f"'{_EDM[typ]}' and '{_EDM[typ2]}' for operator kind '{_OP_KIND[op]}'."
            )
        return lambda r: _compare(op, g(r), g2(r))

    def compile_string_func(self, node: Func) -> Callable[[Row], bool]:
        target, value = node.args
        if not isinstance(target, (Prop, Func)):
            raise FilterError(f"Syntax error at position {node.pos} in '{self.text}'.")
        g, typ = self.operand(target)
        if typ not in (schema.STRING, schema.GUID):
            raise FilterError(
                f"No function signature for the function with name '{node.name}' matches the "
                "specified arguments. The function signatures considered are: "
                f"{node.name}(Edm.String Nullable=true, Edm.String Nullable=true)."
            )
        if not isinstance(value, Lit) or value.kind != "string":
            raise FilterError(
                f"No function signature for the function with name '{node.name}' matches the "
                "specified arguments. The function signatures considered are: "
                f"{node.name}(Edm.String Nullable=true, Edm.String Nullable=true)."
            )
        body = value.value
        if node.name == "contains":
            pattern = "%" + body + "%"
        elif node.name == "startswith":
            pattern = body + "%"
        else:
            pattern = "%" + body
        rx = like_regex(pattern).fullmatch
        return lambda r: None if (v := g(r)) is None else rx(v) is not None

    def compile_in(self, node: InFunc) -> Callable[[Row], bool]:
        g = _norm_getter(node.prop, self.getter_for)
        typ = node.prop.type
        converted = set()
        for raw in node.values:
            converted.add(_convert_in_value(raw, typ, node.prop.name))
        if node.negate:
            return lambda r: None if (v := g(r)) is None else v not in converted
        return lambda r: None if (v := g(r)) is None else v in converted


def _convert_in_value(raw: str, typ: str, name: str):
    try:
        if typ == schema.STRING:
            return raw.lower()
        if typ == schema.GUID:
            value = raw.strip("{}").lower()
            if not _GUID_RE.fullmatch(value):
                raise ValueError(raw)
            return value
        if typ == schema.INT:
            return int(raw)
        if typ == schema.FLOAT:
            return float(raw)
        if typ == schema.BOOL:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        if typ == schema.DATETIME:
            return _parse_datetime(raw, raw, 0)
    except ValueError as exc:
        raise FilterError(f"The value '{raw}' is not valid for the attribute '{name}'.") from exc
    return raw


def compile_filter(
    text: str,
    columns: Mapping[str, str],
    getter_for: Callable[[str], Getter],
    entity_type: str,
    aliases: Mapping[str, str] | None = None,
) -> Callable[[Row], bool]:
    """Parse ``text`` and return a predicate over stored rows."""
    parser = _Parser(text, columns, entity_type, aliases or {})
    ast = parser.parse()
    predicate = _Compiler(getter_for, text).compile(ast)
    return lambda r: predicate(r) is True
