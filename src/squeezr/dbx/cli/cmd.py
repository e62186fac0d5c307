"""``dbx cmd EXP`` (getcmd): the shell command that runs an experiment again, ready to edit.

Prints ``cd <cwd> && <command>`` (shell-quoted) preceded by comments naming the experiment,
run and git commit, so it can be pasted or saved as a script as is. The run is the
experiment's first (the one that created it; later runs are usually add-ons such as
``dbx log``) unless ``--run`` says otherwise. Secrets redacted when the run was recorded
appear as ``"${NAME:?...}"``: set NAME before running. Python: ``dbx.command(exp)``.
"""

from __future__ import annotations

import argparse

from squeezr.dbx.cli import common
from squeezr.dbx.runs import command


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers, "cmd", __doc__, main, help="the command line to run an experiment again"
    )
    common.add_experiment_argument(parser)
    parser.add_argument("--run", type=int, help="which run (default: the first, which created it)")
    common.add_repo_option(parser)


def main(args: argparse.Namespace) -> int:
    print(command(common.repository(args).get(args.ref), args.run))
    return 0
