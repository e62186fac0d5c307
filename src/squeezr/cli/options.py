"""Parsers for flag values that several ``squeezr`` subcommands share, so they read alike."""

from __future__ import annotations

from squeezr.errors import UserError


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
