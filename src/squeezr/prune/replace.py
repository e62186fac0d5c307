"""Replacement pruning (spec §7): K neighbouring blocks give way to one fresh block.

The oracle scores every *window* of K neighbouring remaining blocks of one group (windows
never cross a group border: the widths differ there) by the selection set's error rate
with the whole window bypassed — exactly what a zero-initialised replacement computes, see
:meth:`squeezr.models.ResNet.replace_blocks`. The window with the lowest error is replaced
by one freshly initialised block under its first block's index (random: He init like a new
network; zero: the same with the last BN's scale 0, so it starts as the exact bypass).

Scores are keyed by a window's first block (one window starts at each block), as the
saliency methods key theirs, so the loop's selection, logging and equalisation treat a
window like a block.
"""

from __future__ import annotations

import torch

from squeezr import saliency
from squeezr.blocknet import BlockNet

INITS = ("random", "zero")


def windows(model: BlockNet, k: int, exclude: set[int] | None = None) -> dict[int, list[int]]:
    """Every run of ``k`` neighbouring remaining blocks of one group, by its first block."""
    exclude = exclude or set()
    by_group: dict[int, list[int]] = {}
    for b in model.block_ids():
        if b not in exclude:
            by_group.setdefault(model.group_of(b), []).append(b)
    found = {}
    for blocks in by_group.values():
        for start in range(len(blocks) - k + 1):
            found[blocks[start]] = blocks[start : start + k]
    return found


def _bypass_window(model: BlockNet, window: list[int], h: torch.Tensor) -> torch.Tensor:
    # Only a group's first block downsamples, and it can only open a window.
    return saliency.bypass(model, window[0], h)


@torch.inference_mode()
def window_oracle(model: BlockNet, data, ctx: saliency.SaliencyContext, k: int) -> dict[int, float]:
    """Task score (error rate) on ``data`` with each window bypassed, keyed by the window's first block.

    One pass of the unpruned activations per chunk; each window's stream starts from the
    bypassed activation at its first block and runs the rest of the network from there, so
    no prefix is computed twice.
    """
    found = windows(model, k)
    if not found:
        return {}
    was_training = model.training
    model.eval()
    units = model.units()
    position = {idx: p for p, (idx, _) in enumerate(units)}
    sums = {first: 0.0 for first in found}
    counts = {first: 0.0 for first in found}
    try:
        for x, y in saliency.batches(data, ctx):
            with ctx.autocast:
                h = model.embed(x)
                for idx, unit in units:
                    if idx in found:
                        window = found[idx]
                        stream = _bypass_window(model, window, h)
                        for _, later in units[position[window[-1]] + 1 :]:
                            stream = later(stream)
                        part, weight = ctx.task.score(model.readout(stream), y)
                        sums[idx] += float(part.sum())
                        counts[idx] += float(weight.sum())
                    h = unit(h)
    finally:
        model.train(was_training)
    return {first: sums[first] / counts[first] for first in found}
