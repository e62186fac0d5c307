"""One function per page: each computes the page's data from a :class:`Source`; the routes
render that one result as HTML (a template) or as JSON (the page's ``.json`` twin, which
the charts fetch), so the UI has no private API.

Every input comes from the URL's query string, so every view has a URL that can be shared.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from squeezr.dbx.errors import UserError
from squeezr.dbx.runs import STATUSES
from squeezr.dbx.server.web import plotdata
from squeezr.dbx.server.web.source import Source, Summary
from squeezr.dbx.views import flatten

PAGE_SIZE = 200  # experiment rows per list page
TREE_CHILDREN = 100  # children shown under an open tree node
AUTO_COLUMNS = 6  # param and result columns picked when none are asked for


# --- the experiment list and tree -------------------------------------------------------------


def experiments_page(
    source: Source,
    prefix: str = "",
    kind: str = "",
    where: str = "",
    sort: str = "",
    columns: str = "",
    offset: int = 0,
) -> dict[str, Any]:
    """The tree of all (kind/where-matching) experiments by name, and the list of those
    under ``prefix``, sorted, with chosen (or automatically picked) param/result columns."""
    if offset < 0:
        raise UserError(f"offset must be 0 or more (got {offset})")
    everything = source.summaries(kind=kind or None, where=where or None, sort=sort or None)
    prefix = prefix.strip("/")
    listed = [s for s in everything if not prefix or _under(s["name"], prefix)]
    chosen = _columns(columns, listed)
    page = listed[offset : offset + PAGE_SIZE]
    rows = [{**_row_head(s), "cells": [_cell(s, c) for c in chosen]} for s in page]
    return {
        "prefix": prefix,
        "kind": kind,
        "where": where,
        "sort": sort,
        "columns": chosen,
        "total": len(listed),
        "matching": len(everything),  # under any prefix: the tree's root
        "offset": offset,
        "limit": PAGE_SIZE,
        "states": _count_states(listed),
        "kinds": dict(Counter(s["kind"] for s in listed).most_common()),
        "tree": tree(everything, prefix),
        "experiments": rows,
    }


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + "/")


def _count_states(summaries: list[Summary]) -> dict[str, int]:
    counts = Counter(s["status"] for s in summaries)
    return {state: counts[state] for state in STATUSES if counts[state]}


def _row_head(s: Summary) -> dict[str, Any]:
    return {k: s[k] for k in ("id", "name", "kind", "status", "created")}


def _cell(s: Summary, column: str) -> Any:
    root, _, rest = column.partition(".")
    flat = flatten(s[root]) if root in ("params", "results") else {}
    return flat.get(rest)


def _columns(asked: str, summaries: list[Summary]) -> list[str]:
    """The asked columns (``params.lr,results.acc``), else the params whose values differ
    among the listed experiments and the most common results, a few of each."""
    if asked:
        columns = [c.strip() for c in asked.split(",") if c.strip()]
        for column in columns:
            if not column.startswith(("params.", "results.")) or column.endswith("."):
                raise UserError(
                    f"column {column!r} is not a param or result; use params.<key> or results.<key>"
                )
        return columns
    sample = summaries[:2000]
    values: dict[str, set[str]] = {}
    for s in sample:
        for key, value in flatten(s["params"]).items():
            values.setdefault(key, set()).add(repr(value))
    varying = [f"params.{k}" for k, seen in values.items() if len(seen) > 1]
    results = Counter(key for s in sample for key in flatten(s["results"]))
    return sorted(varying)[:AUTO_COLUMNS] + [
        f"results.{k}" for k, _ in results.most_common(AUTO_COLUMNS)
    ]


def tree(summaries: list[Summary], selected: str = "") -> list[dict[str, Any]]:
    """The name hierarchy as rows ``{"path", "label", "depth", "count", "states", "kinds",
    "selected", "open", "leaf", "more"}`` in display order: the top level, and the children of
    the selected node and of its ancestors (at most TREE_CHILDREN each, ``more`` counting the
    rest on the last one shown), so 10,000 experiments give a tree a person can read."""
    # Counted per full name first (names repeat across seeds), then into each ancestor; plain
    # dicts, not Counters: 10,000 names make tens of thousands of nodes.
    per_name: dict[str, dict[tuple[str, str], int]] = {}
    for s in summaries:
        counts = per_name.setdefault(s["name"], {})
        key = (s["status"], s["kind"])
        counts[key] = counts.get(key, 0) + 1
    nodes: dict[str, dict[str, Any]] = {}
    children: dict[str, list[str]] = {}
    for name, counts in per_name.items():
        parts = name.split("/")
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            node = nodes.get(path)
            if node is None:
                node = nodes[path] = {
                    "path": path,
                    "label": parts[depth - 1],
                    "depth": depth - 1,
                    "count": 0,
                    "states": {},
                    "kinds": {},
                }
                children.setdefault("/".join(parts[: depth - 1]), []).append(path)
            for (state, kind), n in counts.items():
                node["count"] += n
                node["states"][state] = node["states"].get(state, 0) + n
                node["kinds"][kind] = node["kinds"].get(kind, 0) + n
    open_paths = {""} | {
        "/".join(selected.split("/")[:n]) for n in range(1, selected.count("/") + 2) if selected
    }
    rows: list[dict[str, Any]] = []

    def visit(parent: str) -> None:
        kids = sorted(children.get(parent, []), key=_natural)
        shown = kids[:TREE_CHILDREN]
        for path in shown:
            node = nodes[path]
            rows.append(
                {
                    **node,
                    "states": {k: node["states"][k] for k in STATUSES if k in node["states"]},
                    "kinds": dict(sorted(node["kinds"].items(), key=lambda kv: -kv[1])),
                    "selected": path == selected,
                    "open": path in open_paths,
                    "leaf": path not in children,
                    "more": 0,
                }
            )
            if path in open_paths:
                visit(path)
        if len(kids) > len(shown) and rows:
            rows[-1]["more"] = len(kids) - len(shown)

    visit("")
    return rows


def _natural(text: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


# --- one experiment ---------------------------------------------------------------------------


def experiment_page(source: Source, ref: str) -> dict[str, Any]:
    """Everything about one experiment, plus suggested plots of its log."""
    data = source.experiment(ref)
    return {
        **data,
        "flat_params": flatten(data["params"]),
        "flat_results": flatten(data["results"]),
        "plots": suggest_plots(data["events"]["patterns"]),
    }


def progress_part(source: Source, ref: str) -> dict[str, Any]:
    """What the progress box of a (running) experiment shows; it refreshes itself."""
    data = source.experiment(ref)
    return {"id": data["id"], "status": data["status"], "progress": data["progress"]}


def suggest_plots(patterns: dict[str, int], limit: int = 8) -> list[dict[str, str]]:
    """Queries worth plotting, from event counts by name pattern (numbers as ``*``):
    every pattern with a number part, the last one captured (``train/epoch/*/eval`` gives
    ``train/epoch/:epoch/eval`` with x ``epoch``), most frequent first."""
    found: Counter[tuple[str, str]] = Counter()
    for shape, count in patterns.items():
        parts = shape.split("/")
        numbered = [i for i, part in enumerate(parts) if part == "*"]
        if not numbered or shape.startswith("progress/"):
            continue
        last = numbered[-1]
        before = parts[last - 1] if last else ""
        var = before if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", before) else "step"
        parts[last] = f":{var}"
        found["/".join(parts), var] += count
    return [{"query": q, "x": x} for (q, x), _ in found.most_common(limit)]


# --- comparing --------------------------------------------------------------------------------


def compare_page(source: Source, ids: list[str]) -> dict[str, Any]:
    """Two or more experiments side by side: what differs in their params and results, every
    result, and plots of their logs overlaid (grouped by experiment)."""
    refs = [ref for ref in dict.fromkeys(i.strip() for i in ids) if ref]
    if len(refs) < 2:
        raise UserError(
            "compare needs at least two experiments: tick them in the list, or give "
            "?id=A&id=B in the URL"
        )
    details = [source.experiment(ref) for ref in refs]
    full = [d["id"] for d in details]
    if len(set(full)) < len(full):
        raise UserError("the same experiment is named twice; compare different ones")
    flats = [flatten(d["results"]) for d in details]
    keys = sorted({k for flat in flats for k in flat})
    events: Counter[str] = Counter()
    for d in details:
        events.update(d["events"]["patterns"])
    return {
        "ids": full,
        "experiments": [
            {k: d[k] for k in ("id", "name", "kind", "status", "created")} for d in details
        ],
        "diff": source.diff(full),
        "results": [{"key": k, "values": [flat.get(k) for flat in flats]} for k in keys],
        "plots": suggest_plots(dict(events)),
    }


def like_page(source: Source, ref: str) -> dict[str, Any]:
    """Experiments whose params are closest to ``ref``'s ("find like this one")."""
    target = source.experiment(ref)
    return {
        "target": {k: target[k] for k in ("id", "name", "kind", "status")},
        "rows": source.like(target["id"]),
    }


# --- plotting ---------------------------------------------------------------------------------


def plot_page(
    source: Source,
    q: str = "",
    x: str = "",
    y: str = "",
    group: str = "",
    ids: list[str] | None = None,
    prefix: str = "",
    kind: str = "",
    where: str = "",
) -> dict[str, Any]:
    """A log query's result as chart series (see :mod:`plotdata`): the experiments are
    ``ids`` if given, else those chosen by ``prefix`` / ``kind`` / ``where``."""
    ids = [i for i in (ids or []) if i.strip()] or None
    page: dict[str, Any] = {
        "q": q,
        "x": x,
        "y": y,
        "group": group,
        "ids": ids or [],
        "prefix": prefix,
        "kind": kind,
        "where": where,
        "columns": [],
        "numeric": [],
        "rows": 0,
        "series": [],
        "points": 0,
        "downsampled": False,
        "truncated": 0,
    }
    if not q.strip():
        return page
    frame = source.query(q, ids, **_selection(prefix, kind, where))
    guess_x, guess_y = plotdata.default_axes(q, frame)
    page.update(
        x=x or guess_x,
        y=y or guess_y,
        columns=[str(c) for c in frame.columns],
        numeric=plotdata.numeric_columns(frame),
        rows=len(frame),
    )
    page.update(plotdata.series(frame, page["x"], page["y"], group))
    return page


def _selection(prefix: str, kind: str, where: str) -> dict[str, Any]:
    return {"prefix": prefix or None, "kind": kind or None, "where": where or None}
