"""What ``dbx plot`` and ``dbx table`` share: where the data comes from (a log query or the
experiments' own table, chosen like ``dbx ls``), the output options, and the canonical
command line written into each script's header. Nothing heavy is imported here."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from squeezr.dbx import clikit
from squeezr.dbx.cli import common
from squeezr.dbx.errors import UserError

SOURCE_HELP = (
    "QUERY is a log query (docs/dbx-query.md); PREFIX, --kind, --since and --where choose the "
    "experiments as dbx ls does. With --experiments there is no QUERY: the rows are the "
    "experiments themselves (columns name, kind, params.*, results.*)."
)


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """``[QUERY] [PREFIX]``, ``--experiments``, the selection flags and ``--repo``."""
    parser.add_argument(
        "source", nargs="*", metavar="QUERY [PREFIX]", help="log query, then a name prefix"
    )
    parser.add_argument(
        "--experiments",
        action="store_true",
        help="plot/tabulate the experiments' params and results instead of a log query",
    )
    parser.add_argument("--kind", help="only experiments of this kind (train, prune, ...)")
    parser.add_argument("--since", help="created since: a duration (7d, 12h, 30m) or ISO date")
    parser.add_argument("--where", help="condition on params/results, as in dbx ls --where")
    common.add_repo_option(parser)
    parser.add_argument(
        "--mean-se",
        action="store_true",
        help="average rows that share the other keys; show mean ± standard error",
    )
    parser.add_argument("--json", action="store_true", help="print the files written as JSON")


def source(args: argparse.Namespace) -> dict[str, Any]:
    """The data source the positionals and flags name (see ``squeezr.dbx.report.data``)."""
    from squeezr.dbx.report.outputs import figure_source

    given = list(args.source)
    if args.experiments:
        if len(given) > 1:
            raise UserError("with --experiments give at most a name PREFIX (there is no query)")
        query, prefix = None, (given[0] if given else None)
    else:
        if not given:
            raise UserError("give a log QUERY (or --experiments to use params and results)")
        if len(given) > 2:
            raise UserError(f"expected QUERY [PREFIX], got {len(given)} arguments: quote the query")
        query, prefix = given[0], (given[1] if len(given) > 1 else None)
    selection = {"prefix": prefix, "kind": args.kind, "since": args.since, "where": args.where}
    return figure_source(query, getattr(args, "repo", None), selection)


def names(text: str | None, option: str) -> list[str]:
    """A comma-separated list of column names (``--rows method,schedule``)."""
    items = [item.strip() for item in (text or "").split(",")]
    if text is not None and not all(items):
        raise UserError(f"{option} takes column names separated by commas, got {text!r}")
    return [item for item in items if item]


def command_line(prog: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The command as a canonical, copyable line: positionals, then every option that differs
    from its default, in the parser's order (so the same command always writes the same
    header, whatever the order it was typed in)."""
    words = prog.split()
    for action in parser._actions:
        if action.dest in ("help", "func") or not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        if not action.option_strings:
            words += list(value) if isinstance(value, list) else [value]
        elif value == action.default or value is None:
            continue
        elif action.nargs == 0:
            words.append(action.option_strings[-1])
        else:
            for item in value if isinstance(value, list) else [value]:
                words += [action.option_strings[-1], str(item)]
    return shlex.join(str(word) for word in words)


def report_written(written: dict[str, Any], as_json: bool) -> None:
    """Print the files written, one per line (or as a JSON object)."""
    files = [*map(str, written["outputs"]), str(written["data"]), str(written["script"])]
    if as_json:
        clikit.emit([{"file": name} for name in files], "json")
    else:
        print("\n".join(files))
