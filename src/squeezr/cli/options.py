"""Flags and flag parsers that several ``squeezr`` subcommands share, so they read alike."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from typing import Any

from squeezr.dbx.errors import UserError


def add_repo_option(parser: argparse.ArgumentParser, *, creates: bool) -> None:
    """``--repo``, resolved by dbx (None = ``$DBX_REPO``, else the enclosing repository);
    ``creates``: a command that records an experiment makes ``./experiments`` if there is none."""
    default = "$DBX_REPO, else the enclosing one" + (", else ./experiments" if creates else "")
    parser.add_argument("--repo", help=f"dbx repository (default: {default})")


def parse_milestones(text: str | None) -> tuple[int, ...] | None:
    """``None`` → default schedule; ``"none"`` → constant lr; ``"250,375"`` → (250, 375)."""
    if text is None:
        return None
    if text.strip().lower() in ("none", ""):
        return ()
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise UserError(
            f"--milestones must be epochs like 250,375 or 'none', got {text!r}"
        ) from None


def parse_count(text: str) -> int:
    """A whole number written as ``1000000``, ``1_000_000``, ``1e6`` or ``2.5e6`` (argparse
    ``type`` for budgets such as ``--target-params``)."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a whole number such as 850000 or 8.5e5, got {text!r}"
        )
    return int(value)


def add_strict_option(parser: argparse.ArgumentParser) -> None:
    """``--strict``: an experiment name that several experiments share is an error instead of
    meaning the newest finished one (squeezr.dbx.refs)."""
    from squeezr.dbx.cli.common import STRICT_HELP

    parser.add_argument("--strict", action="store_true", help=STRICT_HELP)


def repo_arg(args: argparse.Namespace) -> Any:
    """``--repo`` as the library takes it: the path (or None) as given, or with ``--strict``
    the Repository itself, set to refuse shared names (when it exists yet: a command that
    creates the repository has nothing to look up in it)."""
    from squeezr.dbx.store import Repository

    if not getattr(args, "strict", False):
        return args.repo
    try:
        repo = Repository.find(args.repo)
    except UserError:
        return args.repo
    repo.strict = True
    return repo


class ResumeHint:
    """``with ResumeHint("prune") as hint: ...start(announce=hint)``: after Ctrl-C, once the
    experiment exists, stderr gets the exact command that continues it."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.exp: Any = None

    def __call__(self, exp: Any) -> None:
        self.exp = exp

    def __enter__(self) -> ResumeHint:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        if kind is KeyboardInterrupt and self.exp is not None:
            print(
                f"squeezr: stopped; continue it with: {resume_command(self.command, self.exp)}",
                file=sys.stderr,
                flush=True,
            )
        return False


def resume_command(command: str, exp: Any) -> str:
    """``squeezr train|prune --resume <id> --repo <path>``, quoted for a POSIX shell."""
    return f"squeezr {command} --resume {exp.id} --repo {shlex.quote(str(exp.repo.path))}"
