"""Phased pruning (spec §7): a chosen block fades out while the rest of the network trains.

Instead of removing a block at once, it is put back for ``S`` epochs with its residual
branch scaled by γ_e = 1 − e/S in epoch e = 1..S and its own weights frozen; after epoch S
(γ = 0, where the network computes exactly what it computes without the block) it is
removed structurally. The stochastic variant (``mode="bernoulli"``) multiplies the branch
by a 0/1 mask that keeps it with probability 1 − e/S instead, drawn once per epoch or per
mini-batch, independently per block; evaluation uses the expected scale 1 − e/S.

The pruning loop removes the chosen blocks as usual (so every measurement and budget sees
the pruned network) and keeps the removed modules aside; :func:`phase_out` puts them back,
trains, and removes them again. The scales reach the trainer as :func:`squeezr.train.fit`'s
``scales`` (StochasticDepth's per-batch interface), as views into one device tensor that is
updated in place, which the GPU fast path's CUDA graph needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from squeezr.blocknet import BlockNet
from squeezr.prune.freezing import frozen
from squeezr.train import SEED_LIMIT

MODES = ("linear", "bernoulli")
SAMPLES = ("epoch", "batch")


class PhaseScales:
    """The residual scales of the blocks being phased out, epoch by epoch.

    ``start_epoch(e)`` (fit's ``on_epoch_start``) selects epoch e; ``draw``/``use``/``reset``
    are what the trainer's epoch runners call (per-batch rows, then the evaluation scale).
    Random draws come from a generator seeded by (``seed``, epoch), so a resumed loop draws
    exactly what an uninterrupted one would. ``applied`` keeps, per epoch, the rows drawn.
    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        epochs: int,
        *,
        mode: str = "linear",
        sample: str = "epoch",
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        self.blocks, self.epochs, self.mode, self.sample, self.seed = (
            list(blocks),
            epochs,
            mode,
            sample,
            seed,
        )
        self.values = torch.ones(len(self.blocks), device=device)
        for k, block in enumerate(self.blocks):
            block.residual_scale = self.values[k]
        self.epoch = 0
        self.generator = torch.Generator()
        self.applied: dict[int, torch.Tensor] = {}

    def gamma(self, epoch: int | None = None) -> float:
        """γ_e = 1 − e/S: the linear scale, and the bernoulli keep probability."""
        return 1.0 - (self.epoch if epoch is None else epoch) / self.epochs

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.generator.manual_seed((self.seed * 1_000_003 + epoch) % SEED_LIMIT)

    def draw(self, steps: int) -> torch.Tensor:
        """Scales for ``steps`` training batches, ``(steps, blocks)`` on the device."""
        n, keep = len(self.blocks), self.gamma()
        if self.mode == "linear":
            rows = torch.full((steps, n), keep)
        elif self.sample == "epoch":
            rows = (torch.rand(n, generator=self.generator) < keep).float().expand(steps, n)
        else:
            rows = (torch.rand((steps, n), generator=self.generator) < keep).float()
        self.applied[self.epoch] = rows.clone()
        return rows.to(self.values.device)

    def use(self, row: torch.Tensor) -> None:
        self.values.copy_(row)

    def reset(self) -> None:
        """The evaluation scale of the current epoch: γ_e (the expected mask for bernoulli)."""
        self.values.fill_(self.gamma())

    def remove(self) -> None:
        """Nothing for the trainer to undo: :func:`phase_out` detaches the scales itself."""

    def detach(self) -> None:
        for block in self.blocks:
            block.residual_scale = None


def phase_out(
    model: BlockNet,
    aside: dict[int, nn.Module],
    order: Sequence[int],
    train: Callable[[PhaseScales], Any],
    *,
    epochs: int,
    mode: str = "linear",
    sample: str = "epoch",
    seed: int = 0,
    device: torch.device | None = None,
    place: Callable[[BlockNet], Any] | None = None,
) -> Any:
    """Put the removed blocks ``aside`` back into ``model``, train with them fading out,
    then remove them again in ``order``; returns what ``train(scales)`` returned.

    ``train`` runs the ``epochs`` training epochs (a :func:`squeezr.train.fit` call with
    ``scales=scales, on_epoch_start=scales.start_epoch`` and no best-epoch restore: the loop
    has to end at γ = 0). The blocks' residual branches are frozen throughout.
    """
    for index in sorted(order):
        model.reinsert_block(index, aside[index])
    if place is not None:
        place(model)
    blocks = [model.block(i) for i in order]
    scales = PhaseScales(blocks, epochs, mode=mode, sample=sample, seed=seed, device=device)
    try:
        with frozen([m for i in order for m in model.removable_modules(i)]):
            result = train(scales)
    finally:
        scales.detach()
    for index in order:
        model.remove_block(index)
    return result
