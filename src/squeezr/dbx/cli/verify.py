"""``dbx verify``: check a repository's files (JSON format, torn log lines, checksums).

Run it after copying or syncing a repository, or after a crash. Prints one problem per line
and exits with status 1 if there are any, 0 otherwise. ``--repair`` first cuts a crash-torn
last line off every log (keeping the original as ``log-N.jsonl.bak``), then checks.
"""

from __future__ import annotations

import argparse

from squeezr.dbx.cli import common


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "verify",
        __doc__,
        main,
        help="check a repository's files and attachment checksums",
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="cut crash-torn last log lines first (the original is kept as log-N.jsonl.bak)",
    )
    common.add_repo_option(parser)


def main(args: argparse.Namespace) -> int:
    repo = common.repository(args)
    if args.repair:
        for done in repo.repair_logs():
            print(done)
    problems = repo.verify()
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {repo.path}")
        return 1
    print(f"{problems.checked} experiment(s) in {repo.path}: no problems")
    return 0
