"""Shared plumbing for the ``squeezr`` and ``dbx`` command lines.

Both CLIs are argparse programs whose subcommands live in their own modules; each such module
defines ``register(subparsers)`` which adds its parser and sets ``func`` (``args -> int``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from squeezr.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser(
    prog: str, description: str, modules: Iterable[Any], version: str
) -> argparse.ArgumentParser:
    """Create the top-level parser and let each subcommand module register itself."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {version}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in modules:
        module.register(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and dispatch; user errors become one line on stderr and exit code 2."""
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(func(args) or 0)
    except UserError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `dbx ls | head`
        return 0


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """Add the ``--json`` / ``--csv`` switches used by every command that prints rows."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", dest="fmt", action="store_const", const="json", help="print JSON")
    group.add_argument("--csv", dest="fmt", action="store_const", const="csv", help="print CSV")
    parser.set_defaults(fmt="table")


def emit(rows: Any, fmt: str = "table", file=None) -> None:
    """Print a pandas DataFrame or a list of dicts as an aligned table, JSON lines array, or CSV."""
    import pandas as pd
    from tabulate import tabulate

    out = file or sys.stdout
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if fmt == "json":
        records = frame.to_dict(orient="records")
        out.write(json.dumps(records, indent=1, default=str, allow_nan=True) + "\n")
    elif fmt == "csv":
        frame.to_csv(out, index=False)
    elif fmt == "table":
        if frame.empty and not len(frame.columns):
            return
        out.write(tabulate(frame, headers="keys", tablefmt="simple", showindex=False) + "\n")
    else:
        raise UserError(f"unknown output format {fmt!r}; use table, json or csv")
