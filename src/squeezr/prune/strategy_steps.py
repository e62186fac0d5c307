"""The strategy parts of a pruning step (spec §7): equalisation, replacement, phasing, local
training and distillation, and the fine-tuning loops they shape.

:class:`StrategySteps` is mixed into the loop's ``_Pruner`` (:mod:`squeezr.prune.loop`),
whose state it uses: ``model``, ``cfg``, ``splits``, ``device``, ``plan``, ``teacher``,
``accounting``, the blocks set ``aside`` for phasing and those removed ``since_loop``, and its
``_fit`` (one ``train.fit`` loop with the strategies applied) and ``_log``. Each strategy is
off unless its setting is given, so a plain run takes none of these paths.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from squeezr import saliency
from squeezr.dbx.errors import UserError
from squeezr.models import count_params
from squeezr.prune.freezing import neighbours
from squeezr.prune.phasing import phase_out
from squeezr.prune.replace import windows
from squeezr.train import SEED_LIMIT

LOOP_KINDS = ("low", "high", "phase", "replace")


def loop_seed(seed: int, step: int, loop: str) -> int:
    """The seed of step ``step``'s ``loop`` (one of :data:`LOOP_KINDS`) of a run seeded
    ``seed``: a different one for every loop, always within the trainer's seed range.
    (Low and high keep the seeds they had before phasing and replacement existed.)"""
    kind = LOOP_KINDS.index(loop)
    offset = 2 * step + kind if kind < 2 else 2 * step + kind * 7_919_993
    return (seed * 1_000_003 + offset) % SEED_LIMIT


SKIPPED_LOOP = {
    "epochs": 0,
    "best_epoch": 0,
    "epochs_run": 0,
    "cost": 0,
    "seconds": 0.0,
    "skipped": "no neighbours to train",
}
"""The record of a local loop with nothing to train (the removal sat at the network's edge)."""


class StrategySteps:
    """The strategy methods of the pruning loop's ``_Pruner`` (see the module docstring)."""

    def _equalise(self, scores: dict[int, float]) -> tuple[dict[int, float], int]:
        """``--equalise``: the candidates of the group with the most blocks left (ties: the
        first group), so from an equal start the groups take turns and are equal again
        every 3 steps."""
        counts = self.model.config
        for group in sorted(range(len(counts)), key=lambda g: (-counts[g], g)):
            allowed = {b: s for b, s in scores.items() if self.model.group_of(b) == group}
            if allowed:
                return allowed, group
        raise UserError("--equalise: no group has a candidate left")

    def _replace(self, scores: dict[int, float], k: int) -> list[int]:
        """``--replace K``: the lowest-scoring window gives way to one fresh block (seeded by
        the run's seed and the step); returns the window."""
        if not scores:
            raise UserError(
                f"--replace {self.cfg.replace}: no group has {self.cfg.replace} neighbouring "
                "blocks left; choose a smaller target or window"
            )
        (first,) = saliency.lowest(scores, 1)
        window = windows(self.model, self.cfg.replace)[first]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(loop_seed(self.cfg.seed, k, "replace"))
            self.model.replace_blocks(window, zero=self.cfg.replace_init == "zero")
        self._place()
        return window

    def _finetune(
        self, k: int, loop: str, epochs: int, *, local: bool = False, shift: int = 0
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """One fine-tuning loop of step ``k``: ``loop`` is "low" or "high" (own seeds).

        Returns the loop's record and the accuracies of the weights it restored (fit's own
        final fp32 evaluation, the same one :func:`_evaluate` would make). ``local`` trains
        only the neighbours of the blocks removed since the last loop (``--local``);
        ``shift`` is the phase epochs this loop's budget already spent (the learning-rate
        milestones continue from there).
        """
        prefix = f"prune/step/{k}/finetune" + ("/low" if loop == "low" else "")
        train_cfg = self.cfg.train_config(epochs, seed=loop_seed(self.cfg.seed, k, loop))
        if shift:
            kept = tuple(m - shift for m in train_cfg.milestones if m > shift)
            train_cfg = replace(train_cfg, milestones=kept)
        return self._fit(prefix, train_cfg, local=local)

    def _neighbours(self) -> list[int]:
        """``--local BL,BR``: the blocks a local loop trains — BL before and BR after each
        block removed since the last loop, and a replacement block itself."""
        before, after = self.cfg.local
        gone = set(self.since_loop)
        remaining = self.model.block_ids()
        fresh = [b for b in self.since_loop if b in remaining] if self.cfg.replace else []
        return sorted(set(neighbours(self.model, gone, before, after)) | set(fresh))

    def _book_teacher(self, epochs_run: int) -> dict[str, float]:
        images = len(self.splits.train.y)
        forward = self.teacher.forward_images(
            epochs_run, images, first=self.accounting.teacher_epochs == 0
        )
        epochs = forward / images
        cost = epochs * count_params(self.teacher.model)
        self.accounting.teacher_epochs += epochs
        self.accounting.teacher_cost += cost
        return {"teacher_epochs": epochs, "teacher_cost": cost}

    def _phase(self, k: int) -> tuple[dict[str, Any], dict[str, float]]:
        """``--phase S``: put the blocks set aside back, train S epochs while they fade out
        (weights frozen, scale γ_e = 1 − e/S), then remove them again."""
        cfg, order = self.cfg, list(self.aside_order)
        if cfg.local is not None and not self._neighbours():
            # Nothing may train (the blocks sat at the network's edge): fading them out with
            # everything frozen changes nothing, so they simply stay removed.
            self.aside, self.aside_order = {}, []
            return {**SKIPPED_LOOP, "phased": order}, self._eval()
        prefix = f"prune/step/{k}/phase"
        train_cfg = replace(
            cfg.train_config(cfg.phase, seed=loop_seed(cfg.seed, k, "phase")),
            restore_best=False,
            initial_is_candidate=False,
        )
        out: dict[str, Any] = {}

        def log_scales(epoch: int, row: dict[str, Any]) -> None:
            rows = out["scales"].applied.get(epoch)
            kept = rows.mean(0).tolist() if rows is not None else []
            gamma = out["scales"].gamma(epoch)
            self._log(f"{prefix}/scale/{epoch}", {"gamma": gamma, "blocks": order, "kept": kept})

        def train(scales):
            out["scales"] = scales
            return self._fit(prefix, train_cfg, local=True, scales=scales, on_epoch_end=log_scales)

        record, after = phase_out(
            self.model,
            self.aside,
            order,
            train,
            epochs=cfg.phase,
            mode=cfg.phase_mode,
            sample=cfg.phase_sample,
            seed=loop_seed(cfg.seed, k, "phase"),
            device=self.device,
            place=lambda model: self._place(),
        )
        record["phased"] = order
        self.aside, self.aside_order = {}, []
        return record, after

    def _totals(self) -> dict[str, Any]:
        """The cumulative cost figures every step and the summary report."""
        acc = self.accounting
        totals = {"cost": acc.cost, "epochs_used": acc.epochs_used, "epochs_run": acc.epochs_run}
        if self.teacher is not None:
            totals.update(
                teacher_epochs=acc.teacher_epochs,
                teacher_cost=acc.teacher_cost,
                total_cost=acc.cost + acc.teacher_cost,
            )
        if self.cfg.total_budget is not None:
            totals.update(
                budget_total_epochs=self.cfg.total_budget,
                budget_initial_epochs=self.cfg.initial_epochs,
                budget_finetune_epochs=acc.epochs_run,
            )
        return totals
