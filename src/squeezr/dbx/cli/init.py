"""``dbx init [PATH]``: make a folder a dbx repository (idempotent)."""

from __future__ import annotations

import argparse

from squeezr import dbx


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "init", help="create a repository (a folder with .dbx/)", description=__doc__
    )
    parser.add_argument("path", nargs="?", default=".", help="folder to use (default: .)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    repo = dbx.Repository.init(args.path)
    print(f"dbx repository at {repo.path}")
    return 0
