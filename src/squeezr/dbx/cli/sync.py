"""``dbx sync SRC DST [PREFIX]``: copy experiments between repositories and servers.

SRC and DST are repository folders or server URLs (``http://host:port``; token from
``$DBX_TOKEN``), in any direction. Identity is the experiment id; logs merge by event id
(never duplicated), attachments are copied once and verified, results and notes merge by
the rules in docs/dbx.md. Interrupted? Run it again: it resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from squeezr.dbx import clikit
from squeezr.dbx.cli import common

EPILOG = """examples:
  dbx sync ./experiments http://dbx.lab:8765                 # push everything
  dbx sync http://dbx.lab:8765 ./experiments prune/ --kind prune
  dbx sync ./experiments /mnt/backup/experiments --dry-run"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "sync",
        __doc__,
        main,
        help="copy experiments between repositories/servers",
        epilog=EPILOG,
    )
    parser.add_argument("src", metavar="SRC", help="repository folder or server URL")
    parser.add_argument("dst", metavar="DST", help="repository folder (made if missing) or URL")
    common.add_selection_options(parser)
    parser.add_argument("--dry-run", action="store_true", help="show what would be copied")
    clikit.add_output_options(parser)


def main(args: argparse.Namespace) -> int:
    from squeezr.dbx.sync import sync, transport

    src = transport(args.src)
    dst = transport(args.dst, create=not args.dry_run, missing_ok=args.dry_run)
    actions = sync(src, dst, common.selection(args), dry_run=args.dry_run)
    if args.fmt != "table" or args.dry_run:
        rows = [{"action": a.kind, "id": a.exp_id, "key": a.key, **a.detail} for a in actions]
        if rows or args.fmt != "table":
            clikit.emit(rows, args.fmt)
    counts = Counter(a.kind for a in actions)
    verb = "would copy" if args.dry_run else "copied"
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "nothing"
    print(f"dbx sync: {verb} {summary} ({src.label} -> {dst.label})", file=sys.stderr)
    return 0
