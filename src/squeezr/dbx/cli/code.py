"""``dbx code EXP [EXP2]``: the code diff between two experiments, or one and the working tree.

An experiment's code is its run's git commit plus the patch of uncommitted changes recorded
with it. Each version is rebuilt as a git tree with a throw-away index (``read-tree``, then
``apply --cached``), so nothing in the user's working tree or index is touched; ``git diff``
then compares two trees, or a tree with the working tree. ``--checkout BRANCH`` records that
tree as a commit on top of the experiment's commit, creates BRANCH there and checks it out.
Untracked files are never captured (runs only list them), so they cannot be restored.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from squeezr.dbx.cli import common, runs
from squeezr.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "code",
        help="code diff between experiments or against the working tree; check out their code",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("ref", metavar="EXP", help="id, id prefix or name")
    parser.add_argument("other", nargs="?", metavar="EXP2", help="compare with this one instead")
    parser.add_argument("--run", type=int, help="which run of EXP (default: the latest)")
    parser.add_argument("--stat", action="store_true", help="only a summary of changed files")
    parser.add_argument("--checkout", metavar="BRANCH", help="create BRANCH with EXP's code")
    parser.add_argument("-C", dest="git_dir", default=".", help="git working tree (default: .)")
    common.add_repo_option(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    git = Git(Path(args.git_dir))
    repo = common.repository(args)
    exp = common.open_experiment(args.ref, repo)
    if args.checkout and args.other:
        raise UserError("--checkout takes one experiment; drop EXP2")
    commit, tree = code_version(git, exp, runs.read_run(exp, args.run))
    if args.checkout:
        checkout(git, exp, commit, tree, args.checkout)
        return 0
    if args.other:
        other = common.open_experiment(args.other, repo)
        targets = [tree, code_version(git, other, runs.read_run(other))[1]]
    else:
        targets = [tree]  # against the working tree
    text = git.run("diff", *(["--stat"] if args.stat else []), *targets, "--")
    if not text:
        print("dbx: no code differences", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


class Git:
    """Runs git in one working tree; failures become UserErrors quoting git's message."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # Patches name paths from the top level; `git apply` in a subfolder would skip others.
        what = f"{folder} is not inside a git working tree"
        self.folder = Path(self.run("rev-parse", "--show-toplevel", what=what).strip())

    def run(
        self,
        *argv: str,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        what: str | None = None,
    ) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(self.folder), *argv],
                input=stdin,
                capture_output=True,
                text=True,
                env={**os.environ, **(env or {})},
                check=False,
            )
        except FileNotFoundError:
            raise UserError("git is not installed; install git to compare code") from None
        if done.returncode != 0:
            detail = done.stderr.strip().splitlines()
            reason = what or f"git {argv[0]} failed"
            raise UserError(f"{reason}: {detail[-1] if detail else 'no message'}")
        return done.stdout


def code_version(git: Git, exp: Any, record: dict[str, Any]) -> tuple[str, str]:
    """The run's commit and the git tree id of its code (the commit plus the recorded patch)."""
    commit = runs.git_info(record).get("commit")
    if not commit:
        raise UserError(
            f"experiment {common.label(exp)} has no git commit recorded "
            "(its run was not inside a git repository)"
        )
    git.run(
        "cat-file",
        "-e",
        f"{commit}^{{commit}}",
        what=f"commit {commit[:12]} of {common.label(exp)} is not in {git.folder}; "
        "run dbx code in a clone that has it (git fetch)",
    )
    patch = runs.patch_text(exp, record)
    if not patch:
        return commit, git.run("rev-parse", f"{commit}^{{tree}}").strip()
    with tempfile.TemporaryDirectory() as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        git.run("read-tree", commit, env=env)
        git.run(
            "apply",
            "--cached",
            "--binary",
            "-",
            env=env,
            stdin=patch,
            what=f"the recorded patch of {common.label(exp)} does not apply to {commit[:12]}",
        )
        return commit, git.run("write-tree", env=env).strip()


def checkout(git: Git, exp: Any, commit: str, tree: str, branch: str) -> None:
    """Create ``branch`` holding the experiment's code and switch to it.

    Without recorded changes the branch points at the run's commit; with them, at a new
    commit on top of it whose tree is the patched code.
    """
    git.run("check-ref-format", "--branch", branch, what=f"{branch!r} is not a valid branch name")
    target = commit
    if tree != git.run("rev-parse", f"{commit}^{{tree}}").strip():
        message = f"dbx: code of experiment {exp.id} {exp.name} (uncommitted changes of its run)"
        target = git.run("commit-tree", tree, "-p", commit, "-m", message).strip()
    git.run("branch", branch, target, what=f"cannot create branch {branch!r}")
    git.run(
        "checkout",
        branch,
        what=f"branch {branch} created but not checked out; commit or stash your changes first",
    )
    print(f"checked out {branch} at {target[:12]}: the code of {common.label(exp)}")
