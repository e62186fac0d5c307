"""Parsing a query string into stages, with errors that point at the column.

A query is a pipeline, ``stage | stage | ...``, each stage turning a log (a table of events)
into another. The grammar is in docs/dbx-query.md. Filter expressions are handed to the shared
``squeezr.dbx.expr`` language (the one ``dbx ls --where`` uses), so there is one filter syntax;
computed columns to ``arithmetic``. Everything that can be checked without data is checked
here, so a mistake is reported before any log is read.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from squeezr.dbx import expr, tokens
from squeezr.dbx.errors import UserError
from squeezr.dbx.query import arithmetic
from squeezr.dbx.query.pattern import Pattern, compile_pattern

KEYWORDS = (
    *("match", "where", "select", "before", "after", "first", "last", "limit", "sort"),
    *("group", "pivot"),
)
AGGREGATES = (
    *("count", "count_distinct", "mean", "median", "quantile", "std", "se", "min", "max"),
    *("first", "last", "sum"),
)

MAX_ROWS = 2**62  # what first/last take for "all": a count beyond any table's length
_PATH = re.compile(tokens.NAME)
_QUOTED_PATH = re.compile(tokens.QUOTED_NAME)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_SPACE = re.compile(r"\s")
_AGG = re.compile(r"^([A-Za-z_]+)\s*\((.*)\)$", re.DOTALL)
_QUOTES = "\"'`"
_CLOSING = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True)
class Match:
    """Keep events whose name matches; captured levels become columns."""

    pattern: Pattern


@dataclass(frozen=True)
class Where:
    """Keep rows for which the expression holds."""

    condition: expr.Expr


@dataclass(frozen=True)
class Column:
    """One output column: a column ``path``, or a ``computed`` arithmetic expression, renamed."""

    source: str  # as written
    name: str
    path: str | None = None
    computed: arithmetic.Arithmetic | None = None

    @property
    def is_path(self) -> bool:
        """Whether the item is a plain column (kept as is) rather than a computation."""
        return self.path is not None

    def paths(self) -> set[str]:
        """The column paths this item reads."""
        if self.path is not None:
            return {self.path}
        return set(self.computed.paths) if self.computed else set()


@dataclass(frozen=True)
class Select:
    """Keep (and rename, or compute) the listed columns, in that order."""

    columns: tuple[Column, ...]


@dataclass(frozen=True)
class Near:
    """Join the nearest event matching ``pattern`` before/after each row, as ``prefix.*`` columns."""

    direction: str  # "before" or "after"
    pattern: Pattern
    prefix: str


@dataclass(frozen=True)
class Take:
    """The first or last ``count`` rows of each experiment (of the table, after ``group``)."""

    end: str  # "first" or "last"
    count: int


@dataclass(frozen=True)
class Limit:
    """The first ``count`` rows of the whole table (``first`` counts per experiment)."""

    count: int


@dataclass(frozen=True)
class Sort:
    """Order rows by columns (``desc`` per key), stably."""

    keys: tuple[tuple[str, bool], ...]  # (column, ascending)


@dataclass(frozen=True)
class Aggregate:
    """``func(argument) as name``; ``argument`` is None for ``count()``; ``q`` is the
    quantile of ``quantile(argument, q)``."""

    func: str
    argument: Column | None
    name: str
    q: float | None = None


@dataclass(frozen=True)
class Group:
    """One row per distinct key tuple, with aggregates over the rows (across experiments);
    no keys: one row over all rows."""

    keys: tuple[str, ...]
    aggregates: tuple[Aggregate, ...]


@dataclass(frozen=True)
class Pivot:
    """A wide table: one row per ``rows`` key tuple, one column per value of ``column``,
    holding ``value`` (one row's value, or an aggregate of the rows in the cell)."""

    rows: tuple[str, ...]
    column: str
    value: Aggregate
    single: bool  # value is a plain column: a cell of several rows is an error


Stage = Match | Where | Select | Near | Take | Limit | Sort | Group | Pivot


@dataclass(frozen=True)
class Query:
    """A parsed query: its text and its stages, in order."""

    text: str
    stages: tuple[Stage, ...] = field(default_factory=tuple)

    def patterns(self) -> list[Pattern]:
        """Every name pattern the query reads logs with (the first stage's, and before/after's)."""
        first = self.stages[0] if self.stages else None
        found = [first.pattern if isinstance(first, Match) else compile_pattern("**")]
        return found + [stage.pattern for stage in self.stages if isinstance(stage, Near)]


def _error(text: str, column: int, message: str) -> UserError:
    near = text[column - 1 : column + 19]
    where = f" near {near!r}" if near.strip() else " at the end"
    return UserError(f"query syntax error at column {column}{where}: {message}")


def split_top(text: str, separator: str, offset: int = 0) -> list[tuple[str, int]]:
    """Split on ``separator`` outside quotes (``'`` ``"`` and backticks) and brackets; each piece
    stripped, with the 0-based offset of its first non-blank character (plus ``offset``).

    ``||`` is never a ``|`` separator (it is the where-language's "or"). An unclosed quote or
    bracket, or a closing bracket without its opening one, is an error pointing at it.
    """
    pieces: list[tuple[str, int]] = []
    opened: list[int] = []  # positions of the open brackets
    quote, quote_start, start, index = "", 0, 0, 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\" and quote != "`":
                index += 1
            elif char == quote:
                quote = ""
        elif char in _QUOTES:
            quote, quote_start = char, index
        elif char in _CLOSING:
            opened.append(index)
        elif char in _CLOSING.values():
            if not opened or _CLOSING[text[opened[-1]]] != char:
                raise _error(text, offset + index + 1, f"{char!r} without a matching opening one")
            opened.pop()
        elif char == separator and not opened:
            if separator == "|" and text[index + 1 : index + 2] == "|":
                index += 1
            else:
                pieces.append((text[start:index], start))
                start = index + 1
        index += 1
    if quote:
        raise _error(text, offset + quote_start + 1, f"unclosed {quote} quote")
    if opened:
        raise _error(text, offset + opened[-1] + 1, f"{text[opened[-1]]!r} is never closed")
    pieces.append((text[start:], start))
    result = []
    for piece, begin in pieces:
        lead = len(piece) - len(piece.lstrip())
        result.append((piece.strip(), offset + begin + lead))
    return result


def parse(text: str) -> Query:
    """Parse a query string; raise UserError naming the column of the first problem."""
    if not text.strip():
        raise UserError("empty query; start with an event-name pattern such as train/epoch/:epoch")
    stages = []
    prefixes: set[str] = set()
    for piece, offset in split_top(text, "|"):
        if not piece:
            raise _error(text, offset + 1, "empty stage between |")
        stage = _stage(text, piece, offset)
        if isinstance(stage, Near):  # two joins under one prefix would mix their columns
            if stage.prefix in prefixes:
                raise _error(
                    text,
                    offset + 1,
                    f"duplicate prefix {stage.prefix!r} (an earlier before/after joins "
                    f"{stage.prefix}.*); name this one with 'as'",
                )
            prefixes.add(stage.prefix)
        stages.append(stage)
    return Query(text, tuple(stages))


def _stage(text: str, piece: str, offset: int) -> Stage:
    word, rest = _head(piece)
    if word.startswith("group:"):  # "group: mean(x)" aggregates over all rows
        word, rest = "group", piece[len("group") :].strip()
    rest_offset = offset + len(piece) - len(rest)
    if word not in KEYWORDS:
        return _match(text, piece, offset)
    if not rest:
        raise _error(text, offset + len(word) + 1, f"{word} needs an argument")
    if word == "match":
        return _match(text, rest, rest_offset)
    if word == "where":
        try:
            return Where(expr.parse(rest))
        except expr.ExpressionError as exc:
            raise _error(text, rest_offset + exc.column, exc.reason) from None
    if word == "select":
        items = _list(text, rest, rest_offset)
        columns = [_column(text, item, column) for item, column in items]
        _unique(text, [(c.name, o) for c, (_, o) in zip(columns, items, strict=True)])
        return Select(tuple(columns))
    if word in ("before", "after"):
        return _near(text, word, rest, rest_offset)
    if word in ("first", "last"):
        return Take(word, _count(text, word, rest, rest_offset))
    if word == "limit":
        return Limit(_count(text, word, rest, rest_offset))
    if word == "pivot":
        return _pivot(text, rest, rest_offset)
    if word == "sort":
        return Sort(tuple(_sort_key(text, p, o) for p, o in _list(text, rest, rest_offset)))
    return _group(text, rest, rest_offset)


def _count(text: str, word: str, rest: str, offset: int) -> int:
    """The N of ``first N`` / ``last N``: ASCII digits (``²`` is a digit to Python, not a
    count); a count beyond any table's length is as good as the largest one."""
    digits = rest.lstrip("0")
    if not (rest.isascii() and rest.isdigit()) or not digits:
        raise _error(text, offset + 1, f"{word} needs a positive whole number, such as {word} 5")
    return int(digits) if len(digits) <= 18 else MAX_ROWS


def _head(piece: str) -> tuple[str, str]:
    """The first word and the stripped rest (any whitespace separates)."""
    parts = piece.split(None, 1)
    return (parts[0], parts[1].strip()) if len(parts) == 2 else (piece.strip(), "")


def _pattern_text(piece: str) -> tuple[str, str]:
    """A name pattern at the start of ``piece`` (quoted if it holds spaces) and what follows."""
    if piece[:1] in "\"'":
        end = piece.index(piece[0], 1)  # split_top has checked that every quote is closed
        return piece[1:end], piece[end + 1 :].strip()
    return _head(piece)


def _match(text: str, piece: str, offset: int) -> Match:
    pattern, tail = _pattern_text(piece)
    if tail and piece[:1] in "\"'":
        column = offset + len(piece) - len(tail) + 1
        raise _error(text, column, f"unexpected {tail!r} after the quoted name pattern")
    if tail:
        word = piece.split()[0]
        column = offset + len(piece) - len(tail) + 1
        if tail.startswith("||"):
            raise _error(
                text,
                column,
                "'||' means 'or' inside a where condition; stages are separated by one '|'",
            )
        close = difflib.get_close_matches(word, KEYWORDS, n=1, cutoff=0.6)
        if close:
            raise _error(text, offset + 1, f"{word!r} is not a stage; did you mean {close[0]!r}?")
        if "/" in word or ":" in word or "*" in word:
            raise _error(
                text,
                column,
                f"unexpected {tail.split()[0]!r} after the name pattern {word!r}; separate "
                "stages with '|' (a name pattern with spaces must be quoted)",
            )
        raise _error(
            text,
            offset + 1,
            f"{word!r} is not a stage ({', '.join(KEYWORDS)}); "
            "a name pattern with spaces must be quoted",
        )
    return Match(_compile(pattern, offset))


def _compile(pattern: str, offset: int) -> Pattern:
    try:
        return compile_pattern(pattern)
    except UserError as exc:
        raise UserError(f"query syntax error at column {offset + 1}: {exc}") from None


def _near(text: str, word: str, rest: str, offset: int) -> Near:
    pattern, tail = _pattern_text(rest)
    prefix = word
    if tail:
        found = re.fullmatch(r"as\s+(\S+)", tail)
        if not found or not _NAME.fullmatch(found.group(1)):
            column = offset + len(rest) - len(tail) + 1
            raise _error(text, column, f"expected 'as NAME' after the {word} pattern")
        prefix = found.group(1)
    return Near(word, _compile(pattern, offset), prefix)


def _list(text: str, rest: str, offset: int) -> list[tuple[str, int]]:
    items = split_top(rest, ",", offset)
    for item, column in items:
        if not item:
            raise _error(text, column + 1, "empty item in a comma-separated list")
    return items


def _unique(text: str, names: list[tuple[str, int]]) -> None:
    """Reject a second output column of the same name (pandas would silently keep one)."""
    seen: set[str] = set()
    for name, offset in names:
        if name in seen:
            raise _error(text, offset + 1, f"duplicate column {name!r}; rename one with 'as'")
        seen.add(name)


def _plain_path(item: str) -> str | None:
    """``item`` as a column path: ``a.b`` as written, or any name in backticks; else None."""
    if _PATH.fullmatch(item):
        return item
    quoted = _QUOTED_PATH.fullmatch(item)
    return quoted.group(1) if quoted else None


def _renamed(text: str, item: str, offset: int) -> tuple[str, str | None]:
    """Split ``source as name``; the name is None when there is no ``as``. Only a
    whitespace-separated ``as`` outside quotes, backticks and brackets renames (`` `a as b` ``
    is a column name)."""
    words = [word for word in split_top(_SPACE.sub(" ", item), " ") if word[0]]
    if words[-1][0] == "as":
        raise _error(text, offset + len(item) + 1, "expected a column name after 'as'")
    if len(words) < 3 or words[-2][0] != "as":
        return item, None
    name, at = words[-1]
    if not _NAME.fullmatch(name):
        raise _error(text, offset + at + 1, f"{name!r} is not a column name")
    return item[: words[-2][1]].strip(), name


def _operand(text: str, source: str, offset: int, name: str | None = None) -> Column:
    """A column path, or else a computation (parsed now, so its errors point into ``text``)."""
    path = _plain_path(source)
    if path is not None:
        return Column(source, name or path, path=path)
    try:
        computed = arithmetic.parse(source)
    except expr.ExpressionError as exc:
        raise _error(text, offset + exc.column, exc.reason) from None
    return Column(source, name or source, computed=computed)


def _column(text: str, item: str, offset: int) -> Column:
    source, name = _renamed(text, item, offset)
    return _operand(text, source, offset, name)


def _sort_key(text: str, item: str, offset: int) -> tuple[str, bool]:
    order = ""
    column = item
    found = re.fullmatch(r"(.*?)\s+(asc|desc)", item, re.DOTALL)
    if found:
        column, order = found.group(1), found.group(2)
    path = _plain_path(column)
    if path is None:
        raise _error(text, offset + 1, "sort keys look like 'column' or 'column desc'")
    return path, order != "desc"


def _group(text: str, rest: str, offset: int) -> Group:
    parts = split_top(rest, ":", offset)
    if len(parts) > 2:
        raise _error(text, parts[2][1], "group has one ':' between keys and aggregates")
    if len(parts) == 1 and _AGG.match(rest) and not _plain_path(rest):
        raise _error(
            text,
            offset + 1,
            "aggregates follow a ':': 'group KEY: mean(x)' per key, or 'group: mean(x)' "
            "over all rows",
        )
    keys = []
    names = []
    listed = _list(text, parts[0][0], parts[0][1]) if parts[0][0] else []
    if not listed and (len(parts) == 1 or not parts[1][0]):
        raise _error(text, offset + 1, "group needs keys, aggregates or both: group k: count()")
    for key, column in listed:
        path = _plain_path(key)
        if path is None:
            raise _error(text, column + 1, f"{key!r} is not a column to group by")
        keys.append(path)
        names.append((path, column))
    aggregates = []
    if len(parts) == 2 and parts[1][0]:
        for item, column in _list(text, parts[1][0], parts[1][1]):
            aggregates.append(_aggregate(text, item, column))
            names.append((aggregates[-1].name, column))
    if not aggregates:
        aggregates = [Aggregate("count", None, "count")]
    _unique(text, names)
    return Group(tuple(keys), tuple(aggregates))


def _aggregate(text: str, item: str, offset: int) -> Aggregate:
    call, name = _renamed(text, item, offset)
    found = _AGG.match(call)
    if not found:
        raise _error(text, offset + 1, "aggregates look like mean(column) or count()")
    func, argument = found.group(1), found.group(2).strip()
    if func not in AGGREGATES:
        raise _error(
            text, offset + 1, f"unknown aggregate {func!r}; use one of {', '.join(AGGREGATES)}"
        )
    if not argument:
        if func != "count":
            raise _error(text, offset + len(func) + 2, f"{func}() needs a column or expression")
        return Aggregate(func, None, name or "count")
    inside = found.group(2)
    argument_offset = offset + found.start(2) + len(inside) - len(inside.lstrip())
    q = None
    if func == "quantile":
        argument, q = _quantile_argument(text, argument, argument_offset)
    column = _operand(text, argument, argument_offset)
    default = f"{func}_{column.path}" if column.is_path else call
    if q is not None and column.is_path:
        default = f"p{q * 100:g}_{column.path}"
    return Aggregate(func, column, name or default, q)


def _quantile_argument(text: str, argument: str, offset: int) -> tuple[str, float]:
    """``x, 0.9`` -> ("x", 0.9)."""
    parts = split_top(argument, ",", offset)
    usage = "quantile needs a column and a fraction between 0 and 1: quantile(loss, 0.9)"
    if len(parts) != 2:
        raise _error(text, offset + 1, usage)
    (column, _), (fraction, at) = parts
    try:
        q = float(fraction)
    except ValueError:
        raise _error(text, at + 1, usage) from None
    if not 0 <= q <= 1:
        raise _error(text, at + 1, usage)
    return column, q


def _pivot(text: str, rest: str, offset: int) -> Pivot:
    """``ROWKEY, ... by COLUMNKEY: VALUE`` (VALUE a column or an aggregate)."""
    usage = "pivot looks like 'pivot k by exp.name: val_acc' or '... : mean(val_acc)'"
    parts = split_top(rest, ":", offset)
    if len(parts) != 2 or not parts[1][0]:
        raise _error(text, offset + 1, usage)
    (left, left_at), (value, value_at) = parts
    words = split_top(_SPACE.sub(" ", left), " ", left_at)
    cut = [i for i, (word, _) in enumerate(words) if word == "by"]
    if len(cut) != 1 or cut[0] in (0, len(words) - 1):
        raise _error(text, left_at + 1, usage)
    rows_text = left[: words[cut[0]][1] - left_at].strip()
    column_text, column_at = " ".join(w for w, _ in words[cut[0] + 1 :]), words[cut[0] + 1][1]
    rows = []
    for key, at in _list(text, rows_text, left_at):
        path = _plain_path(key)
        if path is None:
            raise _error(text, at + 1, f"{key!r} is not a column to pivot by")
        rows.append(path)
    column = _plain_path(column_text)
    if column is None:
        raise _error(text, column_at + 1, f"{column_text!r} is not a column to pivot by")
    if _AGG.match(value) and not _plain_path(value):
        aggregate = _aggregate(text, value, value_at)
        return Pivot(tuple(rows), column, aggregate, single=False)
    source = _operand(text, value, value_at)
    return Pivot(tuple(rows), column, Aggregate("first", source, source.name), single=True)
