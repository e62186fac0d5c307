"""The must-hold checks every block-network adapter passes (issue 18), as one function that
each adapter's tests call with a tiny model and a batch of its inputs."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from squeezr import saliency
from squeezr.blocknet import BlockNet, count_params, from_spec


class Data(SimpleNamespace):
    """A selection set: stored inputs ``x`` and targets ``y``."""

    def __len__(self) -> int:
        return len(self.y)


def bypassed_forward(model: BlockNet, index: int, x: torch.Tensor) -> torch.Tensor:
    """The original network run with unit ``index`` replaced by its bypass."""
    h = model.embed(x)
    for idx, unit in model.units():
        h = model.bypass(idx, h) if idx == index else unit(h)
    return model.readout(h)


def check_adapter(model: BlockNet, x: torch.Tensor, *, atol: float = 1e-5) -> None:
    """For every block i: removing it equals running the original with i bypassed, the
    parameter count drops by exactly ``block_params()[i]``, its parameters leave the
    state_dict, and the spec rebuilds the pruned shape (same keys and shapes)."""
    model.eval()
    per_block = model.block_params()
    assert set(per_block) == set(model.block_ids())
    with torch.no_grad():
        for i in model.block_ids():
            pruned = copy.deepcopy(model)
            pruned.remove_block(i)
            assert i not in pruned.block_ids()
            torch.testing.assert_close(pruned(x), bypassed_forward(model, i, x), atol=atol, rtol=0)
            assert count_params(model) - count_params(pruned) == per_block[i]
            assert set(pruned.state_dict()) < set(model.state_dict())
            rebuilt = from_spec(pruned.spec())
            shapes = {k: v.shape for k, v in pruned.state_dict().items()}
            assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
            rebuilt.load_state_dict(pruned.state_dict())
            torch.testing.assert_close(rebuilt.eval()(x), pruned(x), atol=atol, rtol=0)


def check_fast_oracle(model: BlockNet, data: Data, ctx: saliency.SaliencyContext) -> None:
    """The prefix-cached oracle scores every block as the brute-force oracle does."""
    fast = saliency.compute("oracle", model, data, ctx)
    plain = saliency.brute_force_oracle(model.eval(), data, ctx)
    assert fast.keys() == plain.keys() == set(model.block_ids())
    for i in fast:
        assert fast[i] == pytest.approx(plain[i], abs=1e-9), i
