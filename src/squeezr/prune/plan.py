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
from squeezr.blocknet import BlockNet
from squeezr.dbx.errors import UserError
from squeezr.names import plural
from squeezr.prune import channels
from squeezr.prune.config import PruneConfig
from squeezr.prune.replace import windows
from squeezr.schedules import Schedule, parse
from squeezr.tasks import ImageClassification, task_of
from squeezr.train import resolve_device


@dataclass(frozen=True)
class RunPlan:
    """What a pruning run will do, derived from its settings, model and data."""

    cfg: PruneConfig
    schedule: Schedule
    device: torch.device
    total: int | None  # blocks to remove in all; None for a budget
    data: Any  # the selection split
    budget_epochs: dict[int, int] | None = None  # --total-budget: epochs of each high loop

    def loop_epochs(self, after: int) -> int:
        """Epochs of the high loop after ``after`` blocks removed: ``--epochs``, or that
        loop's share of the ``--total-budget`` fine-tuning epochs."""
        if self.budget_epochs is None:
            return self.cfg.epochs
        return self.budget_epochs[after]

    def loops_after(self) -> list[int] | None:
        """Blocks-removed counts after which a high loop runs (thresholds aside); None when
        that depends on the blocks chosen (a budget target)."""
        if self.total is None:
            return None
        return self.schedule.planned(self.total, per_step(self.cfg))

    def describe(self) -> str:
        """One line for the user before the run starts."""
        cfg, target = self.cfg, self.cfg.target
        if self.total is not None:
            goal = f"remove {plural(self.total, 'block')} ({per_step(cfg)} per step)"
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
        if self.budget_epochs is not None:
            cfg = self.cfg
            split = "+".join(str(self.budget_epochs[m]) for m in marks)
            parts = [
                f"{split} epochs {when} (budget {cfg.total_budget} = {cfg.initial_epochs} "
                f"initial + {sum(self.budget_epochs.values())} fine-tuning)"
            ]
        else:
            parts = [f"{epochs} epoch{'s' * (epochs != 1)} {when}"]
        if schedule.threshold is not None:
            parts.append(f"and whenever val accuracy drops by more than {schedule.threshold}")
        if schedule.low_epochs:
            parts.append(f"plus {plural(schedule.low_epochs, 'epoch')} after every step")
        return " ".join(parts) + strategies_text(self.cfg)


def strategies_text(cfg: PruneConfig) -> str:
    """The plan line's part naming the strategies in use ("" for plain pruning)."""
    parts = []
    if cfg.phase:
        how = "" if cfg.phase_mode == "linear" else f" ({cfg.phase_mode} per {cfg.phase_sample})"
        lazy = "lazily, before each loop" if cfg.lazy else "at every step"
        parts.append(f"phased out over {plural(cfg.phase, 'epoch')}{how}, {lazy}")
    if cfg.equalise:
        parts.append("groups equalised")
    if cfg.replace:
        parts.append(f"windows of {cfg.replace} replaced by one {cfg.replace_init} block")
    if cfg.distill:
        parts.append(f"distillation α={cfg.distill[0]:g}, T={cfg.distill[1]:g}")
    if cfg.local:
        parts.append(f"local training of {cfg.local[0]} before / {cfg.local[1]} after")
    if cfg.then:
        parts.append(channels.parse(cfg.then).describe())
    return "".join(f"; {p}" for p in parts)


def per_step(cfg: PruneConfig) -> int:
    """Blocks a step removes (net): ``--blocks-per-step``, or K − 1 with ``--replace K``."""
    return cfg.replace - 1 if cfg.replace else cfg.blocks_per_step


def plan_run(model: BlockNet, splits, cfg: PruneConfig) -> RunPlan:
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
    check_strategies(cfg, schedule, total, model)
    if cfg.distill is not None and not isinstance(task_of(splits), ImageClassification):
        raise UserError("--distill matches a classifier's outputs; drop it for language models")
    budget = budget_split(cfg, schedule, total)
    return RunPlan(cfg, schedule, device, total, data, budget)


def check_strategies(cfg: PruneConfig, schedule: Schedule, total: int | None, model) -> None:
    """UserError, with the reason in one line, for a strategy combination that means nothing."""
    loops = not schedule.never
    if cfg.lazy and not cfg.phase:
        raise UserError("--lazy phases blocks out before the scheduled loop; give --phase S too")
    if cfg.phase_mode != "linear" and not cfg.phase:
        raise UserError(f"--phase-mode {cfg.phase_mode} shapes phasing; give --phase S too")
    if cfg.phase_sample != "epoch" and cfg.phase_mode != "bernoulli":
        raise UserError("--phase-sample batch draws bernoulli masks; give --phase-mode bernoulli")
    needs = {"phase": "reinsert_block", "replace": "replace_blocks"}
    for flag, method_name in needs.items():
        if getattr(cfg, flag) and not callable(getattr(model, method_name, None)):
            raise UserError(
                f"--{flag} needs a network with {method_name}(); "
                f"{type(model).__name__} has none (use it without --{flag})"
            )
    if cfg.phase:
        if schedule.low_epochs:
            raise UserError(
                "phasing already trains after every step; drop low-high from --schedule"
            )
        if cfg.lazy and not loops:
            raise UserError(
                "--lazy phases blocks out right before a fine-tuning loop; --schedule none has none"
            )
        if loops and cfg.total_budget is None and cfg.phase > cfg.epochs:
            raise UserError(
                f"--phase {cfg.phase} is part of a loop's budget: it must not exceed --epochs {cfg.epochs}"
            )
    if cfg.replace:
        if cfg.method != "oracle":
            raise UserError(
                "--replace scores windows of blocks with the oracle; use --method oracle"
            )
        if cfg.phase:
            raise UserError("--replace and --phase both decide how blocks leave; choose one")
        if cfg.blocks_per_step != 1:
            raise UserError("--replace replaces one window per step; leave --blocks-per-step at 1")
        if cfg.recompute_every != 1:
            raise UserError(
                "--replace rescores the windows at every step; leave --recompute-every at 1"
            )
        net = cfg.replace - 1
        if total is not None and total % net:
            raise UserError(
                f"--replace {cfg.replace} removes {net} block(s) per step; the target removes "
                f"{total}, not a multiple of {net}"
            )
        if not windows(model, cfg.replace):
            raise UserError(
                f"--replace {cfg.replace}: no group of the starting model has that many blocks"
            )
    if cfg.distill is not None and not loops and not cfg.phase:
        raise UserError(
            "--distill changes the fine-tuning loss; --schedule none fine-tunes nothing"
        )
    if cfg.local is not None:
        if not loops:
            raise UserError("--local ends with a full fine-tuning loop; --schedule none has none")
        if schedule.text == "once" and not (cfg.phase and not cfg.lazy):
            raise UserError(
                "--local trains neighbours in the loops before the final (full) one; "
                "--schedule once has none (use every:K, uniform:K, threshold:t or low-high:L)"
            )
    if cfg.total_budget is not None or cfg.initial_epochs is not None:
        _check_budget(cfg, schedule, total)
    if cfg.then is not None:
        if cfg.total_budget is not None:
            raise UserError(
                "--total-budget shares its epochs among the block loops; it does not cover "
                "the --then channels steps: drop one of them"
            )
        channels.check_plan(channels.parse(cfg.then), model)


def _check_budget(cfg: PruneConfig, schedule: Schedule, total: int | None) -> None:
    if cfg.total_budget is None:
        raise UserError("--checkpoint's epochs count only against a --total-budget N; give one")
    if cfg.initial_epochs is None:
        raise UserError(
            "--total-budget splits the epochs between the source's training and fine-tuning: "
            "start from a training checkpoint (--from EXP --checkpoint E)"
        )
    if schedule.never:
        raise UserError(
            "--total-budget shares its epochs with fine-tuning; --schedule none has none"
        )
    if schedule.threshold is not None or schedule.low_epochs or total is None:
        raise UserError(
            "--total-budget needs the fine-tuning loops known in advance: a block-count "
            "target and a schedule without threshold: or low-high:"
        )
    if cfg.phase and not cfg.lazy:
        raise UserError(
            "--total-budget with --phase needs --lazy (phase epochs inside the budgeted loops)"
        )
    loops = len(schedule.planned(total, per_step(cfg)))
    finetune = cfg.total_budget - cfg.initial_epochs
    if finetune < max(loops, cfg.phase * loops, 1):
        raise UserError(
            f"--total-budget {cfg.total_budget} leaves {finetune} fine-tuning epochs after the "
            f"checkpoint's {cfg.initial_epochs}: too few for {loops} loop(s)"
            + (f" of at least {cfg.phase} phase epochs" if cfg.phase else "")
        )


def budget_split(cfg: PruneConfig, schedule: Schedule, total: int | None) -> dict[int, int] | None:
    """Epochs per planned high loop (by blocks removed after it): the fine-tuning part of the
    budget (total − initial epochs) shared evenly, the remainder going to the last loop."""
    if cfg.total_budget is None or total is None:
        return None
    marks = schedule.planned(total, per_step(cfg))
    finetune = cfg.total_budget - cfg.initial_epochs
    share = finetune // len(marks)
    split = dict.fromkeys(marks, share)
    split[marks[-1]] += finetune - share * len(marks)
    return split
