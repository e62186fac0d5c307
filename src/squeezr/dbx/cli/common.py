"""Plumbing shared by the ``dbx`` subcommands: finding the repository and experiments, and
turning nested params/results into flat ``a.b`` columns for tables."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from squeezr import clikit, dbx

SHORT_ID = 8


def add_repo_option(parser: argparse.ArgumentParser) -> None:
    """``--repo``: every subcommand finds its repository the same way."""
    parser.add_argument(
        "--repo", help="repository folder (default: $DBX_REPO, else the nearest enclosing one)"
    )


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    """The ``dbx ls`` selection flags, shared with ``missing`` (``dbx query`` mirrors them)."""
    parser.add_argument("prefix", nargs="?", help="only experiments whose name starts with this")
    parser.add_argument("--kind", help="only experiments of this kind (train, prune, ...)")
    parser.add_argument("--since", help="created since: a duration (7d, 12h, 30m) or ISO date")
    parser.add_argument(
        "--where", help="condition on params/results, e.g. \"params.lr < 0.1 and kind == 'train'\""
    )


def repository(args: argparse.Namespace) -> Any:
    """The repository named by ``--repo``, else ``$DBX_REPO``, else the nearest enclosing one."""
    return dbx.Repository.find(getattr(args, "repo", None))


def open_experiment(ref: str, repo: Any) -> Any:
    """A read-only handle; ``ref`` is an id, a unique id prefix, or a name."""
    return dbx.open(ref, repo=repo)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b": leaf}``; lists and empty mappings are leaves."""
    if not isinstance(value, Mapping) or (prefix and not value):
        return {prefix: value} if prefix else {}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def cell(value: Any) -> Any:
    """A value as one table cell: scalars as they are, containers as compact JSON."""
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, default=str, separators=(",", ":"))
    return value


def label(exp: Any) -> str:
    """How an experiment is named in messages and column headers: short id and name."""
    return f"{exp.id[:SHORT_ID]} {exp.name}"


def emit(rows: list[dict[str, Any]], fmt: str) -> None:
    """``clikit.emit`` keeping values as they are: an absent value prints as an empty cell
    (``null`` in JSON), not as NaN, integers stay integers next to absent values, and lists
    and objects are compact JSON in tables and CSV (JSON output keeps them structured)."""
    import pandas as pd

    if fmt != "json":
        rows = [{key: cell(value) for key, value in row.items()} for row in rows]
    clikit.emit(pd.DataFrame(rows, dtype=object), fmt)
