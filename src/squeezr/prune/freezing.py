"""Training only part of a network: the frozen rest keeps its weights *and* its BN statistics.

Phased pruning freezes the blocks it fades out; local training freezes everything but the
neighbours of a removed block. Freezing a parameter (``requires_grad=False``) keeps it out
of the optimizer (and of weight decay and weight noise), but a BatchNorm layer in training
mode would still move its running statistics; :func:`train_only` sets those layers'
momentum to 0, so they normalise with batch statistics as usual but keep their running
mean and variance exactly (``(1 - 0) * running + 0 * batch``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from torch import nn

from squeezr.blocknet import BlockNet


def frozen(modules: Iterable[nn.Module]) -> contextlib.AbstractContextManager:
    """Freeze every parameter and BN statistic of ``modules`` for the ``with`` block."""
    modules = list(modules)
    params = [p for m in modules for p in m.parameters()]
    return _frozen(params, [bn for m in modules for bn in m.modules()])


@contextlib.contextmanager
def _frozen(params: Iterable[nn.Parameter], modules: Iterable[nn.Module]) -> Iterator[None]:
    """Freeze ``params`` (those that train now) and the BN layers among ``modules``."""
    params = [p for p in params if p.requires_grad]
    norms = [(bn, bn.momentum) for bn in modules if isinstance(bn, nn.modules.batchnorm._BatchNorm)]
    for p in params:
        p.requires_grad_(False)
    for bn, _ in norms:
        bn.momentum = 0.0
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        for bn, momentum in norms:
            bn.momentum = momentum


def train_only(model: BlockNet, blocks: Iterable[int]) -> contextlib.AbstractContextManager:
    """Freeze everything of ``model`` except the remaining blocks ``blocks`` (embedding,
    readout and the units left by removed blocks included)."""
    kept = [model.block(b) for b in blocks]
    kept_modules = {id(m) for block in kept for m in block.modules()}
    kept_params = {id(p) for block in kept for p in block.parameters()}
    rest_params = [p for p in model.parameters() if id(p) not in kept_params]
    rest_modules = [m for m in model.modules() if id(m) not in kept_modules]
    return _frozen(rest_params, rest_modules)


def neighbours(model: BlockNet, gone: Iterable[int], before: int, after: int) -> list[int]:
    """The ``before`` remaining blocks in front of each block of ``gone`` and the ``after``
    remaining ones behind it (forward order, across group borders), without ``gone``.

    Original indices run in forward order, so "in front" is simply a lower index.
    """
    gone = set(gone)
    remaining = [b for b in model.block_ids() if b not in gone]
    chosen: set[int] = set()
    for g in gone:
        lower = [b for b in remaining if b < g]
        chosen.update(lower[-before:] if before else [])
        chosen.update([b for b in remaining if b > g][:after])
    return sorted(chosen)
