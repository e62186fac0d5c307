"""What a run records about the program that ran it: enough to run it again.

Command line (``argv`` and the interpreter's own ``orig_argv``, so ``python -m pkg`` and
``python -c`` runs can be rebuilt), interpreter, host, user, environment and the code
version: git commit, branch, remote, the patch of uncommitted changes (``git diff HEAD
--binary``, stored byte for byte beside the run as ``run-<N>.patch``: source files need not
be UTF-8) and the untracked files. Outside a git
working tree, or without git installed, the git fields are null; capturing never fails a run.

Secrets are redacted before anything is written, by one rule for the command line, the
environment and the git remote (:mod:`squeezr.dbx.redact`).
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from squeezr.dbx.redact import REDACTED, is_secret_name, redact_argv, redact_env, redact_text
from squeezr.dbx.timeutil import now_iso

__all__ = [
    "REDACTED",
    "capture",
    "describe_exception",
    "git_state",
    "is_secret_name",
    "redact_argv",
    "redact_env",
]

_GIT_TIMEOUT_S = 20
_TRACEBACK_LIMIT = 16_000  # characters; a RecursionError would otherwise store ~130 KB
_MESSAGE_LIMIT = 2_000


def _git(cwd: Path, *argv: str) -> str | None:
    """git's stdout as text, or None when git is missing, fails, or hangs."""
    out = _git_bytes(cwd, *argv)
    return None if out is None else out.decode("utf-8", errors="replace")


def _git_bytes(cwd: Path, *argv: str) -> bytes | None:
    """git's stdout as it is, or None when git is missing, fails, or hangs."""
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
    return done.stdout


def git_state(cwd: Path) -> tuple[dict[str, Any], bytes]:
    """``(fields, patch)`` for the git working tree containing ``cwd``.

    ``fields``: commit, branch (null when detached), remote (URL of ``origin`` or the first
    remote), untracked (paths relative to the top level) and dirty; all null outside git.
    ``patch``: ``git diff HEAD --binary`` as git wrote it (b"" for a clean tree).
    """
    empty = {"commit": None, "branch": None, "remote": None, "untracked": [], "dirty": None}
    top = _git(cwd, "rev-parse", "--show-toplevel")
    if top is None:
        return empty, b""
    root = Path(top.strip())
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:  # a repository without commits yet
        return {**empty, "untracked": _untracked(root)}, b""
    branch = _git(root, "symbolic-ref", "--quiet", "--short", "HEAD")
    remotes = (_git(root, "remote") or "").split()
    remote = None
    if remotes:
        name = "origin" if "origin" in remotes else remotes[0]
        remote = redact_text((_git(root, "remote", "get-url", name) or "").strip()) or None
    patch = _git_bytes(root, "diff", "HEAD", "--binary") or b""
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


def capture(cwd: Path | None = None) -> tuple[dict[str, Any], bytes]:
    """The record of a run of this process (``run`` still null: the caller numbers it), and
    its git patch (bytes). Slow when git is (a large tree): call it outside any lock."""
    cwd = Path.cwd() if cwd is None else cwd
    git, patch = git_state(cwd)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    record = {
        "run": None,
        "argv": redact_argv([str(arg) for arg in sys.argv]),
        "orig_argv": redact_argv([str(arg) for arg in getattr(sys, "orig_argv", sys.argv)]),
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
    """type, message and formatted traceback of ``exc``, as a run records it; a very long
    traceback or message keeps its beginning and its end (where the error is)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        "type": type(exc).__qualname__,
        "message": _bounded(str(exc), _MESSAGE_LIMIT),
        "traceback": _bounded(text, _TRACEBACK_LIMIT),
    }


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head, tail = limit // 4, limit - limit // 4
    cut = len(text) - head - tail
    return f"{text[:head]}\n... [{cut:,} characters cut] ...\n{text[-tail:]}"
