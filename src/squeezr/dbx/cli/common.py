"""Plumbing shared by the ``dbx`` subcommands: their parsers, the ``--repo`` and selection
options, finding the repository they name, and how ids look in a table."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from squeezr.dbx.clikit import plain_text
from squeezr.dbx.compare import SHORT_ID
from squeezr.dbx.refs import SELECTOR_HELP
from squeezr.dbx.store import Repository

__all__ = [
    "add_command",
    "add_experiment_argument",
    "add_repo_option",
    "add_selection_options",
    "add_strict_option",
    "repository",
    "selection",
    "short_id",
]

REPO_HELP = "repository folder (default: $DBX_REPO, else the nearest enclosing one)"
EXP_HELP = f"id, id prefix or name (a shared name: the newest finished; {SELECTOR_HELP})"
STRICT_HELP = "refuse a name that several experiments share instead of taking the newest finished"


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    doc: str,
    main: Callable[[argparse.Namespace], int],
    *,
    help: str,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand's parser, running ``main``. ``dbx NAME --help`` describes it with the first
    line of its module's docstring ``doc`` (the rest is for readers of the code and the docs)
    and ends with ``epilog`` (examples) laid out as written."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=plain_text(doc.splitlines()[0]),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=main)
    return parser


def add_experiment_argument(parser: argparse.ArgumentParser) -> None:
    """The ``EXP`` positional (``args.ref``) of the commands about one experiment."""
    parser.add_argument("ref", metavar="EXP", help=EXP_HELP)
    add_strict_option(parser)


def add_strict_option(parser: argparse.ArgumentParser) -> None:
    """``--strict``: refuse a name that several experiments share instead of taking the newest
    finished one. Like ``--repo`` it also works before the subcommand (``dbx --strict ...``)."""
    parser.add_argument(
        "--strict", action="store_true", default=argparse.SUPPRESS, help=STRICT_HELP
    )


def add_repo_option(parser: argparse.ArgumentParser) -> None:
    """``--repo`` after the subcommand. ``dbx --repo X ls`` works too: the top-level parser
    has the same option, and this one sets nothing unless given, so it never overrides it."""
    parser.add_argument("--repo", default=argparse.SUPPRESS, help=REPO_HELP)


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    """The ``dbx ls`` selection flags, shared with ``missing`` and ``query``; :func:`selection`
    reads them back."""
    parser.add_argument("prefix", nargs="?", help="only experiments whose name starts with this")
    parser.add_argument("--kind", help="only experiments of this kind (train, prune, ...)")
    parser.add_argument("--since", help="created since: a duration (7d, 12h, 30m) or ISO date")
    parser.add_argument(
        "--where", help="condition on params/results, e.g. \"params.lr < 0.1 and kind == 'train'\""
    )


def selection(args: argparse.Namespace) -> dict[str, Any]:
    """The selection flags as keyword arguments of ``select_experiments`` and ``query.run``."""
    return {"prefix": args.prefix, "kind": args.kind, "since": args.since, "where": args.where}


def repository(args: argparse.Namespace) -> Repository:
    """The repository named by ``--repo``, else ``$DBX_REPO``, else the nearest enclosing one;
    with ``--strict`` its lookups refuse shared names."""
    repo = Repository.find(getattr(args, "repo", None))
    repo.strict = bool(getattr(args, "strict", False))
    return repo


def short_id(exp_id: str, fmt: str) -> str:
    """Tables show the first SHORT_ID (8) hex digits of an id; JSON and CSV keep it whole."""
    return exp_id[:SHORT_ID] if fmt == "table" else exp_id
