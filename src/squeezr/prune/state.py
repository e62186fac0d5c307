"""The resume state of a pruning run: written atomically after every completed step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from squeezr.dbx.fileio import atomic_path
from squeezr.errors import UserError

STATE_VERSION = 2
STATE_FILE = "prune-state.pt"


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the resume state atomically: a crash leaves the previous state or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict[str, Any] | None:
    """The saved resume state, or None when the run never completed a step."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("version") != STATE_VERSION:
        raise UserError(f"resume state {path} has an unknown format; start the run again")
    return state
