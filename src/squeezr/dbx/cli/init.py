"""``dbx init [PATH]``: make a folder a dbx repository (idempotent)."""

from __future__ import annotations

import argparse

from squeezr import dbx
from squeezr.dbx.cli import common


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers, "init", __doc__, main, help="create a repository (a folder with .dbx/)"
    )
    parser.add_argument("path", nargs="?", default=".", help="folder to use (default: .)")


def main(args: argparse.Namespace) -> int:
    repo = dbx.Repository.init(args.path)
    print(f"dbx repository at {repo.path}")
    return 0
