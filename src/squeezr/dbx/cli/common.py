"""Plumbing shared by the ``dbx`` subcommands: the ``--repo`` and selection options, finding
the repository they name, and how ids and nested values look in a table."""

from __future__ import annotations

import argparse

from squeezr.clikit import cell
from squeezr.dbx.store import Repository

__all__ = ["add_repo_option", "add_selection_options", "cell", "repository", "short_id"]

SHORT_ID = 8
REPO_HELP = "repository folder (default: $DBX_REPO, else the nearest enclosing one)"


def add_repo_option(parser: argparse.ArgumentParser) -> None:
    """``--repo`` after the subcommand. ``dbx --repo X ls`` works too: the top-level parser
    has the same option, and this one sets nothing unless given, so it never overrides it."""
    parser.add_argument("--repo", default=argparse.SUPPRESS, help=REPO_HELP)


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    """The ``dbx ls`` selection flags, shared with ``missing`` and ``query``."""
    parser.add_argument("prefix", nargs="?", help="only experiments whose name starts with this")
    parser.add_argument("--kind", help="only experiments of this kind (train, prune, ...)")
    parser.add_argument("--since", help="created since: a duration (7d, 12h, 30m) or ISO date")
    parser.add_argument(
        "--where", help="condition on params/results, e.g. \"params.lr < 0.1 and kind == 'train'\""
    )


def repository(args: argparse.Namespace) -> Repository:
    """The repository named by ``--repo``, else ``$DBX_REPO``, else the nearest enclosing one."""
    return Repository.find(getattr(args, "repo", None))


def short_id(exp_id: str, fmt: str) -> str:
    """Tables show the first 8 hex digits of an id; JSON and CSV keep it whole."""
    return exp_id[:SHORT_ID] if fmt == "table" else exp_id
