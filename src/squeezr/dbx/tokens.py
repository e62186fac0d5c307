"""The tokenizer of dbx's two small expression languages, and their syntax error.

Conditions (``squeezr.dbx.expr``: ``dbx ls --where``, the query ``where`` stage; evaluated row
by row, without numpy) and computed columns (``squeezr.dbx.query.arithmetic``: evaluated on
whole columns with numpy) are two grammars with different semantics, so each has its own small
recursive-descent parser; they share this tokenizer, so a number, a quoted string, a field path
and a backticked name are read the same way in both, and every error names the 1-based column
the same way. What differs is given per language by a :class:`Tokenizer`: its operators,
whether a number may carry a minus sign, whether it has strings, and its error wording.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from squeezr.dbx.errors import UserError

__all__ = [
    "MAX_DEPTH",
    "NAME",
    "QUOTED_NAME",
    "ExpressionError",
    "Token",
    "TokenStream",
    "Tokenizer",
]

# How deeply parentheses, lists and prefix operators may nest. Both parsers recurse once per
# level, so without a bound ~170 nested parentheses reach Python's recursion limit; no real
# condition or computation comes near this.
MAX_DEPTH = 64
# The longest integer literal: Python refuses to convert longer digit strings (its 4,300-digit
# guard against quadratic conversion), and no field holds such a number anyway.
MAX_DIGITS = 300

# A field path: a name, then dot-separated segments that may start with a digit (a list
# index: results.curve.0). Any other field name is written in backticks, taken as written.
NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*"
QUOTED_NAME = r"`([^`]+)`"
_NUMBER = r"(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?"  # 60 is an int; 0.1, 1e-3 are floats
_STRING = r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\""""
_UNESCAPE = re.compile(r"\\([\\'\"])")  # \' \" \\; any other backslash is kept (regexes)


class ExpressionError(UserError):
    """A syntax error, with the 1-based ``column`` and the ``reason`` kept apart so that a
    caller embedding an expression in a longer text can point at the right column."""

    def __init__(self, column: int, reason: str) -> None:
        super().__init__(f"bad expression at column {column}: {reason}")
        self.column = column
        self.reason = reason


@dataclass(frozen=True)
class Token:
    kind: str  # num, str, name, op, end
    text: str  # as written: a backticked name keeps its backticks, so it is never a keyword
    value: Any  # the number, the unescaped string, the field path or the operator
    column: int  # 1-based


class Tokenizer:
    """The tokens of one expression language.

    ``operators``: its operator and punctuation tokens. ``unexpected``: the error for any
    other character (a ``str.format`` template with ``{char}``). ``signed_numbers``: ``-1`` is
    one number token (a language without a unary minus). ``strings``: it has quoted strings.
    ``rejected``: operator-like text that is a common mistake, with the reason it is an error.
    """

    def __init__(
        self,
        operators: Iterable[str],
        *,
        unexpected: str,
        signed_numbers: bool = False,
        strings: bool = False,
        rejected: Mapping[str, str] | None = None,
    ) -> None:
        self.unexpected = unexpected
        self.strings = strings
        self.rejected = dict(rejected or {})
        longest_first = sorted({*operators, *self.rejected}, key=len, reverse=True)
        parts = [
            r"(?P<space>\s+)",
            f"(?P<num>{'-?' if signed_numbers else ''}{_NUMBER})",
            *([f"(?P<str>{_STRING})"] if strings else []),
            f"(?P<name>{NAME})",
            f"(?P<quoted>{QUOTED_NAME})",
            f"(?P<op>{'|'.join(re.escape(op) for op in longest_first)})",
        ]
        self.pattern = re.compile("|".join(parts))

    def tokenize(self, text: str) -> list[Token]:
        """The tokens of ``text``, ending with an ``end`` token one column past its end;
        ExpressionError at the first character that starts no token."""
        tokens: list[Token] = []
        position = 0
        while position < len(text):
            found = self.pattern.match(text, position)
            column = position + 1
            if found is None:
                raise ExpressionError(column, self._unexpected(text[position]))
            kind, raw = found.lastgroup or "", found.group()
            position = found.end()
            if kind == "space":
                continue
            if kind == "num":
                value: Any = _number(raw, column)
            elif kind == "str":
                value = _UNESCAPE.sub(r"\1", raw[1:-1])
            elif kind == "quoted":
                kind, value = "name", raw[1:-1]
            else:
                value = raw
            if kind == "op" and raw in self.rejected:
                raise ExpressionError(column, self.rejected[raw])
            tokens.append(Token(kind, raw, value, column))
        tokens.append(Token("end", "", None, len(text) + 1))
        return tokens

    def _unexpected(self, char: str) -> str:
        if self.strings and char in "'\"":
            return f"unterminated string starting with {char}"
        if char == "`":
            return "a `quoted field name` needs its closing `"
        return self.unexpected.format(char=char)


def _number(raw: str, column: int) -> int | float:
    """A number token's value: int unless it has a point or an exponent."""
    if any(c in raw for c in ".eE"):
        return float(raw)
    if len(raw.lstrip("-")) > MAX_DIGITS:
        raise ExpressionError(column, f"a number of more than {MAX_DIGITS} digits is too long")
    return int(raw)


class TokenStream:
    """The cursor of a recursive-descent parser over a list of tokens, with the nesting
    depth the parser has reached (see :meth:`nested`)."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    def nested(self) -> _Nesting:
        """``with self.nested():`` around each recursive step: an ExpressionError at the
        current token past ``MAX_DEPTH`` levels, instead of a RecursionError."""
        return _Nesting(self)

    @property
    def token(self) -> Token:
        """The next token (the ``end`` token once all are read)."""
        return self.tokens[self.index]

    def advance(self) -> Token:
        """Read the next token."""
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at(self, *texts: str) -> bool:
        """Whether the next token is one of these operators or (unquoted) words."""
        token = self.token
        return token.kind in ("op", "name") and token.text in texts


class _Nesting:
    """One level of nesting of a :class:`TokenStream`, for a ``with`` block."""

    def __init__(self, stream: TokenStream) -> None:
        self.stream = stream

    def __enter__(self) -> None:
        stream = self.stream
        if stream.depth >= MAX_DEPTH:
            raise ExpressionError(
                stream.token.column,
                f"nested too deeply (more than {MAX_DEPTH} levels of parentheses, lists or "
                "prefix operators); simplify the expression",
            )
        stream.depth += 1

    def __exit__(self, *_: object) -> None:
        self.stream.depth -= 1
