"""Flags and flag parsers that several ``squeezr`` subcommands share, so they read alike."""

from __future__ import annotations

import argparse

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
