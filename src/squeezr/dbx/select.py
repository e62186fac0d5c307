"""Choosing experiments: name prefix, kind, creation time, a where-condition, sort and limit.

``dbx ls``, ``dbx query``, ``dbx missing`` and the Python API (:func:`find`, ``dbx.frame``)
all pick experiments through :func:`select_experiments`, so the same options always mean the
same set. An experiment is seen by the where-language, the sort keys and the columns as one
record (:meth:`Experiment.value <squeezr.dbx.store.Experiment.value>`): ``id``, ``name``,
``kind``, ``created`` and the nested ``params.*`` / ``results.*`` (``exp.<field>`` is accepted
as an alias of the top-level fields, as in log queries). Any other root is a UserError listing
these, so a typo such as ``param.lr`` cannot silently match nothing. Run fields (status, host)
are not part of the record: reading every run file would make listing several times slower;
``dbx show`` has them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from squeezr.dbx import expr, jsonx
from squeezr.dbx.errors import UserError
from squeezr.dbx.store import FIELDS, Experiment, Repository, log_paths
from squeezr.dbx.timeutil import parse_since

__all__ = [
    "check_paths",
    "check_wanted",
    "find",
    "missing",
    "select_experiments",
    "sort_experiments",
]

_SORT_KEY = re.compile(r"-?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


def check_paths(paths: Iterable[str], what: str) -> None:
    """UserError if a path does not start with a root an experiment has (``params``, ...)."""
    for path in paths:
        head, _, rest = path.partition(".")
        valid = (
            head in ("params", "results")
            or (head in FIELDS and not rest)
            or (head == "exp" and rest in FIELDS)
        )
        if not valid:
            raise UserError(
                f"{what} {path!r} is not a field of an experiment; use params.<key>, "
                "results.<key>, id, name, kind or created (exp.<field> is an alias)"
            )


def select_experiments(
    repo: Repository,
    prefix: str | None = None,
    kind: str | None = None,
    since: str | datetime | None = None,
    where: str | expr.Expr | None = None,
    sort: str | Iterable[str] | None = None,
    limit: int | None = None,
) -> list[Experiment]:
    """The experiments of ``repo`` that match every given criterion, sorted and cut to ``limit``.

    ``since`` is a datetime, a duration (``7d``, ``12h``) or an ISO date; ``where`` a
    where-language condition (docs/dbx-expressions.md); ``sort`` a comma-separated list (or a
    list) of keys such as ``kind,-results.acc``: a leading ``-`` sorts descending and
    experiments lacking a key sort last either way. Without ``sort`` the order is the
    repository's (name, then id).
    """
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be a positive number (got {limit})")
    condition = expr.parse(where) if isinstance(where, str) else where
    if condition is not None:
        check_paths(sorted(condition.paths()), "--where")
    cutoff = None if since is None else parse_since(since)
    keys = _sort_keys(sort)
    chosen = []
    for exp in repo.experiments(prefix=prefix, kind=kind):
        if cutoff is not None:
            created = exp.created
            if created is None or created < cutoff:
                continue
        if condition is not None and not condition.evaluate(exp.value):
            continue
        chosen.append(exp)
    if keys:
        chosen = sort_experiments(chosen, keys)
    return chosen[:limit] if limit is not None else chosen


def find(
    prefix: str | None = None,
    *,
    kind: str | None = None,
    since: str | datetime | None = None,
    where: str | None = None,
    sort: str | Iterable[str] | None = None,
    limit: int | None = None,
    repo: Repository | Path | str | None = None,
) -> list[Experiment]:
    """``dbx ls`` in Python: the experiments of ``repo`` (default: ``$DBX_REPO`` or the
    nearest enclosing repository) chosen as :func:`select_experiments` chooses them.

    >>> dbx.find("prune/", kind="prune", where="results.best_val_acc > 0.9", sort="-created")
    """
    return select_experiments(
        Repository.find(repo),
        prefix=prefix,
        kind=kind,
        since=since,
        where=where,
        sort=sort,
        limit=limit,
    )


def missing(
    experiments: Iterable[Experiment],
    events: Iterable[str] = (),
    results: Iterable[str] = (),
) -> list[tuple[Experiment, list[str]]]:
    """``dbx missing`` in Python: each experiment that lacks one of ``events`` (an event
    counts if its name is the given one or lies under it, ``NAME/...``) or ``results`` (dotted
    keys, ``results.`` optional), with what it lacks (``"event eval/test"``,
    ``"result test_acc"``) in the order asked. Experiments that lack nothing are left out."""
    events, results = check_wanted(events, results)
    found = []
    for exp in experiments:
        lacking = [f"event {name}" for name in events if not _has_event(exp, name)]
        lacking += [
            f"result {key}"
            for key in results
            if exp.value("results." + key.removeprefix("results.")) is expr.MISSING
        ]
        if lacking:
            found.append((exp, lacking))
    return found


def check_wanted(events: Iterable[str], results: Iterable[str]) -> tuple[list[str], list[str]]:
    """``events`` and ``results`` as lists, after checking that they ask for something and
    that no name is empty (UserError otherwise): :func:`missing`'s input check, which
    ``dbx missing`` runs before reading the repository."""
    events, results = list(events), list(results)
    if not events and not results:
        raise UserError("say what to look for: --event NAME and/or --result KEY")
    for name in events:
        if not isinstance(name, str) or not name.strip("/"):
            raise UserError(f"event name {name!r} is empty; give one such as eval/test")
    for key in results:
        if not isinstance(key, str) or not key.removeprefix("results."):
            raise UserError(f"result key {key!r} is empty; give one such as test_acc")
    return events, results


def _has_event(exp: Experiment, name: str) -> bool:
    """Whether a log of ``exp`` has an event ``name`` or one under it. The logs are parsed in
    file order, unsorted (only presence matters), and parsing stops at the first match."""
    exp.flush()  # a handle with an open run: its events so far count
    prefix = name.rstrip("/")
    under = prefix + "/"
    return any(
        event["name"] == prefix or event["name"].startswith(under)
        for path in log_paths(exp.path)
        for event in jsonx.iter_log(path)
    )


def _sort_keys(sort: str | Iterable[str] | None) -> list[str]:
    if sort is None:
        return []
    items = sort.split(",") if isinstance(sort, str) else list(sort)
    keys = [item.strip() for item in items if item.strip()]
    for key in keys:
        if not _SORT_KEY.fullmatch(key):
            raise UserError(
                f"cannot sort by {key!r}; use field paths such as created or -results.acc"
            )
    check_paths([key.lstrip("-") for key in keys], "--sort key")
    return keys


def sort_experiments(experiments: list[Experiment], keys: Iterable[str]) -> list[Experiment]:
    """Sort by each key in turn (first key most significant); missing values always last."""
    ordered = list(experiments)
    for key in reversed(list(keys)):
        descending = key.startswith("-")
        path = key.lstrip("-")
        values = {id(exp): exp.value(path) for exp in ordered}
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
