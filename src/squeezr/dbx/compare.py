"""Comparing experiments by their params: what differs (``diff``) and what is closest (``like``).

Both work on flattened params (``optimizer.lr``), compare values with the where-language's
typed equality (``60 == 60.0``, ``true != 1``) except that NaN equals NaN (two experiments
that both lost a metric do not differ in it), and treat a param present in only one
experiment as differing, so "the same run with more epochs" is exactly one difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from squeezr.dbx import expr
from squeezr.dbx.errors import UserError
from squeezr.dbx.store import Experiment
from squeezr.dbx.views import flatten

__all__ = ["ABSENT", "SHORT_ID", "diff", "label", "like", "same"]

ABSENT = "(absent)"  # how a param one experiment lacks is shown
SHORT_ID = 8  # hex digits of an id shown in tables and messages


def label(exp: Experiment, short: bool = True) -> str:
    """How an experiment is named in messages and column headers: (short) id and name."""
    return f"{exp.id[:SHORT_ID] if short else exp.id} {exp.name}"


def diff(experiments: Iterable[Experiment], results: bool = False) -> list[dict[str, Any]]:
    """The params (and results, if asked) that differ across two or more experiments.

    One row per differing leaf, ``{"key": "params.lr", "<label>": value, ...}``, keys sorted;
    columns are labelled ``"<short id> <name>"`` (full ids if short ones would clash), and a
    leaf an experiment lacks is ``"(absent)"``.
    """
    experiments = list(experiments)
    if len(experiments) < 2:
        raise UserError(f"diff needs at least two experiments, got {len(experiments)}")
    flats = []
    for exp in experiments:
        flat = flatten(exp.value("params"), "params")
        if results:
            flat.update(flatten(exp.results.tree(), "results"))
        flats.append(flat)
    labels = [label(exp) for exp in experiments]
    if len(set(labels)) < len(labels):
        labels = [label(exp, short=False) for exp in experiments]
    rows = []
    for key in sorted({key for flat in flats for key in flat}):
        values = [flat.get(key, ABSENT) for flat in flats]
        if any(not same(values[0], value) for value in values[1:]):
            rows.append({"key": key, **dict(zip(labels, values, strict=True))})
    return rows


def like(target: Experiment, others: Iterable[Experiment]) -> list[dict[str, Any]]:
    """``others`` ordered by closeness of their params to ``target``'s: rows with
    ``distance`` (number of differing leaf params), ``id``, ``name``, ``kind`` and ``differs``
    (``key=value`` of the other experiment, for each difference). Ties go to the newer one;
    ``target`` itself is left out."""
    wanted = flatten(target.value("params"))
    scored = []
    for exp in others:
        if exp.id == target.id:
            continue
        params = flatten(exp.value("params"))
        differs = [
            f"{key}={_text(params.get(key, ABSENT))}"
            for key in sorted(wanted.keys() | params.keys())
            if not same(wanted.get(key, expr.MISSING), params.get(key, expr.MISSING))
        ]
        created = exp.created
        scored.append((len(differs), -(created.timestamp() if created else 0.0), exp, differs))
    scored.sort(key=lambda item: item[:2])
    return [
        {
            "distance": distance,
            "id": exp.id,
            "name": exp.name,
            "kind": exp.kind,
            "differs": ", ".join(differs),
        }
        for distance, _, exp, differs in scored
    ]


_SCALARS = frozenset({str, int, float, bool, type(None)})


def same(a: Any, b: Any) -> bool:
    """Whether two param or result values are the same: :func:`squeezr.dbx.expr.equal`,
    applied through lists and objects, with NaN equal to NaN."""
    kind = type(a)
    if kind is type(b) and kind in _SCALARS:  # most values: no need for equal's type classes
        return a == b or (a != a and b != b)
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    return expr.equal(a, b)


def _text(value: Any) -> str:
    """A param value inside the ``differs`` text: JSON for containers, str otherwise."""
    from squeezr.dbx import jsonx

    if isinstance(value, (dict, list, tuple)):
        return jsonx.encode(value)
    return str(value)
