"""Computed columns: ``1 - test_acc``, ``val_acc * 100``, ``log(loss) / 2``.

A select item or an aggregate argument that is not a plain column is arithmetic over columns.
It is parsed with the query, so a mistake is a syntax error naming its column like any other,
and evaluated on whole columns at once (numpy), so a million rows cost a few array operations.
Grammar (docs/dbx-query.md)::

    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/" | "//" | "%") unary)*
    unary   := ("-" | "+") unary | power
    power   := atom ["**" unary]
    atom    := NUMBER | PATH | `any name` | FUNCTION "(" sum ")" | "(" sum ")"
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from squeezr.dbx.expr import ExpressionError

FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "abs": np.abs,
    "sqrt": np.sqrt,
    "exp": np.exp,
    "log": np.log,
    "log2": np.log2,
    "log10": np.log10,
}
_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
}
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
  | (?P<quoted>`[^`]+`)
  | (?P<op>\*\*|//|[-+*/%(),])
    """,
    re.VERBOSE,
)

Getter = Callable[[str], Any]  # a column path -> its values (a numeric pandas Series)
_Node = Callable[[Getter], Any]


@dataclass(frozen=True)
class Arithmetic:
    """A parsed computation; ``evaluate(get)`` runs it on the columns ``get`` returns."""

    text: str
    paths: frozenset[str]
    _root: _Node

    def evaluate(self, get: Getter) -> Any:
        """The result (a Series, or a number if no column is used); numpy rules for 1/0, log(0)."""
        with np.errstate(all="ignore"):
            return self._root(get)


@dataclass(frozen=True)
class _Token:
    kind: str  # num, name, op, end
    text: str
    value: Any  # the number, or the column path (without backticks)
    column: int  # 1-based


def _tokenize(text: str) -> list[_Token]:
    tokens = []
    position = 0
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None:
            char = text[position]
            if char == "`":
                raise ExpressionError(position + 1, "a `quoted column name` needs its closing `")
            raise ExpressionError(
                position + 1, f"unexpected {char!r} (computed columns use + - * / // % ** ( ))"
            )
        kind, raw = found.lastgroup or "", found.group()
        if kind == "num":
            tokens.append(
                _Token(kind, raw, float(raw) if set(raw) & set(".eE") else int(raw), position + 1)
            )
        elif kind in ("name", "quoted"):
            tokens.append(_Token("name", raw, raw.strip("`"), position + 1))
        elif kind == "op":
            tokens.append(_Token(kind, raw, raw, position + 1))
        position = found.end()
    tokens.append(_Token("end", "", None, len(text) + 1))
    return tokens


class _Parser:
    """Recursive descent over the grammar above; each rule returns a closure."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.index = 0
        self.paths: set[str] = set()

    def peek(self, *texts: str) -> bool:
        token = self.tokens[self.index]
        return token.kind == "op" and token.text in texts

    def take(self) -> _Token:
        self.index += 1
        return self.tokens[self.index - 1]

    def fail(self, expected: str) -> ExpressionError:
        token = self.tokens[self.index]
        got = "the end" if token.kind == "end" else repr(token.text)
        return ExpressionError(token.column, f"expected {expected} (got {got})")

    def parse(self) -> _Node:
        node = self.sum()
        if self.tokens[self.index].kind != "end":
            raise self.fail("an operator such as + - * /")
        return node

    def binary(self, operators: tuple[str, ...], operand: Callable[[], _Node]) -> _Node:
        node = operand()
        while self.peek(*operators):
            apply = _BINARY[self.take().text]
            node = _combine(apply, node, operand())
        return node

    def sum(self) -> _Node:
        return self.binary(("+", "-"), self.product)

    def product(self) -> _Node:
        return self.binary(("*", "/", "//", "%"), self.unary)

    def unary(self) -> _Node:
        if self.peek("-", "+"):
            sign = self.take().text
            inner = self.unary()
            return (lambda get: -inner(get)) if sign == "-" else inner
        return self.power()

    def power(self) -> _Node:
        base = self.atom()
        if self.peek("**"):
            self.take()
            # in floats, so that an integer column to a negative power is no error
            return _combine(np.float_power, base, self.unary())
        return base

    def atom(self) -> _Node:
        token = self.tokens[self.index]
        if token.kind == "num":
            self.take()
            number = _number(token.value)
            return lambda get: number
        if self.peek("("):
            self.take()
            inner = self.sum()
            if not self.peek(")"):
                raise self.fail(f"')' to close the '(' at column {token.column}")
            self.take()
            return inner
        if token.kind != "name":
            raise self.fail("a number, a column or '('")
        self.take()
        if self.peek("(") and not token.text.startswith("`"):
            return self.call(token)
        self.paths.add(token.value)
        return lambda get: get(token.value)

    def call(self, name: _Token) -> _Node:
        function = FUNCTIONS.get(name.text)
        if function is None:
            raise ExpressionError(
                name.column, f"unknown function {name.text!r}; use {', '.join(FUNCTIONS)}"
            )
        self.take()
        inner = self.sum()
        if not self.peek(")"):
            raise self.fail(f"')' to close {name.text}(")
        self.take()
        return lambda get: function(inner(get))


def _number(value: int | float) -> Any:
    """A literal as a numpy scalar, so that 1 / 0 follows numpy (inf), as columns do."""
    if isinstance(value, int) and abs(value) < 2**63:
        return np.int64(value)
    return np.float64(value)


def _combine(apply: Callable[[Any, Any], Any], left: _Node, right: _Node) -> _Node:
    return lambda get: apply(left(get), right(get))


def parse(text: str) -> Arithmetic:
    """Parse a computed column; ExpressionError (column relative to ``text``) if malformed."""
    if not text.strip():
        raise ExpressionError(1, "empty computation")
    parser = _Parser(text)
    root = parser.parse()
    return Arithmetic(text, frozenset(parser.paths), root)
