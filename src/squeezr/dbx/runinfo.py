"""What a run records about the program that ran it: enough to run it again.

Command line, interpreter, host, user, environment (secrets redacted) and the code version:
git commit, branch, remote, the patch of uncommitted changes (``git diff HEAD --binary``,
stored beside the run as ``run-<N>.patch``) and the untracked files. Outside a git working
tree, or without git installed, the git fields are null; capturing never fails a run.
"""

from __future__ import annotations

import getpass
import os
import platform
import re
import socket
import subprocess
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["capture", "describe_exception", "git_state", "now_iso", "redact_env"]

REDACTED = "<redacted>"
_SECRET = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
_GIT_TIMEOUT_S = 20


def now_iso() -> str:
    """The current time as an ISO 8601 UTC string with microseconds (sorts as text)."""
    return datetime.now(UTC).isoformat()


def redact_env(env: dict[str, str]) -> dict[str, str]:
    """The environment with the values of secret-looking variables replaced by ``<redacted>``
    (names containing TOKEN, KEY, SECRET, PASSWORD, PASSWD, CREDENTIAL or AUTH)."""
    return {
        name: REDACTED if _SECRET.search(name) else value for name, value in sorted(env.items())
    }


def _git(cwd: Path, *argv: str) -> str | None:
    """git's stdout, or None when git is missing, fails, or hangs."""
    try:
        done = subprocess.run(
            ["git", *argv],
            cwd=cwd,
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", errors="replace")


def git_state(cwd: Path) -> tuple[dict[str, Any], str]:
    """``(fields, patch)`` for the git working tree containing ``cwd``.

    ``fields``: commit, branch (null when detached), remote (URL of ``origin`` or the first
    remote), untracked (paths relative to the top level) and dirty; all null outside git.
    ``patch``: ``git diff HEAD --binary`` text ("" for a clean tree).
    """
    empty = {"commit": None, "branch": None, "remote": None, "untracked": [], "dirty": None}
    top = _git(cwd, "rev-parse", "--show-toplevel")
    if top is None:
        return empty, ""
    root = Path(top.strip())
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:  # a repository without commits yet
        return {**empty, "untracked": _untracked(root)}, ""
    branch = _git(root, "symbolic-ref", "--quiet", "--short", "HEAD")
    remotes = (_git(root, "remote") or "").split()
    remote = None
    if remotes:
        name = "origin" if "origin" in remotes else remotes[0]
        remote = (_git(root, "remote", "get-url", name) or "").strip() or None
    patch = _git(root, "diff", "HEAD", "--binary") or ""
    return {
        "commit": commit.strip(),
        "branch": branch.strip() if branch else None,
        "remote": remote,
        "untracked": _untracked(root),
        "dirty": bool(patch),
    }, patch


def _untracked(root: Path) -> list[str]:
    out = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    return [path for path in (out or "").split("\0") if path]


def capture(run: int, cwd: Path | None = None) -> tuple[dict[str, Any], str]:
    """The record of run number ``run`` of this process, and its git patch text."""
    cwd = Path.cwd() if cwd is None else cwd
    git, patch = git_state(cwd)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    record = {
        "run": run,
        "argv": list(sys.argv),
        "cwd": str(cwd),
        "python": {
            "executable": sys.executable,
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
        },
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "user": user,
        "pid": os.getpid(),
        "start": now_iso(),
        "end": None,
        "status": "running",
        "exit_code": None,
        "exception": None,
        "env": redact_env(dict(os.environ)),
        "git": {**git, "patch": None},
    }
    return record, patch


def describe_exception(exc: BaseException) -> dict[str, Any]:
    """type, message and formatted traceback of ``exc``, as a run records it."""
    return {
        "type": type(exc).__qualname__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }
