"""torchvision-layout ResNets (ResNet-18…152, wide ResNets, ResNeXt) as block networks.

The network is built here, without torchvision, with exactly torchvision's module names and
shapes (``conv1``/``bn1``/``relu``/``maxpool`` stem, ``layer1``…``layer4``, ``avgpool``,
``fc``; blocks with ``conv1``…``bn3`` and ``downsample``), so a torchvision weights file (a
plain ``state_dict``, e.g. ``resnet50-0676ba61.pth``) loads as is, and the state_dict of a
network pruned here is a torchvision state_dict with some blocks' keys gone. Each stage is an
``nn.ModuleDict`` keyed by the block's position in the unpruned stage (``"0"``, ``"1"``…),
which gives the same key names as torchvision's ``nn.Sequential`` and keeps them when other
blocks are removed.

Blocks carry a global original index in forward order (ResNet-50: 0–15; ``layer2.0`` is
block 3). Removing a block whose ``downsample`` changes width or resolution keeps that
shortcut as a :class:`ShortcutUnit` (``ReLU(downsample(x))``, exactly the block with its
residual branch zeroed) under the same key, so ``layer2.0.downsample.*`` keys stay.

:func:`build` makes a named architecture (optionally loading weights), :func:`adapt` takes a
torchvision model object (or anything with its structure) and returns this network with its
weights; both check what they cannot represent (dilated stages, non-BN norms) and say so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from squeezr.blocknet import BlockNet, ResidualScaled
from squeezr.dbx.errors import UserError
from squeezr.names import normalised_key
from squeezr.torchfiles import load_torch_file
from squeezr.widths import RecordsWidths

SPEC_FORMAT = "squeezr.torchvision/1"
STAGE_WIDTHS = (64, 128, 256, 512)
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "resnet18": {"block": "basic", "layers": [2, 2, 2, 2]},
    "resnet34": {"block": "basic", "layers": [3, 4, 6, 3]},
    "resnet50": {"block": "bottleneck", "layers": [3, 4, 6, 3]},
    "resnet101": {"block": "bottleneck", "layers": [3, 4, 23, 3]},
    "resnet152": {"block": "bottleneck", "layers": [3, 8, 36, 3]},
    "wide_resnet50_2": {"block": "bottleneck", "layers": [3, 4, 6, 3], "width_per_group": 128},
    "wide_resnet101_2": {"block": "bottleneck", "layers": [3, 4, 23, 3], "width_per_group": 128},
    "resnext50_32x4d": {"block": "bottleneck", "layers": [3, 4, 6, 3], "groups": 32, "width_per_group": 4},
    "resnext101_32x8d": {"block": "bottleneck", "layers": [3, 4, 23, 3], "groups": 32, "width_per_group": 8},
    "resnext101_64x4d": {"block": "bottleneck", "layers": [3, 4, 23, 3], "groups": 64, "width_per_group": 4},
}  # fmt: skip
"""torchvision's builders, as (block kind, blocks per stage, groups, width per group)."""


class BasicBlock(ResidualScaled, nn.Module):
    """torchvision's BasicBlock: ``ReLU(scale · bn2(conv2(ReLU(bn1(conv1 x)))) + shortcut)``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.residual_scale = None

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        scale = self.residual_scale
        if scale is not None:
            out = out * scale
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)

    def removable_modules(self) -> list[nn.Module]:
        return [self.conv1, self.bn1, self.conv2, self.bn2]


class Bottleneck(ResidualScaled, nn.Module):
    """torchvision's Bottleneck (ResNet v1.5: the stride on the 3×3 conv), ``expansion`` 4."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        downsample: nn.Module | None,
        groups: int = 1,
        width_per_group: int = 64,
    ):
        super().__init__()
        width = int(planes * (width_per_group / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.residual_scale = None

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        scale = self.residual_scale
        if scale is not None:
            out = out * scale
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)

    def removable_modules(self) -> list[nn.Module]:
        return [self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3]


class ShortcutUnit(nn.Module):
    """``ReLU(downsample(x))``: what a removed block with a downsampling shortcut leaves
    (named ``downsample`` so that its keys stay torchvision's)."""

    def __init__(self, downsample: nn.Module) -> None:
        super().__init__()
        self.downsample = downsample
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.downsample(x))


def _check_arch(arch: Mapping[str, Any]) -> dict[str, Any]:
    """``arch`` completed with defaults and checked (UserError naming the bad field)."""
    full = {"groups": 1, "width_per_group": 64, "num_classes": 1000, **arch}
    layers = full.get("layers")
    if full.get("block") not in ("basic", "bottleneck"):
        raise UserError(
            f"torchvision ResNet block must be 'basic' or 'bottleneck', got {full.get('block')!r}"
        )
    if not isinstance(layers, Sequence) or len(layers) != 4 or any(int(n) < 1 for n in layers):
        raise UserError(
            f"torchvision ResNet layers must be 4 positive block counts, got {layers!r}"
        )
    full["layers"] = [int(n) for n in layers]
    for key in ("groups", "width_per_group", "num_classes"):
        if int(full[key]) < 1:
            raise UserError(f"torchvision ResNet {key} must be at least 1, got {full[key]!r}")
        full[key] = int(full[key])
    if full["block"] == "basic" and (full["groups"] != 1 or full["width_per_group"] != 64):
        raise UserError("torchvision's BasicBlock supports only groups=1, width_per_group=64")
    return {k: full[k] for k in ("block", "layers", "groups", "width_per_group", "num_classes")}


class TorchvisionResNet(RecordsWidths, BlockNet):
    """A torchvision-layout ResNet whose blocks can be removed (see the module docstring).

    ``arch``: ``block`` (``basic``/``bottleneck``), ``layers`` (4 counts), ``groups``,
    ``width_per_group``, ``num_classes``, as torchvision's ``ResNet`` takes them.
    Channel pruning (``--then channels``) narrows layers in place; the spec records them
    (``"widths"``, :class:`squeezr.widths.RecordsWidths`) so that the narrowed network loads.
    """

    SPEC_FORMAT = SPEC_FORMAT
    input_shape = (3, 224, 224)
    __jit_unused_properties__ = ["num_original_blocks", "config", "num_groups"]  # noqa: RUF012
    __jit_ignored_attributes__ = [  # noqa: RUF012
        "arch",
        "name",
        "removed",
        "_where",
        "_shapes",
        "narrowed_widths",
    ]

    def __init__(self, arch: Mapping[str, Any], name: str | None = None) -> None:
        super().__init__()
        self.arch = _check_arch(arch)
        self.name = name
        self.removed = []
        self._where = []  # original index -> (stage, key)
        self._shapes = []  # original index -> (inplanes, planes, stride)
        kind, groups, wpg = self.arch["block"], self.arch["groups"], self.arch["width_per_group"]
        expansion = 1 if kind == "basic" else 4
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for stage, (count, planes) in enumerate(
            zip(self.arch["layers"], STAGE_WIDTHS, strict=True)
        ):
            blocks = nn.ModuleDict()
            for j in range(count):
                stride = 2 if (stage > 0 and j == 0) else 1
                downsample = None
                if stride != 1 or inplanes != planes * expansion:
                    downsample = nn.Sequential(
                        nn.Conv2d(inplanes, planes * expansion, 1, stride, bias=False),
                        nn.BatchNorm2d(planes * expansion),
                    )
                if kind == "basic":
                    block: nn.Module = BasicBlock(inplanes, planes, stride, downsample)
                else:
                    block = Bottleneck(inplanes, planes, stride, downsample, groups, wpg)
                blocks[str(j)] = block
                self._where.append((stage, str(j)))
                self._shapes.append((inplanes, planes, stride))
                inplanes = planes * expansion
            setattr(self, f"layer{stage + 1}", blocks)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * expansion, self.arch["num_classes"])
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for unit in self.layer1.values():
            x = unit(x)
        for unit in self.layer2.values():
            x = unit(x)
        for unit in self.layer3.values():
            x = unit(x)
        for unit in self.layer4.values():
            x = unit(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def embed(self, x: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def readout(self, h: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.avgpool(h), 1))

    def _stages(self) -> list[nn.ModuleDict]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def units(self) -> list[tuple[int, nn.Module]]:
        stages = self._stages()
        return [
            (i, stages[stage][key])
            for i, (stage, key) in enumerate(self._where)
            if key in stages[stage]
        ]

    def block_ids(self) -> list[int]:
        return [i for i, unit in self.units() if not isinstance(unit, ShortcutUnit)]

    @property
    def num_original_blocks(self) -> int:
        return len(self._where)

    def block(self, i: int) -> nn.Module:
        stage, key = self._where[self._check_index(i)]
        layer = self._stages()[stage]
        module = layer[key] if key in layer else None  # noqa: SIM401 (ModuleDict has no .get)
        if module is None or isinstance(module, ShortcutUnit):
            raise UserError(f"block {i} has been removed; remaining blocks: {self.block_ids()}")
        return module

    def group_of(self, i: int) -> int:
        return self._where[self._check_index(i)][0]

    @property
    def num_groups(self) -> int:
        return 4

    def key_of(self, i: int) -> str:
        """The state_dict prefix of original block ``i`` (``layer2.0``)."""
        stage, key = self._where[self._check_index(i)]
        return f"layer{stage + 1}.{key}"

    def bypass(self, i: int, h: Tensor) -> Tensor:
        downsample = self.block(i).downsample
        return h if downsample is None else nn.functional.relu(downsample(h))

    def remove_block(self, i: int) -> None:
        block = self.block(i)
        stage, key = self._where[i]
        layer = self._stages()[stage]
        if block.downsample is not None:
            layer[key] = ShortcutUnit(block.downsample)  # same key: same place, same names
        else:
            del layer[key]
        self.removed.append(i)

    def new_block(self, i: int) -> nn.Module:
        """A freshly initialised block shaped like original block ``i`` (phasing rebuilds a
        block put aside from it)."""
        inplanes, planes, stride = self._shapes[self._check_index(i)]
        arch, expansion = self.arch, 1 if self.arch["block"] == "basic" else 4
        downsample = None
        if stride != 1 or inplanes != planes * expansion:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * expansion),
            )
        if arch["block"] == "basic":
            return BasicBlock(inplanes, planes, stride, downsample)
        return Bottleneck(
            inplanes, planes, stride, downsample, arch["groups"], arch["width_per_group"]
        )

    def reinsert_block(self, i: int, block: nn.Module) -> None:
        """Put removed block ``i`` back at its place (phased pruning removes a block, then
        trains with it fading out); it takes back the shortcut its unit kept."""
        stage, key = self._where[self._check_index(i)]
        layer = self._stages()[stage]
        unit = layer[key] if key in layer else None  # noqa: SIM401 (ModuleDict has no .get)
        if i not in self.removed or not (unit is None or isinstance(unit, ShortcutUnit)):
            raise UserError(f"block {i} is not removed; it cannot be put back")
        if isinstance(unit, ShortcutUnit):
            block.downsample = unit.downsample
        self.removed.remove(i)
        items = [(k, m) for k, m in layer.items() if k != key] + [(key, block)]
        setattr(self, f"layer{stage + 1}", nn.ModuleDict(sorted(items, key=lambda kv: int(kv[0]))))

    def spec(self) -> dict[str, Any]:
        spec = {
            "format": SPEC_FORMAT,
            "name": self.name,
            "arch": dict(self.arch),
            "removed": list(self.removed),
            "remaining_config": list(self.config),
        }
        if self.narrowed_widths:  # applied after the removals (channels come after blocks)
            spec["widths"] = {name: list(w) for name, w in self.narrowed_widths.items()}
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any], *, seed: int | None = None) -> TorchvisionResNet:
        if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
            raise UserError(f"not a torchvision ResNet spec (expected format {SPEC_FORMAT!r})")
        try:
            if seed is None:
                model = cls(spec["arch"], spec.get("name"))
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    model = cls(spec["arch"], spec.get("name"))
            for i in spec["removed"]:
                model.remove_block(int(i))
            if spec.get("widths"):
                model.narrow_to(spec["widths"])
        except KeyError as exc:
            raise UserError(f"torchvision ResNet spec lacks the field {exc.args[0]!r}") from None
        return model


# -- building by name, weights, foreign models ------------------------------------------------


def arch_of(name: str, num_classes: int = 1000) -> dict[str, Any]:
    """The architecture of torchvision builder ``name`` (``resnet50``, ``wide_resnet50_2``…)."""
    key = normalised_key(name, ARCHITECTURES, "torchvision ResNet")
    return _check_arch({**ARCHITECTURES[key], "num_classes": num_classes})


def _weights_state(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A state_dict from a weights file: torchvision's plain state_dict, a squeezr model file
    or a ``{"state_dict": ...}``/``{"model": ...}`` checkpoint; a DDP ``module.`` prefix is
    dropped."""
    payload = load_torch_file(path, "weights file", "pass a state_dict saved with torch.save")
    if isinstance(payload, dict):
        for key in ("state_dict", "model"):
            if isinstance(payload.get(key), dict):
                payload = payload[key]
                break
    if not isinstance(payload, dict) or not all(isinstance(v, Tensor) for v in payload.values()):
        raise UserError(f"{path} holds no state_dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in payload.items()}


def load_weights(
    model: TorchvisionResNet,
    state: Mapping[str, Tensor],
    source: str,
    hint: str = "is it the weights of this architecture?",
) -> None:
    """Load ``state`` (torchvision key names) into ``model``; a classifier of another size
    (weights for ImageNet's 1,000 classes, a model for 10) is left freshly initialised.
    ``hint`` ends the error when keys do not fit."""
    state = dict(state)
    fc = state.get("fc.weight")
    if fc is not None and tuple(fc.shape) != tuple(model.fc.weight.shape):
        state.pop("fc.weight")
        state.pop("fc.bias", None)
        missing_ok = {"fc.weight", "fc.bias"}
    else:
        missing_ok = set()
    result = model.load_state_dict(state, strict=False)
    missing = sorted(set(result.missing_keys) - missing_ok)
    if missing or result.unexpected_keys:
        wrong = missing[:3] or result.unexpected_keys[:3]
        raise UserError(
            f"{source} does not fit {model.name or 'this ResNet'}: "
            f"{'missing' if missing else 'unexpected'} keys such as {', '.join(wrong)}; "
            f"{hint}"
        )


def build(
    name: str, *, weights: str | os.PathLike[str] | None = None, num_classes: int | None = None
) -> TorchvisionResNet:
    """torchvision builder ``name`` (``resnet50``…) built here; ``weights`` a weights file
    loaded as is. ``num_classes`` defaults to the weights' classifier (else 1,000); when it
    differs from theirs the classifier starts fresh (fine-tuning to another dataset)."""
    state = _weights_state(weights) if weights is not None else None
    if num_classes is None:
        fc = state.get("fc.weight") if state is not None else None
        num_classes = int(fc.shape[0]) if fc is not None else 1000
    key = normalised_key(name, ARCHITECTURES, "torchvision ResNet")
    model = TorchvisionResNet(arch_of(key, num_classes), name=key)
    if state is not None:
        load_weights(model, state, str(weights))
    return model


def _structure(model: Any) -> dict[str, Any] | None:
    """The architecture of a torchvision-like ResNet object, or None when it is not one."""
    names = ("conv1", "bn1", "maxpool", "layer1", "layer2", "layer3", "layer4", "fc")
    if not all(hasattr(model, n) for n in names):
        return None
    first = model.layer1[0]
    kind = "bottleneck" if hasattr(first, "conv3") else "basic"
    problems = []
    for stage in range(1, 5):
        for block in getattr(model, f"layer{stage}"):
            if block.conv2.dilation != (1, 1):
                problems.append("dilated stages (replace_stride_with_dilation)")
            if not isinstance(block.bn1, nn.BatchNorm2d):
                problems.append(f"{type(block.bn1).__name__} instead of BatchNorm2d")
    if problems:
        raise UserError(f"squeezr cannot represent this ResNet: {sorted(set(problems))[0]}")
    if not isinstance(model.fc, nn.Linear):
        raise UserError(
            f"squeezr needs the ResNet's classifier fc as an nn.Linear, not "
            f"{type(model.fc).__name__} (timm: build it with num_classes > 0)"
        )
    groups = first.conv2.groups
    planes = STAGE_WIDTHS[0]
    width = first.conv2.out_channels
    return {
        "block": kind,
        "layers": [len(getattr(model, f"layer{s}")) for s in range(1, 5)],
        "groups": groups,
        "width_per_group": width * 64 // (planes * groups),
        "num_classes": model.fc.out_features,
    }


SUPPORTED = (
    "squeezr takes torchvision-layout ResNets: torchvision's, or timm's plain resnet*/"
    "wide_resnet*/resnext* (one 7x7 stem conv, ReLU, average pooling, no squeeze-excitation, "
    "anti-aliasing or average-pool downsampling)"
)
"""What :func:`adapt` accepts, ending its refusals."""


def _check_outputs(model: nn.Module, adapted: TorchvisionResNet) -> None:
    """Refuse ``model`` when the adapted network does not compute what it does. A foreign
    object can have torchvision's key names yet differ where no parameter shows it (timm's
    SiLU or anti-aliased variants, max pooling): compare both on a random 64² batch in
    evaluation mode (no dropout or drop-path), modes restored after."""
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=dtype)
    modes = model.training
    adapted.to(device=device, dtype=dtype)
    try:
        model.eval()
        adapted.eval()
        with torch.no_grad():
            theirs = model(x.to(device))
            ours = adapted(x.to(device))
    finally:
        model.train(modes)
    if not isinstance(theirs, Tensor) or theirs.shape != ours.shape:
        raise UserError(f"the {type(model).__name__} object's output is not logits; {SUPPORTED}")
    if (theirs - ours).abs().max() > 1e-4 * (1 + theirs.abs().max()):
        raise UserError(
            f"the {type(model).__name__} object computes something else than its torchvision-"
            f"layout weights do (another activation, pooling or stem?); {SUPPORTED}"
        )


def adapt(model: Any) -> TorchvisionResNet | None:
    """A torchvision ResNet object (or one with its structure and key names, such as timm's
    plain ResNets, whose state_dict keys are torchvision's) as this network, with its
    weights; None for anything else. The adapted network's outputs are checked against the
    object's (:func:`_check_outputs`)."""
    if isinstance(model, TorchvisionResNet) or not isinstance(model, nn.Module):
        return None
    arch = _structure(model)
    if arch is None:
        return None
    named = next(
        (
            n
            for n, a in ARCHITECTURES.items()
            if _check_arch({**a, "num_classes": arch["num_classes"]}) == _check_arch(arch)
        ),
        None,
    )
    adapted = TorchvisionResNet(arch, name=named)
    load_weights(adapted, model.state_dict(), f"the {type(model).__name__} object", SUPPORTED)
    _check_outputs(model, adapted)
    return adapted.train(model.training)
