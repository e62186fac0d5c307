"""The ``dbx`` command line. Each subcommand is a module in this package with ``register``;
the work itself is done by the library (``squeezr.dbx``), so every command has a Python
equivalent (docs/dbx.md)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from squeezr import __version__
from squeezr.dbx.cli.common import REPO_HELP, STRICT_HELP
from squeezr.dbx.clikit import build_parser, run

# Subcommand modules, in the order `dbx --help` lists them.
COMMANDS: list[str] = [
    "init",
    "ls",
    "show",
    "diff",
    "like",
    "cmd",
    "code",
    "log",
    "missing",
    "attach",
    "notes",
    "verify",
    "query",
    "plot",
    "table",
    "study",
    "tune",
    "ui",
    "serve",
    "token",
    "sync",
    "import",
]


def main(argv: Sequence[str] | None = None) -> int:
    modules = [importlib.import_module(f"squeezr.dbx.cli.{name}") for name in COMMANDS]
    parser = build_parser(
        "dbx",
        "Experiment management: find, compare, query and verify experiments.",
        modules,
        __version__,
    )
    parser.add_argument("--repo", help=REPO_HELP)
    parser.add_argument("--strict", action="store_true", help=STRICT_HELP)
    return run(parser, argv)
