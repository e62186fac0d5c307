"""The resume state of a pruning run: written atomically after every completed step (and
within a step, see :mod:`squeezr.prune.loop`), and checked when read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from squeezr.dbx.errors import UserError
from squeezr.prune.config import PruneConfig
from squeezr.torchfiles import load_torch_file, save_torch_file

STATE_VERSION = 4
"""4: the chapter-4 strategies (blocks set aside for phasing, blocks since the last loop)."""
STATE_FILE = "prune-state.pt"


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the resume state atomically: a crash leaves the previous state or the new one."""
    save_torch_file(state, path, make_folder=True)


def load_state(path: Path, cfg: PruneConfig) -> dict[str, Any] | None:
    """The saved resume state of a run with settings ``cfg``, or None when the run never got
    that far. A damaged file, another format or other settings are UserErrors; the device is
    not compared, so a run may continue on another device."""
    if not path.is_file():
        return None
    start_over = (
        f"start a new run, or delete {path.name} and {path.stem}.*.pt beside it to start this "
        "one over"
    )
    state = load_torch_file(path, "pruning resume state", start_over)
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise UserError(
            f"{path} is not a pruning resume state of this squeezr version; {start_over}"
        )
    if _without_device(state.get("config")) != _without_device(cfg.params()):
        raise UserError(
            f"the resume state {path} was written with different pruning settings; "
            "resume with the original settings or start a new run"
        )
    return state


def _without_device(config: Any) -> Any:
    return {k: v for k, v in config.items() if k != "device"} if isinstance(config, dict) else None
