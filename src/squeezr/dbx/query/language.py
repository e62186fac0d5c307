"""Parsing a query string into stages, with errors that point at the column.

A query is a pipeline, ``stage | stage | ...``, each stage turning a log (a table of events)
into another. The grammar is in docs/dbx-query.md. Filter expressions are handed to the shared
``squeezr.dbx.expr`` language (the one ``dbx ls --where`` uses), so there is one filter syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from squeezr.dbx import expr
from squeezr.dbx.query.pattern import Pattern, compile_pattern
from squeezr.errors import UserError

KEYWORDS = ("match", "where", "select", "before", "after", "first", "last", "sort", "group")
AGGREGATES = ("count", "mean", "std", "se", "min", "max", "first", "last", "sum")

_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_AS = re.compile(r"^(.*?)\s+as\s+(\S+)\s*$", re.DOTALL)
_AGG = re.compile(r"^([A-Za-z_]+)\s*\((.*)\)$", re.DOTALL)


@dataclass(frozen=True)
class Match:
    """Keep events whose name matches; captured levels become columns."""

    pattern: Pattern


@dataclass(frozen=True)
class Where:
    """Keep rows for which the expression holds."""

    condition: expr.Expr
    text: str


@dataclass(frozen=True)
class Column:
    """One output column: a column path or a computed (pandas ``eval``) expression, renamed."""

    source: str
    name: str
    is_path: bool


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
class Sort:
    """Order rows by columns (``desc`` per key), stably."""

    keys: tuple[tuple[str, bool], ...]  # (column, ascending)


@dataclass(frozen=True)
class Aggregate:
    """``func(argument) as name``; ``argument`` is None for ``count()``."""

    func: str
    argument: Column | None
    name: str


@dataclass(frozen=True)
class Group:
    """One row per distinct key tuple, with aggregates over the rows (across experiments)."""

    keys: tuple[str, ...]
    aggregates: tuple[Aggregate, ...]


Stage = Match | Where | Select | Near | Take | Sort | Group


@dataclass(frozen=True)
class Query:
    """A parsed query: its text and its stages, in order."""

    text: str
    stages: tuple[Stage, ...] = field(default_factory=tuple)


def _error(text: str, column: int, message: str) -> UserError:
    near = text[column - 1 : column + 19]
    where = f" near {near!r}" if near.strip() else " at the end"
    return UserError(f"query syntax error at column {column}{where}: {message}")


def split_top(text: str, separator: str, offset: int) -> list[tuple[str, int]]:
    """Split on ``separator`` outside quotes and brackets; each piece with its 0-based offset.

    Pieces are stripped; offsets point at the first non-blank character of each piece.
    """
    pieces: list[tuple[str, int]] = []
    depth = 0
    quote = ""
    quote_start = start = index = 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
            quote_start = index
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == separator and depth == 0:
            pieces.append((text[start:index], start))
            start = index + 1
        index += 1
    if quote:
        raise _error(text, offset + quote_start + 1, f"unclosed {quote} quote")
    pieces.append((text[start:], start))
    result = []
    for piece, start in pieces:
        lead = len(piece) - len(piece.lstrip())
        result.append((piece.strip(), offset + start + lead))
    return result


def parse(text: str) -> Query:
    """Parse a query string; raise UserError naming the column of the first problem."""
    if not text.strip():
        raise UserError("empty query; start with an event-name pattern such as train/epoch/:epoch")
    stages = []
    for piece, offset in split_top(text, "|", 0):
        if not piece:
            raise _error(text, offset + 1, "empty stage between |")
        stages.append(_stage(text, piece, offset))
    return Query(text, tuple(stages))


def _stage(text: str, piece: str, offset: int) -> Stage:
    word, rest = _head(piece)
    rest_offset = offset + len(piece) - len(rest)
    if word not in KEYWORDS:
        return _match(text, piece, offset)
    if not rest:
        raise _error(text, offset + len(word) + 1, f"{word} needs an argument")
    if word == "match":
        return _match(text, rest, rest_offset)
    if word == "where":
        try:
            return Where(expr.parse(rest), rest)
        except UserError as exc:
            found = re.match(r"bad expression at column (\d+): (.*)", str(exc))
            if not found:
                raise
            raise _error(text, rest_offset + int(found.group(1)), found.group(2)) from None
    if word == "select":
        return Select(tuple(_column(text, p, o) for p, o in _list(text, rest, rest_offset)))
    if word in ("before", "after"):
        pattern_text, tail = _head(rest)
        prefix = word
        if tail.strip():
            found = re.fullmatch(r"as\s+(\S+)", tail.strip())
            if not found or not _NAME.fullmatch(found.group(1)):
                column = rest_offset + len(pattern_text) + 2
                raise _error(text, column, f"expected 'as NAME' after the {word} pattern")
            prefix = found.group(1)
        return Near(word, _match(text, pattern_text, rest_offset).pattern, prefix)
    if word in ("first", "last"):
        if not rest.isdigit() or int(rest) < 1:
            raise _error(text, rest_offset + 1, f"{word} needs a positive whole number")
        return Take(word, int(rest))
    if word == "sort":
        return Sort(tuple(_sort_key(text, p, o) for p, o in _list(text, rest, rest_offset)))
    return _group(text, rest, rest_offset)


def _head(piece: str) -> tuple[str, str]:
    """The first word and the stripped rest (any whitespace separates)."""
    parts = piece.split(None, 1)
    return (parts[0], parts[1].strip()) if len(parts) == 2 else (piece.strip(), "")


def _match(text: str, piece: str, offset: int) -> Match:
    if len(piece.split()) > 1:
        word = piece.split()[0]
        raise _error(
            text,
            offset + 1,
            f"{word!r} is not a stage ({', '.join(KEYWORDS)}) and a name pattern has no spaces",
        )
    try:
        return Match(compile_pattern(piece))
    except UserError as exc:
        raise UserError(f"query syntax error at column {offset + 1}: {exc}") from None


def _list(text: str, rest: str, offset: int) -> list[tuple[str, int]]:
    items = split_top(rest, ",", offset)
    for item, column in items:
        if not item:
            raise _error(text, column + 1, "empty item in a comma-separated list")
    return items


def _column(text: str, item: str, offset: int) -> Column:
    renamed = _AS.match(item)
    source, name = (renamed.group(1).strip(), renamed.group(2)) if renamed else (item, item)
    if renamed and not _NAME.fullmatch(name):
        raise _error(text, offset + item.rindex(name) + 1, f"{name!r} is not a column name")
    return Column(source, name, bool(_PATH.fullmatch(source)))


def _sort_key(text: str, item: str, offset: int) -> tuple[str, bool]:
    column, order = _head(item)
    if not _PATH.fullmatch(column) or order not in ("", "asc", "desc"):
        raise _error(text, offset + 1, "sort keys look like 'column' or 'column desc'")
    return column, order != "desc"


def _group(text: str, rest: str, offset: int) -> Group:
    parts = split_top(rest, ":", offset)
    if len(parts) > 2:
        raise _error(text, parts[2][1], "group has one ':' between keys and aggregates")
    keys = []
    for key, column in _list(text, parts[0][0], parts[0][1]):
        if not _PATH.fullmatch(key):
            raise _error(text, column + 1, f"{key!r} is not a column to group by")
        keys.append(key)
    aggregates = []
    if len(parts) == 2 and parts[1][0]:
        aggregates = [_aggregate(text, p, o) for p, o in _list(text, parts[1][0], parts[1][1])]
    if not aggregates:
        aggregates = [Aggregate("count", None, "count")]
    return Group(tuple(keys), tuple(aggregates))


def _aggregate(text: str, item: str, offset: int) -> Aggregate:
    renamed = _AS.match(item)
    call = renamed.group(1).strip() if renamed else item
    found = _AGG.match(call)
    if not found:
        raise _error(text, offset + 1, "aggregates look like mean(column) or count()")
    func, argument = found.group(1), found.group(2).strip()
    if func not in AGGREGATES:
        raise _error(
            text, offset + 1, f"unknown aggregate {func!r}; use one of {', '.join(AGGREGATES)}"
        )
    if not argument and func != "count":
        raise _error(text, offset + len(func) + 2, f"{func}() needs a column or expression")
    column = Column(argument, argument, bool(_PATH.fullmatch(argument))) if argument else None
    if renamed:
        name = renamed.group(2)
    elif column is None:
        name = "count"
    else:
        name = f"{func}_{argument}" if column.is_path else call
    return Aggregate(func, column, name)
