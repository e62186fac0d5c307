"""The resume state of a pruning run: written atomically after every completed step."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from squeezr.errors import UserError

STATE_VERSION = 1
STATE_FILE = "prune-state.pt"


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the resume state atomically: a crash leaves the previous state or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(path: Path) -> dict[str, Any] | None:
    """The saved resume state, or None when the run never completed a step."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("version") != STATE_VERSION:
        raise UserError(f"resume state {path} has an unknown format; start the run again")
    return state
