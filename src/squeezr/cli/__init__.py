"""The ``squeezr`` command line. Each subcommand is a module in this package with ``register``.

Only the module of the command being run is imported (its imports load torch): the others
are listed from :data:`SUMMARIES`, so ``squeezr --help`` and ``squeezr --version`` start in
a fraction of a second. A module missing from :data:`SUMMARIES` is simply imported.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

from squeezr import __version__
from squeezr.dbx.clikit import build_parser, run

# Subcommand modules, in the order `squeezr --help` lists them.
COMMANDS: list[str] = ["train", "prune", "compare", "export", "report", "demo"]

# The commands each module adds, with their one-line help (tests/squeezr/test_cli_startup.py
# checks that the modules say the same).
SUMMARIES: dict[str, dict[str, str]] = {
    "train": {"train": "train a ResNet from scratch, recorded as a dbx experiment"},
    "prune": {"prune": "prune a trained ResNet block by block"},
    "compare": {
        "compare": "Kendall's tau between the block rankings of pruning runs",
        "ranking": "the block rankings of pruning runs at a step",
        "scratch": "train a pruned network's shape from scratch (baseline)",
    },
    "export": {"export": "write a trained or pruned network as TorchScript, ONNX or a state dict"},
    "report": {"report": "figures and results table of a set of pruning runs, with an index page"},
    "demo": {
        "demo": "train a ResNet-20 on digits, then prune it block by block (a few CPU minutes)"
    },
}


class _Listed:
    """Stands in for a subcommand module that is not run: adds its commands' names and help."""

    def __init__(self, commands: dict[str, str]) -> None:
        self.commands = commands

    def register(self, subparsers: Any) -> None:
        for name, help in self.commands.items():
            subparsers.add_parser(name, help=help, add_help=False)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    modules = [
        importlib.import_module(f"squeezr.cli.{name}")
        if name not in SUMMARIES or command in SUMMARIES[name]
        else _Listed(SUMMARIES[name])
        for name in COMMANDS
    ]
    parser = build_parser(
        "squeezr", "Block-by-block pruning of residual networks.", modules, __version__
    )
    return run(parser, argv)
