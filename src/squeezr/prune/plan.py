"""The one check a pruning run passes before it spends compute or creates a record.

``plan_run`` validates the settings (including every fine-tuning loop's training settings),
the device, the selection data and the target against the starting model, and returns what
the loop needs from that: the parsed schedule, the device, the number of blocks to remove and
the selection split. ``squeezr prune`` makes the plan before ``dbx.create`` and hands it to
the loop (which makes its own when called without one), so a bad setting can neither leave
an empty experiment behind nor fail halfway through a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from squeezr import saliency
from squeezr.dbx.errors import UserError
from squeezr.models import ResNet
from squeezr.names import plural
from squeezr.prune.config import PruneConfig
from squeezr.schedules import Schedule, parse
from squeezr.train import resolve_device


@dataclass(frozen=True)
class RunPlan:
    """What a pruning run will do, derived from its settings, model and data."""

    cfg: PruneConfig
    schedule: Schedule
    device: torch.device
    total: int | None  # blocks to remove in all; None for a budget
    data: Any  # the selection split

    def loops_after(self) -> list[int] | None:
        """Blocks-removed counts after which a high loop runs (thresholds aside); None when
        that depends on the blocks chosen (a budget target)."""
        if self.total is None:
            return None
        return self.schedule.planned(self.total, self.cfg.blocks_per_step)

    def describe(self) -> str:
        """One line for the user before the run starts."""
        cfg, target = self.cfg, self.cfg.target
        if self.total is not None:
            goal = f"remove {plural(self.total, 'block')} ({cfg.blocks_per_step} per step)"
        else:
            goal = f"remove blocks until {target.kind} <= {target.value:,}"
        where = "validation set" if cfg.selection == "val" else "pruning set"
        return (
            f"plan: {goal} by {cfg.method} on the {where}, on {self.device}; "
            f"fine-tuning: {self._finetuning()}"
        )

    def _finetuning(self) -> str:
        schedule, epochs = self.schedule, self.cfg.epochs
        if schedule.never:
            return "none"
        marks = self.loops_after()
        when = (
            "after " + ", ".join(map(str, marks)) + " blocks removed"
            if marks is not None
            else f"at the schedule's marks ({schedule.text}) and at the end"
        )
        parts = [f"{epochs} epoch{'s' * (epochs != 1)} {when}"]
        if schedule.threshold is not None:
            parts.append(f"and whenever val accuracy drops by more than {schedule.threshold}")
        if schedule.low_epochs:
            parts.append(f"plus {plural(schedule.low_epochs, 'epoch')} after every step")
        return " ".join(parts)


def plan_run(model: ResNet, splits, cfg: PruneConfig) -> RunPlan:
    """Check everything about a run that can be checked up front; UserError otherwise."""
    cfg.validate()
    device = resolve_device(cfg.device)
    data = splits.val if cfg.selection == "val" else getattr(splits, "prune", None)
    if data is None:
        raise UserError(
            "--selection prune needs a pruning set; load the dataset with pruning_set=True"
        )
    if saliency.get(cfg.method).needs_data and len(data) == 0:
        raise UserError(
            f"saliency method {cfg.method!r} needs selection data, but the set is empty"
        )
    total = cfg.target.check(model)
    schedule = parse(cfg.schedule)
    schedule.check(total)
    return RunPlan(cfg, schedule, device, total, data)
