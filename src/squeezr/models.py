"""CIFAR ResNets whose blocks can be removed one by one: the first block-network family.

:class:`ResNet` implements :class:`squeezr.blocknet.BlockNet`; counting, save/load and export
are generic and live in :mod:`squeezr.blocknet` (re-exported here, where callers found them
before other families existed).

Block pruning needs more than a ``torch.nn.Module``: every residual block keeps the index it
had in the unpruned network for life (so that logs, removal orders and rankings compare across
runs), removal must be structural (the parameters really disappear from the ``state_dict``), and
a pruned network must be rebuilt from a small JSON-able ``spec`` to load its weights.

Layout (spec §1): ``stem`` (conv3x3 → BN → ReLU), three groups of basic blocks with 16/32/64
channels, the first block of groups 2 and 3 downsampling through a conv1x1(stride 2) → BN
shortcut, and ``head`` (global average pool → linear). Blocks live in ``ResNet.blocks``, an
``nn.ModuleDict`` keyed by the original index, so parameter names (``blocks.17.conv1.weight``)
never change when other blocks are removed.

Removing a downsampling block keeps its shortcut as a :class:`ShortcutUnit`, which computes
``ReLU(shortcut(y))`` — exactly what the block computed with its residual branch zeroed. A
group built with zero blocks gets the same kind of unit (the *transition* into that group's
width and resolution), listed by :meth:`ResNet.units` with index :data:`TRANSITION`.

So a pruned network is generally *not* ``ResNet(model.config)``: when a group's downsampling
block is removed but the group keeps other blocks, the pruned network has a shortcut unit
*plus* plain blocks, while a fresh ``ResNet`` of that config makes its first block the
downsampling one (ResNet-20 without block 3: 258,522 parameters; ``ResNet((3, 2, 3))``:
253,914). The two coincide only when no downsampling block was removed or its group is empty.
To train exactly the pruned shape from scratch, use ``ResNet.from_spec(model.spec(), seed=s)``:
it rebuilds the same layers and parameter names with fresh random weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from squeezr.blocknet import (  # noqa: F401 (re-exported: squeezr.models was their home)
    BlockNet,
    ResidualScaled,
    attach_model,
    block_macs,
    block_params,
    count_macs,
    count_params,
    export_onnx,
    export_torchscript,
    load_model,
    save_model,
)
from squeezr.dbx.errors import UserError
from squeezr.names import normalised_key
from squeezr.widths import RecordsWidths

PRESETS: dict[str, tuple[int, int, int]] = {
    "resnet20": (3, 3, 3),
    "resnet32": (5, 5, 5),
    "resnet44": (7, 7, 7),
    "resnet56": (9, 9, 9),
    "resnet110": (18, 18, 18),
}
WIDTHS: tuple[int, int, int] = (16, 32, 64)
TRANSITION = -1
"""Index reported by :meth:`ResNet.units` for the shortcut unit of a group built with 0 blocks."""
SPEC_FORMAT = "squeezr.cifar-resnet/1"
"""The ``format`` of :meth:`ResNet.spec` (its adapter module is this one)."""
MODEL_ATTACHMENT = "model.pt"
"""The attachment holding an experiment's network: the trained model of a training run (as
:func:`squeezr.train.fit` attaches it), the pruned one of a pruning run."""


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(cout)
    )


class BasicBlock(ResidualScaled, nn.Module):
    """Two 3×3 convs with BN before each ReLU: ``ReLU(scale · H(y) + shortcut(y))``.

    ``residual_scale`` (``None`` = 1, a float, or a 0-dim tensor, possibly requiring grad)
    multiplies the residual branch (:class:`squeezr.blocknet.ResidualScaled`).
    """

    __jit_unused_properties__ = ["downsampling"]  # noqa: RUF012 (read by torch.jit.script)

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=False)
        downsamples = stride != 1 or in_channels != out_channels
        self.shortcut: nn.Module = (
            _downsample(in_channels, out_channels, stride) if downsamples else nn.Identity()
        )
        self.residual_scale = None

    @property
    def downsampling(self) -> bool:
        """True when the shortcut is a conv1x1+BN (the block changes width/resolution)."""
        return not isinstance(self.shortcut, nn.Identity)

    def residual(self, x: Tensor) -> Tensor:
        """The residual branch H(x), without ``residual_scale``."""
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: Tensor) -> Tensor:
        out = self.residual(x)
        scale = self.residual_scale
        if scale is not None:
            out = out * scale
        return self.relu(out + self.shortcut(x))

    def removable_modules(self) -> list[nn.Module]:
        """The layers that disappear when this block is pruned (its residual branch)."""
        return [self.conv1, self.bn1, self.conv2, self.bn2]


class ShortcutUnit(nn.Module):
    """``ReLU(shortcut(y))``: what a removed downsampling block (or an empty group) leaves."""

    def __init__(self, shortcut: nn.Module) -> None:
        super().__init__()
        self.shortcut = shortcut
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.shortcut(x))


class Head(nn.Module):
    """Global average pool → linear classifier."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _check_config(config: Sequence[int]) -> tuple[int, int, int]:
    try:
        values = tuple(int(n) for n in config)
    except (TypeError, ValueError):
        raise UserError(f"ResNet config must be three block counts, got {config!r}") from None
    if len(values) != 3 or any(n < 0 for n in values):
        raise UserError(
            f"ResNet config must be three non-negative block counts (n1, n2, n3), got {config!r}"
        )
    return values  # type: ignore[return-value]


class ResNet(RecordsWidths, BlockNet):
    """CIFAR ResNet of any configuration ``(n1, n2, n3)``, whose blocks can be removed.

    ``forward(x) == head(units applied in order to stem(x))``; the loop runs over
    ``self.blocks`` (an ``nn.ModuleDict``) and does nothing else per batch, so the model works
    with ``torch.compile``, TorchScript, CUDA graphs, channels_last and autocast. As a
    :class:`squeezr.blocknet.BlockNet`, ``embed`` is the stem and ``readout`` the head.
    """

    SPEC_FORMAT = SPEC_FORMAT
    input_shape = (3, 32, 32)
    # Bookkeeping that torch.jit.script must neither compile nor type.
    __jit_unused_properties__ = ["num_original_blocks", "config", "num_groups"]  # noqa: RUF012
    __jit_ignored_attributes__ = [  # noqa: RUF012
        "removed",
        "operations",
        "_group",
        "_downsampling",
        "narrowed_widths",
    ]

    def __init__(self, config: Sequence[int], num_classes: int = 10) -> None:
        super().__init__()
        self.original_config = _check_config(config)
        if int(num_classes) < 1:
            raise UserError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.stem = nn.Sequential(_conv3x3(3, WIDTHS[0]), nn.BatchNorm2d(WIDTHS[0]), nn.ReLU())
        self.blocks = nn.ModuleDict()
        self._group = {}
        self._downsampling = {}
        self.removed = []
        self.operations = []
        index, cin = 0, WIDTHS[0]
        for group, (count, width) in enumerate(zip(self.original_config, WIDTHS, strict=True)):
            stride = 1 if group == 0 else 2
            if count == 0 and cin != width:
                # An empty group still has to hand the next group its width and resolution.
                self.blocks[f"t{group}"] = ShortcutUnit(_downsample(cin, width, stride))
            for j in range(count):
                block = BasicBlock(cin if j == 0 else width, width, stride if j == 0 else 1)
                self.blocks[str(index)] = block
                self._group[index] = group
                self._downsampling[index] = block.downsampling
                index += 1
            cin = width
        self.head = Head(WIDTHS[-1], self.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """He (fan-out) init for convs, BN to identity; linear keeps PyTorch's default init."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for unit in self.blocks.values():
            x = unit(x)
        return self.head(x)

    def embed(self, x: Tensor) -> Tensor:
        return self.stem(x)

    def readout(self, h: Tensor) -> Tensor:
        return self.head(h)

    def bypass(self, i: int, h: Tensor) -> Tensor:
        """Identity, or ``ReLU(shortcut(h))`` for a downsampling block (the spec's
        ``y_{i+1} = y_i`` with shapes kept): what :meth:`remove_block` leaves behind."""
        if self.is_downsampling(i):
            return nn.functional.relu(self.block(i).shortcut(h))
        return h

    # -- block bookkeeping ------------------------------------------------------------------

    @property
    def num_original_blocks(self) -> int:
        return sum(self.original_config)

    def block_ids(self) -> list[int]:
        """Original indices of the remaining blocks, in forward order."""
        return [int(k) for k, m in self.blocks.items() if isinstance(m, BasicBlock)]

    def units(self) -> list[tuple[int, nn.Module]]:
        """Forward-order ``(original index, module)`` for every block and leftover shortcut.

        A removed downsampling block's :class:`ShortcutUnit` carries that block's index; the
        unit of a group built with zero blocks carries :data:`TRANSITION`.
        """
        return [(TRANSITION if k.startswith("t") else int(k), m) for k, m in self.blocks.items()]

    def block(self, i: int) -> BasicBlock:
        """The remaining block with original index ``i``."""
        key = str(self._check_index(i))
        module = self.blocks[key] if key in self.blocks else None  # noqa: SIM401 (no .get)
        if not isinstance(module, BasicBlock):
            raise UserError(f"block {i} has been removed; remaining blocks: {self.block_ids()}")
        return module

    def group_of(self, i: int) -> int:
        """Group (0, 1, 2) of original block ``i``, removed or not."""
        return self._group[self._check_index(i)]

    def is_downsampling(self, i: int) -> bool:
        """Whether original block ``i`` is the first (downsampling) block of group 2 or 3."""
        return self._downsampling[self._check_index(i)]

    @property
    def config(self) -> tuple[int, int, int]:
        """Remaining blocks per group."""
        counts = [0, 0, 0]
        for i in self.block_ids():
            counts[self._group[i]] += 1
        return tuple(counts)  # type: ignore[return-value]

    def count_macs(self, input_shape: Sequence[int] | None = None) -> int:
        """Multiply-accumulates of one forward pass on one image of ``input_shape`` (default
        3×32×32), counted analytically from layer shapes: convolutions and the linear layer
        only (batch norm, ReLU, additions, pooling and biases are not counted)."""
        return _walk_macs(self, input_shape or self.input_shape)[0]

    def block_macs(self, input_shape: Sequence[int] | None = None) -> dict[int, int]:
        """Per remaining block: MACs that removing it saves (its two 3×3 convs)."""
        return _walk_macs(self, input_shape or self.input_shape)[1]

    def remove_block(self, i: int) -> None:
        """Remove block ``i`` in place; a downsampling block leaves its shortcut unit behind."""
        block = self.block(i)
        key = str(i)
        if block.downsampling:
            self.blocks[key] = ShortcutUnit(block.shortcut)  # same key: keeps forward position
        else:
            del self.blocks[key]
        self.removed.append(i)
        self.operations.append(["remove", i])

    def new_block(self, i: int) -> BasicBlock:
        """A freshly initialised block shaped like original block ``i`` (its in/out widths and
        stride), for replacement pruning and for rebuilding a block put aside (phasing)."""
        i = self._check_index(i)
        group = self._group[i]
        first = sum(self.original_config[:group])
        width = WIDTHS[group]
        cin = (WIDTHS[group - 1] if group > 0 else WIDTHS[0]) if i == first else width
        stride = 2 if (i == first and group > 0) else 1
        block = BasicBlock(cin, width, stride)
        for module in block.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        return block

    def reinsert_block(self, i: int, block: BasicBlock) -> None:
        """Put removed block ``i`` back at its forward position (undoing :meth:`remove_block`;
        phased pruning removes a block, then trains with it fading out). A downsampling
        block takes back the shortcut its :class:`ShortcutUnit` kept, so they stay shared."""
        i = self._check_index(i)
        key = str(i)
        unit = self.blocks[key] if key in self.blocks else None  # noqa: SIM401 (no .get)
        if isinstance(unit, BasicBlock) or i not in self.removed:
            raise UserError(f"block {i} is not removed; it cannot be put back")
        if isinstance(unit, ShortcutUnit):
            block.shortcut = unit.shortcut
        self.removed.remove(i)
        last = max(n for n, op in enumerate(self.operations) if op == ["remove", i])
        del self.operations[last]  # as if it had never been removed
        items = [(k, m) for k, m in self.blocks.items() if k != key] + [(key, block)]
        self.blocks = nn.ModuleDict(sorted(items, key=lambda item: self._position(item[0])))

    def _position(self, key: str) -> float:
        """Forward-order sort key of a ``blocks`` key (a transition comes before its group)."""
        if key.startswith("t"):
            return sum(self.original_config[: int(key[1:])]) - 0.5
        return int(key)

    def replace_blocks(self, window: Sequence[int], zero: bool = False) -> BasicBlock:
        """Replace neighbouring remaining blocks ``window`` (one group, forward order) by one
        fresh block under the first one's index; returns it (replacement pruning).

        The new block keeps the first block's shortcut (a downsampling window keeps its
        downsampling path) and gets a new random residual branch; ``zero`` sets its last BN's
        scale to 0, so the branch outputs exactly 0 and the model computes exactly what it
        computed with the whole window bypassed. The other blocks of the window are removed.
        Draws from torch's global RNG (seed it, or fork it, yourself).
        """
        ids = [self._check_index(i) for i in window]
        remaining = self.block_ids()
        if not ids or any(i not in remaining for i in ids):
            raise UserError(f"window {ids} must name remaining blocks; remaining: {remaining}")
        start = remaining.index(ids[0])
        if remaining[start : start + len(ids)] != ids or len({self._group[i] for i in ids}) != 1:
            raise UserError(f"window {ids} is not a run of neighbouring blocks of one group")
        old = self.block(ids[0])
        fresh = self.new_block(ids[0])
        fresh.shortcut = old.shortcut
        if zero:
            nn.init.zeros_(fresh.bn2.weight)
        param = next(old.parameters())
        fresh.to(device=param.device, dtype=param.dtype)
        self.blocks[str(ids[0])] = fresh
        for i in ids[1:]:
            del self.blocks[str(i)]
            self.removed.append(i)
        self.operations.append(["replace", ids, bool(zero)])
        return fresh

    def record_widths(self, widths: dict[str, list[int]]) -> None:
        """:meth:`squeezr.widths.RecordsWidths.record_widths`, kept as the last of the spec's
        ``operations`` (after removals and replacements, which replay first)."""
        super().record_widths(widths)
        self.operations = [op for op in self.operations if op[0] != "channels"]
        self.operations.append(["channels", dict(self.narrowed_widths)])

    # -- spec ------------------------------------------------------------------------------

    def spec(self) -> dict[str, Any]:
        """JSON-able description from which :meth:`from_spec` rebuilds this shape."""
        spec = {
            "format": self.SPEC_FORMAT,
            "num_classes": self.num_classes,
            "config": list(self.original_config),
            "removed": list(self.removed),
            "remaining_config": list(self.config),
        }
        if any(op[0] != "remove" for op in self.operations):
            # Replacements and narrowed layers do not replay from ``removed`` alone.
            spec["operations"] = [list(op) for op in self.operations]
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any], *, seed: int | None = None) -> ResNet:
        """A freshly initialised network of the shape ``spec`` describes (removals replayed).

        This is how to train a pruned shape from scratch: ``ResNet.from_spec(model.spec(),
        seed=s)`` has exactly ``model``'s layers, parameter names and counts, but new random
        weights and fresh BN statistics. The network is initialised as built (``spec["config"]``)
        and then the removed blocks are dropped, so the weights of the remaining blocks equal
        those of the unpruned network initialised with the same seed. ``seed=None`` draws from
        torch's global RNG (seed it yourself); an int uses that seed and leaves the global RNG
        untouched.
        """
        if not isinstance(spec, dict) or spec.get("format") != cls.SPEC_FORMAT:
            raise UserError(
                f"not a squeezr ResNet spec (expected format {cls.SPEC_FORMAT!r}); "
                "was the file written by squeezr.models.save_model?"
            )
        try:
            if seed is None:
                model = cls(spec["config"], spec["num_classes"])
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    model = cls(spec["config"], spec["num_classes"])
            if "operations" in spec:
                model._replay(spec["operations"])
            else:
                for i in spec["removed"]:
                    model.remove_block(int(i))
        except KeyError as exc:
            raise UserError(f"ResNet spec lacks the field {exc.args[0]!r}") from None
        return model

    def _replay(self, operations: list) -> None:
        """Apply a spec's ``operations`` (as :meth:`spec` lists them) to this network."""
        for op in operations:
            if op[0] == "remove":
                self.remove_block(int(op[1]))
            elif op[0] == "replace":
                self.replace_blocks([int(i) for i in op[1]], zero=bool(op[2]))
            elif op[0] == "channels":
                self.narrow_to(op[1])
            else:
                raise UserError(f"unknown operation {op[0]!r} in a ResNet spec")


def preset_key(name: str, what: str = "ResNet preset") -> str:
    """The :data:`PRESETS` key that ``name`` means (``"ResNet-110"`` → ``"resnet110"``); an
    unknown name is a UserError listing the presets, calling ``name`` a ``what``."""
    return normalised_key(name, PRESETS, what)


def resnet(name: str, num_classes: int = 10) -> ResNet:
    """A preset: resnet20/32/44/56/110 (3/5/7/9/18 blocks per group)."""
    return ResNet(PRESETS[preset_key(name)], num_classes)


# -- counting ---------------------------------------------------------------------------------


def _conv_macs(conv: nn.Conv2d, hw: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """MACs of one convolution on an ``hw`` input, and its output size."""
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    ph, pw = conv.padding  # type: ignore[misc]
    oh = (hw[0] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (hw[1] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return oh * ow * conv.out_channels * (conv.in_channels // conv.groups) * kh * kw, (oh, ow)


def _shortcut_macs(shortcut: nn.Module, hw: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    convs = [m for m in shortcut.modules() if isinstance(m, nn.Conv2d)]
    return _conv_macs(convs[0], hw) if convs else (0, hw)


def _walk_macs(model: ResNet, input_shape: Sequence[int]) -> tuple[int, dict[int, int]]:
    """Total MACs and, per remaining block, the MACs its removal saves."""
    if len(input_shape) != 3 or input_shape[0] != 3 or min(input_shape) < 1:
        raise UserError(f"input_shape must be (3, height, width), got {tuple(input_shape)}")
    total, hw = _conv_macs(model.stem[0], (int(input_shape[1]), int(input_shape[2])))
    removable: dict[int, int] = {}
    for i, unit in model.units():
        if isinstance(unit, BasicBlock):
            m1, hw1 = _conv_macs(unit.conv1, hw)
            m2, _ = _conv_macs(unit.conv2, hw1)
            ms, _ = _shortcut_macs(unit.shortcut, hw)
            removable[i] = m1 + m2
            total += m1 + m2 + ms
            hw = hw1
        else:
            ms, hw = _shortcut_macs(unit.shortcut, hw)  # type: ignore[union-attr]
            total += ms
    fc = model.head.fc
    return total + fc.in_features * fc.out_features, removable
