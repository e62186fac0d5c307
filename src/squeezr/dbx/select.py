"""Choosing experiments: name prefix, kind, creation time, a where-condition, sort and limit.

``dbx ls``, ``dbx query`` and ``dbx missing`` all pick experiments through this one function,
so the same flags always mean the same set. An experiment is seen by the where-language and
the sort keys as one record: ``id``, ``name``, ``kind``, ``created`` and the nested
``params.*`` / ``results.*`` (``exp.<field>`` is accepted as an alias of the top-level fields,
as in log queries).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from squeezr.dbx import expr
from squeezr.errors import UserError

__all__ = [
    "created_at",
    "experiment_lookup",
    "parse_since",
    "select_experiments",
    "sort_experiments",
]

FIELDS = ("id", "name", "kind", "created")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def experiment_lookup(exp: Any) -> expr.Lookup:
    """The where-language view of one experiment; results are read once, on first use."""
    cache: dict[str, Any] = {}

    def section(head: str) -> Any:
        if head not in cache:  # one plain-dict read per experiment, however many paths
            cache[head] = dict(getattr(exp, head))
        return cache[head]

    def lookup(path: str) -> Any:
        head, _, rest = path.partition(".")
        if head == "exp" and rest in FIELDS:
            head, rest = rest, ""
        if head in ("params", "results"):
            return expr.dig(section(head), rest)
        if head in FIELDS and not rest:
            value = getattr(exp, head, expr.MISSING)
            return value.isoformat() if isinstance(value, datetime) else value
        return expr.MISSING

    return lookup


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d`` / ``12h`` / ``30m`` / ``90s`` / ``2w`` ago, or an ISO date/time (local if naive)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(text)
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(
            f"cannot read --since {text!r}; give a duration such as 7d, 12h, 30m "
            "or an ISO date such as 2024-05-31 or 2024-05-31T14:00"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def created_at(exp: Any) -> datetime | None:
    """An experiment's creation time as an aware datetime (the store may keep ISO or epoch)."""
    value = getattr(exp, "created", None)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.astimezone()


def select_experiments(
    repo: Any,
    prefix: str | None = None,
    kind: str | None = None,
    since: str | datetime | None = None,
    where: str | expr.Expr | None = None,
    sort: str | Iterable[str] | None = None,
    limit: int | None = None,
) -> list[Any]:
    """The experiments of ``repo`` that match every given criterion, sorted and cut to ``limit``.

    ``sort`` is a comma-separated list (or a list) of keys such as ``kind,-results.acc``; a
    leading ``-`` sorts descending; experiments lacking a key sort last either way. Without
    ``sort`` the order is the repository's.
    """
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be a positive number (got {limit})")
    condition = expr.parse(where) if isinstance(where, str) else where
    cutoff = parse_since(since) if isinstance(since, str) else since
    if cutoff is not None and cutoff.tzinfo is None:
        cutoff = cutoff.astimezone()
    keys = _sort_keys(sort)
    chosen = []
    for exp in repo.experiments(prefix=prefix, kind=kind):
        if cutoff is not None:
            created = created_at(exp)
            if created is None or created < cutoff:
                continue
        if condition is not None and not condition.evaluate(experiment_lookup(exp)):
            continue
        chosen.append(exp)
    if keys:
        chosen = sort_experiments(chosen, keys)
    return chosen[:limit] if limit is not None else chosen


def _sort_keys(sort: str | Iterable[str] | None) -> list[str]:
    if sort is None:
        return []
    items = sort.split(",") if isinstance(sort, str) else list(sort)
    keys = [item.strip() for item in items if item.strip()]
    for key in keys:
        if not re.fullmatch(r"-?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", key):
            raise UserError(
                f"cannot sort by {key!r}; use field paths such as created or -results.acc"
            )
    return keys


def sort_experiments(experiments: list[Any], keys: Iterable[str]) -> list[Any]:
    """Sort by each key in turn (first key most significant); missing values always last."""
    ordered = list(experiments)
    lookups = {id(exp): experiment_lookup(exp) for exp in ordered}
    for key in reversed(list(keys)):
        descending = key.startswith("-")
        path = key.lstrip("-")
        values = {id(exp): lookups[id(exp)](path) for exp in ordered}
        present = [exp for exp in ordered if not _is_absent(values[id(exp)])]
        absent = [exp for exp in ordered if _is_absent(values[id(exp)])]
        present.sort(key=lambda exp: _rank(values[id(exp)]), reverse=descending)
        ordered = present + absent
    return ordered


def _is_absent(value: Any) -> bool:
    return value is expr.MISSING or value is None or (isinstance(value, float) and value != value)


def _rank(value: Any) -> tuple[int, Any]:
    """A total order over mixed JSON values: numbers, then strings, then booleans, then others."""
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, (int, float)):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (3, repr(value))
