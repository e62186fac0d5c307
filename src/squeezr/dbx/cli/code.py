"""``dbx code EXP [EXP2]``: the code diff between two experiments, or one and the working tree.

An experiment's code is its first run's git commit plus the patch of uncommitted changes
recorded with it (``--run`` picks another run). ``--checkout BRANCH`` creates BRANCH with
that exact code and checks it out. Nothing in your working tree or index is touched
otherwise. Exit status 1 when there is no difference. Python: ``dbx.code_diff``,
``dbx.checkout_code``.
"""

from __future__ import annotations

import argparse
import sys

from squeezr.dbx.cli import common
from squeezr.dbx.code import checkout_code, code_diff
from squeezr.dbx.compare import label
from squeezr.dbx.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "code",
        __doc__,
        main,
        help="code diff between experiments or against the working tree; check out their code",
    )
    common.add_experiment_argument(parser)
    parser.add_argument("other", nargs="?", metavar="EXP2", help="compare with this one instead")
    parser.add_argument("--run", type=int, help="which run of EXP (default: the first)")
    parser.add_argument("--stat", action="store_true", help="only a summary of changed files")
    parser.add_argument("--checkout", metavar="BRANCH", help="create BRANCH with EXP's code")
    parser.add_argument("-C", dest="git_dir", default=".", help="git working tree (default: .)")
    common.add_repo_option(parser)


def main(args: argparse.Namespace) -> int:
    if args.checkout and args.other:
        raise UserError("--checkout takes one experiment; drop EXP2")
    repo = common.repository(args)
    exp = repo.get(args.ref)
    if args.checkout:
        target = checkout_code(exp, args.checkout, run=args.run, git_dir=args.git_dir)
        print(f"checked out {args.checkout} at {target[:12]}: the code of {label(exp)}")
        return 0
    other = repo.get(args.other) if args.other else None
    text = code_diff(exp, other, run=args.run, stat=args.stat, git_dir=args.git_dir)
    if not text:
        print("dbx: no code differences", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0
