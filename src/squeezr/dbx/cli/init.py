"""``dbx init [PATH]``: make a folder a dbx repository (idempotent).

The folder is PATH, else the one ``--repo`` names (before or after ``init``), else the
current folder; ``$DBX_REPO`` is not used: it names a repository to find, not one to make.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from squeezr import dbx
from squeezr.dbx.cli import common
from squeezr.dbx.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers, "init", __doc__, main, help="create a repository (a folder with .dbx/)"
    )
    parser.add_argument("path", nargs="?", help="folder to use (default: --repo, else .)")
    common.add_repo_option(parser)


def main(args: argparse.Namespace) -> int:
    option = getattr(args, "repo", None)
    if args.path is not None and option is not None and not _same_folder(args.path, option):
        raise UserError(f"give the folder once: PATH {args.path!r} and --repo {option!r} differ")
    repo = dbx.Repository.init(args.path or option or ".")
    print(f"dbx repository at {repo.path}")
    return 0


def _same_folder(a: str, b: str) -> bool:
    """Whether two spellings name one folder (``x`` and ``./x``, a path and a link to it)."""
    return Path(a).resolve() == Path(b).resolve()
