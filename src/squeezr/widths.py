"""Layer widths of a channel-pruned network: read them, and narrow a freshly built one to them.

Channel pruning (:mod:`squeezr.prune.channels`) narrows convolutions, batch norms and linear
layers in place. A network is saved as a spec plus a ``state_dict`` and rebuilt from the spec
before its weights load, so the spec must say how wide every narrowed layer is: a map from
layer name (as ``named_modules`` spells it) to its width, ``[out, in, groups]`` for a conv,
``[features]`` for a batch norm, ``[out, in]`` for a linear layer. :func:`set_widths` applies
such a map by slicing each layer's tensors to the leading channels (so a rebuilt network
keeps its initialisation's scale; loading the saved weights then overwrites them), which
needs no Torch-Pruning: a channel-pruned model loads, runs and exports without that extra.

A family opts in by mixing in :class:`RecordsWidths` (the CIFAR ResNet and the
torchvision-layout ResNets do): the channel stage calls its :meth:`~RecordsWidths.record_widths`,
the family's ``spec()`` writes :attr:`~RecordsWidths.narrowed_widths` and its ``from_spec``
calls :meth:`~RecordsWidths.narrow_to` after replaying the block removals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from squeezr.dbx.errors import UserError

__all__ = ["RecordsWidths", "changed_widths", "layer_widths", "set_widths"]

Widths = dict[str, list[int]]


def _width(module: nn.Module) -> list[int] | None:
    if isinstance(module, nn.Conv2d):
        return [module.out_channels, module.in_channels, module.groups]
    if isinstance(module, nn.BatchNorm2d):
        return [module.num_features]
    if isinstance(module, nn.Linear):
        return [module.out_features, module.in_features]
    return None


def layer_widths(model: nn.Module) -> Widths:
    """The width of every conv, batch norm and linear layer of ``model``, by layer name."""
    out = {}
    for name, module in model.named_modules():
        width = _width(module)
        if width is not None:
            out[name] = width
    return out


def changed_widths(before: Widths, model: nn.Module) -> Widths:
    """The layers of ``model`` whose width differs from ``before`` (what a spec records)."""
    return {name: w for name, w in layer_widths(model).items() if before.get(name) != w}


def _slice(tensor: torch.Tensor | None, sizes: list[int]) -> torch.Tensor | None:
    if tensor is None:
        return None
    return tensor[tuple(slice(0, n) for n in sizes)].clone()


def _narrow(module: nn.Module, width: list[int]) -> None:
    """Cut ``module`` to ``width`` (leading channels kept), in place."""
    if isinstance(module, nn.Conv2d):
        out, cin, groups = width
        module.weight = nn.Parameter(_slice(module.weight.data, [out, cin // groups]))
        if module.bias is not None:
            module.bias = nn.Parameter(_slice(module.bias.data, [out]))
        module.out_channels, module.in_channels, module.groups = out, cin, groups
    elif isinstance(module, nn.BatchNorm2d):
        (n,) = width
        for name in ("weight", "bias"):
            if getattr(module, name) is not None:
                setattr(module, name, nn.Parameter(_slice(getattr(module, name).data, [n])))
        for name in ("running_mean", "running_var"):
            if getattr(module, name) is not None:
                setattr(module, name, _slice(getattr(module, name), [n]))
        module.num_features = n
    else:
        out, cin = width
        module.weight = nn.Parameter(_slice(module.weight.data, [out, cin]))
        if module.bias is not None:
            module.bias = nn.Parameter(_slice(module.bias.data, [out]))
        module.out_features, module.in_features = out, cin


def set_widths(model: nn.Module, widths: dict[str, Any]) -> None:
    """Narrow the layers ``widths`` names (as :func:`layer_widths` writes them), in place.

    A UserError when a name is not a conv/batch-norm/linear layer of ``model`` or a width is
    wider than the layer is: the spec was written for another network.
    """
    modules = dict(model.named_modules())
    for name, width in widths.items():
        module = modules.get(name)
        have = _width(module) if module is not None else None
        want = [int(w) for w in width] if isinstance(width, list | tuple) else None
        if have is None or want is None or len(want) != len(have):
            raise UserError(
                f"the spec narrows layer {name!r}, which this network does not have as a "
                "conv, batch norm or linear layer; the spec belongs to another network"
            )
        if want == have:
            continue
        sizes = want[:2]
        if any(not 0 < w <= h for w, h in zip(sizes, have, strict=False)):
            raise UserError(
                f"the spec gives layer {name!r} the width {want}, which does not fit its "
                f"width {have}; the spec belongs to another network"
            )
        _narrow(module, want)


class RecordsWidths:
    """Mixin for a block network whose spec can record layers narrowed by channel pruning.

    The channel stage (:mod:`squeezr.prune.channels`) accepts only networks with
    :meth:`record_widths`; a family that mixes this in writes :attr:`narrowed_widths` into its
    spec when it is not empty and calls :meth:`narrow_to` from ``from_spec``, so that
    save/load rebuilds the narrowed shape before the weights load. Channel pruning comes after
    block pruning, so blocks are neither removed nor replaced once widths are recorded.
    """

    #: Layer name -> width (as :func:`layer_widths` writes them) of every layer channel
    #: pruning narrowed; empty when none was. Instances get their own copy on first record.
    narrowed_widths: Widths = {}  # noqa: RUF012 (read-only default; replaced, never mutated)

    def record_widths(self, widths: Mapping[str, Any]) -> None:
        """Record that the layers ``widths`` names are narrowed to those widths (as
        :func:`changed_widths` lists them against the network before the channel stage).
        Replaces an earlier record: ``widths`` is cumulative."""
        self.narrowed_widths = {name: [int(w) for w in width] for name, width in widths.items()}

    def narrow_to(self, widths: Any) -> None:
        """Narrow this freshly built network to a spec's recorded ``widths`` and record them
        (what ``from_spec`` does); a UserError when they do not fit this network."""
        if not isinstance(widths, Mapping):
            raise UserError(
                f"a spec's narrowed widths must map layer names to widths, got {widths!r}; "
                "the spec is damaged"
            )
        set_widths(self, widths)  # type: ignore[arg-type] (mixed into an nn.Module)
        self.record_widths(widths)
