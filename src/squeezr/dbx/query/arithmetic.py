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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from squeezr.dbx.tokens import ExpressionError, Token, Tokenizer, TokenStream

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
# Numbers, paths and backticked names as in conditions (squeezr.dbx.tokens); no strings, and
# a minus is an operator (``1 - -x``), not part of a number.
_TOKENIZER = Tokenizer(
    ("**", "//", "-", "+", "*", "/", "%", "(", ")", ","),
    unexpected="unexpected {char!r} (computed columns use + - * / // % ** ( ))",
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


class _Parser(TokenStream):
    """Recursive descent over the grammar above; each rule returns a closure."""

    def __init__(self, text: str) -> None:
        super().__init__(_TOKENIZER.tokenize(text))
        self.paths: set[str] = set()

    def fail(self, expected: str) -> ExpressionError:
        token = self.token
        got = "the end" if token.kind == "end" else repr(token.text)
        return ExpressionError(token.column, f"expected {expected} (got {got})")

    def parse(self) -> _Node:
        node = self.sum()
        if self.token.kind != "end":
            raise self.fail("an operator such as + - * /")
        return node

    def binary(self, operators: tuple[str, ...], operand: Callable[[], _Node]) -> _Node:
        """``operand (op operand)*``, left to right, as one flat node: a chain of thousands
        of terms costs no recursion when it is evaluated."""
        first = operand()
        rest: list[tuple[Callable[[Any, Any], Any], _Node]] = []
        while self.at(*operators):
            apply = _BINARY[self.advance().text]
            rest.append((apply, operand()))
        if not rest:
            return first

        def chain(get: Getter) -> Any:
            value = first(get)
            for apply, right in rest:
                value = apply(value, right(get))
            return value

        return chain

    def sum(self) -> _Node:
        return self.binary(("+", "-"), self.product)

    def product(self) -> _Node:
        return self.binary(("*", "/", "//", "%"), self.unary)

    def unary(self) -> _Node:
        if self.at("-", "+"):
            sign = self.advance().text
            with self.nested():
                inner = self.unary()
            return (lambda get: -inner(get)) if sign == "-" else inner
        return self.power()

    def power(self) -> _Node:
        base = self.atom()
        if self.at("**"):
            self.advance()
            # in floats, so that an integer column to a negative power is no error
            with self.nested():
                return _combine(np.float_power, base, self.unary())
        return base

    def atom(self) -> _Node:
        token = self.token
        if token.kind == "num":
            self.advance()
            number = _number(token.value)
            return lambda get: number
        if self.at("("):
            self.advance()
            with self.nested():
                inner = self.sum()
            if not self.at(")"):
                raise self.fail(f"')' to close the '(' at column {token.column}")
            self.advance()
            return inner
        if token.kind != "name":
            raise self.fail("a number, a column or '('")
        self.advance()
        if self.at("(") and not token.text.startswith("`"):
            return self.call(token)
        self.paths.add(token.value)
        return lambda get: get(token.value)

    def call(self, name: Token) -> _Node:
        function = FUNCTIONS.get(name.text)
        if function is None:
            raise ExpressionError(
                name.column, f"unknown function {name.text!r}; use {', '.join(FUNCTIONS)}"
            )
        self.advance()
        with self.nested():
            inner = self.sum()
        if not self.at(")"):
            raise self.fail(f"')' to close {name.text}(")
        self.advance()
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
