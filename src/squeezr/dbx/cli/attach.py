"""``dbx attach EXP FILE [--name NAME]``: copy a file into an experiment, with its checksum.

Attaching does not start a run (unlike ``dbx log``): the attachment list records when the
file was added. Python: ``exp.attach(path)``.
"""

from __future__ import annotations

import argparse

from squeezr.dbx.cli import common


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers, "attach", __doc__, main, help="attach a file to an experiment"
    )
    common.add_experiment_argument(parser)
    parser.add_argument("file", help="file to copy into the experiment's files/")
    parser.add_argument("--name", help="name inside files/ (default: the file's name)")
    common.add_repo_option(parser)


def main(args: argparse.Namespace) -> int:
    info = common.repository(args).get(args.ref).attach(args.file, name=args.name)
    print(f"attached {info['path']} ({info['size']} bytes, sha256 {info['sha256']})")
    return 0
