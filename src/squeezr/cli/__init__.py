"""The ``squeezr`` command line. Each subcommand is a module in this package with ``register``."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from squeezr import __version__
from squeezr.dbx.clikit import build_parser, run

# Subcommand modules, in the order `squeezr --help` lists them.
COMMANDS: list[str] = ["train", "prune", "compare", "demo", "report"]


def main(argv: Sequence[str] | None = None) -> int:
    modules = [importlib.import_module(f"squeezr.cli.{name}") for name in COMMANDS]
    parser = build_parser(
        "squeezr", "Block-by-block pruning of residual networks.", modules, __version__
    )
    return run(parser, argv)
