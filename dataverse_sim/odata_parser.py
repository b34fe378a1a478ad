"""The parser of the ``$filter`` language (see ``odata_filter``): tokens to a syntax tree,
with properties bound to the table's columns and parameter aliases resolved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .odata_lexer import FilterError, Tok, read_json_array, tokenize

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
STRING_FUNCS = {"contains", "startswith", "endswith"}


class Parser:
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
        self.toks = tokenize(text)
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
        sub = Parser(
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
        if name in STRING_FUNCS:
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
            return _parse_alias_value(raw)
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


def _parse_alias_value(raw: str):
    raw = raw.strip()
    if raw.startswith("["):
        return read_json_array(raw)
    toks = tokenize(raw)
    if len(toks) == 2 and toks[0].kind == "string":
        return toks[0].value
    raise FilterError(f"Syntax error at position 0 in '{raw}'.")
