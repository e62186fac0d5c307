"""An experiment's exact code: diff it against another experiment or the working tree, or
check it out as a branch.

An experiment's code is its run's git commit plus the patch of uncommitted changes recorded
with it. Each version is rebuilt as a git tree with a throw-away index (``read-tree``, then
``apply --cached``), so nothing in the user's working tree or index is touched; ``git diff``
then compares two trees, or a tree with the working tree. :func:`checkout_code` records that
tree as a commit on top of the experiment's commit, creates a branch there and checks it out.
Untracked files are never captured (runs only list them), so they cannot be restored.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from squeezr.dbx.compare import label
from squeezr.dbx.errors import UserError
from squeezr.dbx.runs import git_info, patch_bytes, read_run
from squeezr.dbx.store import Experiment

__all__ = ["Git", "checkout_code", "code_diff", "code_version"]


class Git:
    """Runs git in one working tree; failures become UserErrors quoting git's message.

    git's output is read as bytes and decoded for display only (``errors="replace"``): a
    diff of source files that are not UTF-8 prints instead of failing, and a patch given to
    git goes in as the bytes that were recorded."""

    def __init__(self, folder: Path | str = ".") -> None:
        self.folder = Path(folder)
        # Patches name paths from the top level; `git apply` in a subfolder would skip others.
        what = f"{folder} is not inside a git working tree"
        self.folder = Path(self.run("rev-parse", "--show-toplevel", what=what).strip())

    def run(
        self,
        *argv: str,
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
        what: str | None = None,
    ) -> str:
        """git's stdout; a UserError starting with ``what`` (or "git X failed") on failure."""
        try:
            done = subprocess.run(
                ["git", "-C", str(self.folder), *argv],
                input=stdin,
                capture_output=True,
                env={**os.environ, **(env or {})},
                check=False,
            )
        except FileNotFoundError:
            raise UserError("git is not installed; install git to compare code") from None
        if done.returncode != 0:
            detail = _text(done.stderr).strip().splitlines()
            reason = what or f"git {argv[0]} failed"
            raise UserError(f"{reason}: {detail[-1] if detail else 'no message'}")
        return _text(done.stdout)


def _text(output: bytes) -> str:
    return output.decode("utf-8", errors="replace")


def code_version(git: Git, exp: Experiment, record: dict[str, Any]) -> tuple[str, str]:
    """The commit of run ``record`` and the git tree id of its code (the commit plus the
    recorded patch)."""
    commit = git_info(record).get("commit")
    if not isinstance(commit, str) or not commit:
        raise UserError(
            f"experiment {label(exp)} has no git commit recorded "
            "(its run was not inside a git repository)"
        )
    git.run(
        "cat-file",
        "-e",
        f"{commit}^{{commit}}",
        what=f"commit {commit[:12]} of {label(exp)} is not in {git.folder}; "
        "run dbx code in a clone that has it (git fetch)",
    )
    patch = patch_bytes(exp, record)
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
            what=f"the recorded patch of {label(exp)} does not apply to {commit[:12]}",
        )
        return commit, git.run("write-tree", env=env).strip()


def code_diff(
    exp: Experiment,
    other: Experiment | None = None,
    *,
    run: int | None = None,
    stat: bool = False,
    git_dir: Path | str = ".",
) -> str:
    """``git diff`` from ``exp``'s code to ``other``'s (its first run), or to the working tree
    of ``git_dir`` when ``other`` is None; "" when there is no difference."""
    versions = [(exp, read_run(exp, run))]  # the runs default to the first (squeezr.dbx.runs)
    if other is not None:
        versions.append((other, read_run(other)))
    git = Git(git_dir)
    targets = [code_version(git, version, record)[1] for version, record in versions]
    return git.run("diff", *(["--stat"] if stat else []), *targets, "--")


def checkout_code(
    exp: Experiment, branch: str, *, run: int | None = None, git_dir: Path | str = "."
) -> str:
    """Create ``branch`` holding ``exp``'s exact code and check it out; returns its commit.

    Without recorded changes the branch points at the run's commit; with them, at a new
    commit on top of it whose tree is the patched code.
    """
    record = read_run(exp, run)
    git = Git(git_dir)
    git.run("check-ref-format", "--branch", branch, what=f"{branch!r} is not a valid branch name")
    commit, tree = code_version(git, exp, record)
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
    return target
