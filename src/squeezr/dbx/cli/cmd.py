"""``dbx cmd EXP`` (getcmd): the shell command that runs an experiment again, ready to edit.

Prints ``cd <cwd> && <command>`` (shell-quoted with ``shlex.join``) preceded by comments
naming the experiment, run and git commit, so it can be pasted or saved as a script as is.
"""

from __future__ import annotations

import argparse
import shlex

from squeezr.dbx.cli import common, runs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cmd",
        help="the command line to run an experiment again",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("ref", metavar="EXP", help="id, id prefix or name")
    parser.add_argument("--run", type=int, help="which run (default: the latest)")
    common.add_repo_option(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    exp = common.open_experiment(args.ref, common.repository(args))
    record = runs.read_run(exp, args.run)
    for line in comments(exp, record):
        print(f"# {line}")
    print(command(record))
    return 0


def command(record: dict) -> str:
    """``cd <cwd> && <argv>``, quoted for a POSIX shell."""
    argv = runs.command_line(record)
    cwd = record.get("cwd")
    return f"cd {shlex.quote(cwd)} && {shlex.join(argv)}" if cwd else shlex.join(argv)


def comments(exp: object, record: dict) -> list[str]:
    """Which experiment and run this is, and the code version it ran."""
    lines = [f"dbx experiment {common.label(exp)}, run {record['run']}"]
    git = runs.git_info(record)
    if git.get("commit"):
        branch = f" (branch {git['branch']})" if git.get("branch") else ""
        lines.append(f"git commit {git['commit']}{branch}")
        if runs.patch_text(exp, record):
            lines.append(f"plus uncommitted changes: dbx code {exp.id} --checkout BRANCH")
    else:
        lines.append("no git commit recorded")
    return lines
