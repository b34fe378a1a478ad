"""The OData ``$filter`` subset Dataverse supports, compiled to a row predicate (the lexer
is ``odata_lexer``, the recursive-descent parser ``odata_parser``).

``compile_filter`` turns the expression into a Python predicate ``row -> bool`` over stored rows.
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

import re
from collections.abc import Callable, Mapping
from typing import Any

from . import schema
from .odata_lexer import GUID_RE, FilterError, parse_datetime
from .odata_parser import STRING_FUNCS, BinOp, Func, InFunc, Lit, Not, Parser, Prop
from .schema import EDM_TYPES

Row = tuple
Getter = Callable[[Row], Any]

# The column type a literal of each kind would have (for type-mismatch messages).
_LITERAL_TYPES = {
    "string": schema.STRING,
    "number": schema.INT,
    "guid": schema.GUID,
    "datetime": schema.DATETIME,
    "bool": schema.BOOL,
}
_OP_KIND = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}


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
            f"'{EDM_TYPES[col_type]}' and '{EDM_TYPES[_LITERAL_TYPES.get(kind, schema.STRING)]}' "
            f"for operator kind '{_OP_KIND.get(op, op)}'."
        )
    if col_type == schema.GUID:
        value = str(lit.value).lower()
        if not GUID_RE.fullmatch(value):
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
        if isinstance(node, Func) and node.name in STRING_FUNCS:
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
                f"'{EDM_TYPES[typ]}' and '{EDM_TYPES[typ2]}' for operator kind '{_OP_KIND[op]}'."
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
            if not GUID_RE.fullmatch(value):
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
            return parse_datetime(raw)
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
    parser = Parser(text, columns, entity_type, aliases or {})
    ast = parser.parse()
    predicate = _Compiler(getter_for, text).compile(ast)
    return lambda r: predicate(r) is True
