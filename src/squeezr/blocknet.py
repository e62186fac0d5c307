"""The block-sequence interface: what squeezr needs of a network to prune it block by block.

A *block network* is an ``nn.Module`` whose forward is ``readout(units applied in order to
embed(inputs))`` and whose units are residual blocks (removable) or what removed blocks left
behind. The pruning loop, the trainer, the saliency methods (the fast oracle included),
accounting, save/load and export use only this interface plus a :class:`squeezr.tasks.Task`,
so a new family of networks is one adapter: a :class:`BlockNet` subclass in
``squeezr/networks/<family>.py`` (docs/networks.md says how to write one).

Blocks keep the index they had in the unpruned network for life (logs, removal orders and
rankings compare across runs), removal is structural (the parameters leave the
``state_dict``), and a pruned network is rebuilt from a JSON-able :meth:`BlockNet.spec`
before its weights are loaded (:func:`from_spec`, :func:`load_model`).

An adapter must implement :meth:`~BlockNet.embed`, :meth:`~BlockNet.readout`,
:meth:`~BlockNet.units`, :meth:`~BlockNet.block_ids`, :meth:`~BlockNet.block`,
:meth:`~BlockNet.remove_block`, :meth:`~BlockNet.spec` and :meth:`~BlockNet.from_spec`, and
set ``SPEC_FORMAT``; it overrides :meth:`~BlockNet.bypass` when a block changes the shape of
its input. Everything else has a generic default (parameter and MAC counting by module,
residual scales through the block's ``residual_scale`` attribute, :class:`ResidualScaled`).
"""

from __future__ import annotations

import copy
import importlib
import operator
import os
import pkgutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from squeezr.dbx.errors import UserError
from squeezr.torchfiles import load_torch_file, save_torch_file, write_atomically

INTERFACE = (
    "embed/readout, units() -> [(index, module)], block_ids(), block(i), remove_block(i), "
    "bypass(i, h), spec()/from_spec()"
)
"""What a network needs to be pruned, as the one-line error for an unsupported model says."""

_FAMILY_MODULES = {"cifar-resnet": "squeezr.models"}
"""Families whose adapter is not ``squeezr.networks.<family>`` (with '-' as '_')."""


class ResidualScaled:
    """Mixin for blocks: a ``residual_scale`` attribute that multiplies the residual branch.

    ``None`` (= 1), a number or a 0-dim tensor, possibly requiring grad (block-gradient
    saliency differentiates the loss by it; phasing and stochastic depth set it per batch).
    It is a plain attribute, never a parameter or buffer, so it stays out of the
    ``state_dict`` and out of parameter counts. Under ``torch.compile`` a float value is
    baked into the graph; to change it often, assign a 0-dim tensor once and update it in
    place. Mix it in before ``nn.Module`` and set ``self.residual_scale = None`` in
    ``__init__``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "residual_scale":
            # Bypass nn.Module registration: an nn.Parameter here must not become a parameter.
            if value is not None and not isinstance(value, int | float | Tensor):
                raise UserError(
                    f"residual_scale must be None, a number or a 0-dim tensor, not {type(value).__name__}"
                )
            if isinstance(value, Tensor) and value.dim() != 0:
                raise UserError("residual_scale must be a 0-dim tensor (one scalar per block)")
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)  # type: ignore[misc]


class BlockNet(nn.Module):
    """Base class of prunable networks (see the module docstring for what to implement).

    Subclasses are registered by their ``SPEC_FORMAT`` (``"squeezr.<family>/<version>"``), so
    that :func:`from_spec` and :func:`load_model` rebuild any family from its spec.
    """

    SPEC_FORMAT: ClassVar[str] = ""
    input_shape: ClassVar[tuple[int, ...]] = (3, 224, 224)
    """One sample's input shape for counting MACs and for export (without the batch)."""
    input_name: ClassVar[str] = "images"
    """The input's name in ONNX exports."""

    unit_noun: ClassVar[str] = "block"
    """What the family calls its removable units, in messages ("decoder layer")."""

    _registry: ClassVar[dict[str, type[BlockNet]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.SPEC_FORMAT:
            BlockNet._registry[cls.SPEC_FORMAT] = cls

    # -- what an adapter implements ------------------------------------------------------------

    def embed(self, x: Tensor) -> Tensor:
        """Model inputs → the activation the first unit takes (a ResNet's stem)."""
        raise NotImplementedError

    def readout(self, h: Tensor) -> Tensor:
        """The last unit's output → the network's outputs (a ResNet's pool + classifier)."""
        raise NotImplementedError

    def units(self) -> list[tuple[int, nn.Module]]:
        """Forward-order ``(original index, module)`` of the remaining blocks and of what
        removed blocks left behind (a kept shortcut); each is called as ``unit(h) -> h`` on a
        batch, so candidate streams can be stacked along the batch dimension."""
        raise NotImplementedError

    def block_ids(self) -> list[int]:
        """Original indices of the remaining (removable) blocks, in forward order."""
        raise NotImplementedError

    def block(self, i: int) -> nn.Module:
        """The remaining block with original index ``i`` (UserError if removed or unknown)."""
        raise NotImplementedError

    def remove_block(self, i: int) -> None:
        """Remove block ``i`` structurally, in place; what it leaves computes :meth:`bypass`."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """JSON-able shape (``format``, the family's config, removed blocks) from which
        :meth:`from_spec` rebuilds this network before its weights are loaded."""
        raise NotImplementedError

    @classmethod
    def from_spec(cls, spec: dict[str, Any], *, seed: int | None = None) -> BlockNet:
        """A freshly initialised network of the shape ``spec`` describes (removals replayed)."""
        raise NotImplementedError

    @property
    def num_original_blocks(self) -> int:
        """How many blocks the network was built with (original indices run 0..n-1)."""
        raise NotImplementedError

    # -- generic defaults ---------------------------------------------------------------------

    def _check_index(self, i: int) -> int:
        """``i`` as a plain int (numpy/torch integers accepted) if it names an original block;
        otherwise a UserError giving the valid range."""
        try:
            i = operator.index(i)
        except TypeError:
            raise UserError(f"{self.unit_noun} index must be an integer, got {i!r}") from None
        if not 0 <= i < self.num_original_blocks:
            raise UserError(
                f"{self.unit_noun} index {i!r} is out of range; this network has "
                f"{self.unit_noun}s 0..{self.num_original_blocks - 1}"
            )
        return i

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x)
        for _, unit in self.units():
            h = unit(h)
        return self.readout(h)

    def bypass(self, i: int, h: Tensor) -> Tensor:
        """What block ``i`` computes once removed, from its input ``h``: the identity here;
        families whose blocks change shape override it (a ResNet's kept shortcut)."""
        return h

    def removable_modules(self, i: int) -> list[nn.Module]:
        """The layers that disappear when block ``i`` is removed: the block's own
        ``removable_modules()`` when it has one, else the whole block."""
        block = self.block(i)
        own = getattr(block, "removable_modules", None)
        return list(own()) if callable(own) else [block]

    def set_residual_scale(self, i: int, scale: float | Tensor | None) -> None:
        """Scale block ``i``'s residual branch (``None`` = 1); see :class:`ResidualScaled`."""
        self.block(i).residual_scale = scale

    def group_of(self, i: int) -> int:
        """The group (stage) of original block ``i``; blocks of one group share a shape."""
        return 0

    @property
    def num_groups(self) -> int:
        return 1 + max((self.group_of(i) for i in self.block_ids()), default=0)

    @property
    def config(self) -> tuple[int, ...]:
        """Remaining blocks per group."""
        counts = [0] * self.num_groups
        for i in self.block_ids():
            counts[self.group_of(i)] += 1
        return tuple(counts)

    def example_input(self, input_shape: Sequence[int] | None = None, batch: int = 1) -> Tensor:
        """A zero input batch of ``input_shape`` (default :attr:`input_shape`) on the
        network's device, for counting and export."""
        shape = tuple(self.input_shape if input_shape is None else input_shape)
        param = next(self.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        return torch.zeros(batch, *shape, device=device)

    def block_params(self) -> dict[int, int]:
        """Per remaining block: the parameters removing it deletes."""
        return {i: _unique_params(self.removable_modules(i)) for i in self.block_ids()}

    def count_macs(self, input_shape: Sequence[int] | None = None) -> int:
        """Multiply-accumulates of one forward pass on one sample (conv and linear layers)."""
        return sum(_layer_macs(self, input_shape).values())

    def block_macs(self, input_shape: Sequence[int] | None = None) -> dict[int, int]:
        """Per remaining block: the MACs removing it saves."""
        macs = _layer_macs(self, input_shape)
        return {
            i: sum(macs.get(id(m), 0) for top in self.removable_modules(i) for m in top.modules())
            for i in self.block_ids()
        }


class KeyedBlocks:
    """Bookkeeping for a :class:`BlockNet` whose blocks live in ``self.blocks``, an
    ``nn.ModuleDict`` keyed by original index, and keep their shape, so that a removed block
    leaves nothing behind (transformer blocks, decoder layers). The family builds
    ``self.blocks`` and an empty ``self.removed`` list; removal deletes the key, so the
    parameter names of the other blocks never change. Mix in before :class:`BlockNet`.
    """

    blocks: nn.ModuleDict
    removed: list[int]

    def block_ids(self) -> list[int]:
        """Original indices of the remaining blocks, in forward order."""
        return [int(k) for k in self.blocks]

    def units(self) -> list[tuple[int, nn.Module]]:
        """Forward-order ``(original index, block)``; removed blocks leave no unit."""
        return [(int(k), m) for k, m in self.blocks.items()]

    def block(self, i: int) -> nn.Module:
        """The remaining block with original index ``i``."""
        key = str(self._check_index(i))  # type: ignore[attr-defined]
        if key not in self.blocks:
            noun = self.unit_noun  # type: ignore[attr-defined]
            raise UserError(f"{noun} {i} has been removed; remaining {noun}s: {self.block_ids()}")
        return self.blocks[key]

    def remove_block(self, i: int) -> None:
        """Remove block ``i``: its parameters leave the ``state_dict``; nothing renumbers."""
        self.block(i)
        del self.blocks[str(i)]
        self.removed.append(int(i))


# -- counting ---------------------------------------------------------------------------------


def count_params(module: nn.Module) -> int:
    """Number of parameters (BN affine included; BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters())


def _unique_params(modules: Sequence[nn.Module]) -> int:
    seen: dict[int, int] = {}
    for m in modules:
        for p in m.parameters():
            seen[id(p)] = p.numel()
    return sum(seen.values())


def block_params(model: BlockNet) -> dict[int, int]:
    """Per remaining block: parameters that removing it deletes."""
    return model.block_params()


def count_macs(model: BlockNet, input_shape: Sequence[int] | None = None) -> int:
    """MACs of one forward pass on one sample of ``input_shape`` (the family's default)."""
    return model.count_macs(input_shape)


def block_macs(model: BlockNet, input_shape: Sequence[int] | None = None) -> dict[int, int]:
    """Per remaining block: MACs that removing it saves."""
    return model.block_macs(input_shape)


def _layer_macs(model: BlockNet, input_shape: Sequence[int] | None) -> dict[int, int]:
    """MACs per layer (keyed by ``id(module)``) of one forward pass on one sample, measured
    with forward hooks: convolutions and linear layers only (as the CIFAR count), so norms,
    activations, additions and attention's matrix products are not counted."""
    macs: dict[int, int] = {}

    def hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
        weight = module.weight
        if isinstance(module, nn.modules.conv._ConvNd):
            per_output = weight.shape[1] * int(torch.tensor(weight.shape[2:]).prod())
            macs[id(module)] = macs.get(id(module), 0) + output.numel() * per_output
        elif isinstance(module, nn.Linear):
            macs[id(module)] = macs.get(id(module), 0) + output.numel() * module.in_features
        else:  # transformers' Conv1D: a linear layer with a transposed (in, out) weight
            macs[id(module)] = macs.get(id(module), 0) + output.numel() * weight.shape[0]

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.modules.conv._ConvNd | nn.Linear) or type(m).__name__ == "Conv1D"
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _shape_forward(model, model.example_input(input_shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return macs


def output_size(model: BlockNet) -> int:
    """The size of the outputs' last dimension (a classifier's classes, a language model's
    vocabulary), from a forward pass on the meta device."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return int(_shape_forward(model, model.example_input()).shape[-1])
    finally:
        model.train(was_training)


def is_model_source(text: Any) -> bool:
    """Whether ``text`` names a model to build (``FAMILY:NAME`` with a known family)."""
    if not isinstance(text, str) or ":" not in text or Path(text).exists():
        return False
    family = text.partition(":")[0].strip().lower().replace("-", "_")
    return f"squeezr.networks.{family}" in adapter_modules()


def _shape_forward(model: nn.Module, example: Tensor) -> Tensor:
    """Run ``model`` for its shapes only: on the meta device (no arithmetic, no copy of the
    weights: ResNet-50 at 224² takes milliseconds instead of seconds), or for real where
    the forward needs values (data-dependent code)."""
    meta = {
        name: torch.empty_like(t, device="meta")
        for name, t in [*model.named_parameters(), *model.named_buffers()]
    }
    try:
        return torch.func.functional_call(model, meta, (example.to("meta"),))
    except Exception:  # whatever fails on meta tensors runs for real
        return model(example)


# -- families: spec, foreign models -----------------------------------------------------------


def _family_module(fmt: str) -> str | None:
    """The module that defines spec format ``squeezr.<family>/<version>``, by convention."""
    if not fmt.startswith("squeezr.") or "/" not in fmt:
        return None
    family = fmt[len("squeezr.") :].split("/", 1)[0]
    return _FAMILY_MODULES.get(family, f"squeezr.networks.{family.replace('-', '_')}")


def network_class(spec: Any) -> type[BlockNet]:
    """The :class:`BlockNet` subclass whose ``SPEC_FORMAT`` is ``spec["format"]`` (its
    adapter module is imported on first use)."""
    fmt = spec.get("format") if isinstance(spec, dict) else None
    if isinstance(fmt, str) and fmt not in BlockNet._registry:
        module = _family_module(fmt)
        if module is not None:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise UserError(
                        f"network family {fmt!r} needs the package {exc.name!r}; install it"
                    ) from None
    if not isinstance(fmt, str) or fmt not in BlockNet._registry:
        raise UserError(
            f"not a squeezr network spec (format {fmt!r}); was the file written by "
            "squeezr.models.save_model?"
        )
    return BlockNet._registry[fmt]


def from_spec(spec: dict[str, Any], *, seed: int | None = None) -> BlockNet:
    """A freshly initialised network of any family from its :meth:`BlockNet.spec`."""
    return network_class(spec).from_spec(spec, seed=seed)


def adapter_modules() -> list[str]:
    """The adapter modules in ``squeezr.networks`` (each may define ``adapt`` and ``build``)."""
    import squeezr.networks as package

    return [f"squeezr.networks.{m.name}" for m in pkgutil.iter_modules(package.__path__)]


def adapt(model: Any) -> BlockNet:
    """``model`` as a block network: itself when it is one, else what the first adapter whose
    ``adapt(model)`` accepts it makes of it (e.g. a torchvision ResNet); otherwise a one-line
    UserError naming what the interface needs."""
    if isinstance(model, BlockNet):
        return model
    for name in adapter_modules():
        try:
            module = importlib.import_module(name)
        except ImportError:  # an adapter whose optional dependency is not installed
            continue
        convert = getattr(module, "adapt", None)
        adapted = convert(model) if convert is not None else None
        if adapted is not None:
            return adapted
    raise UserError(
        f"squeezr cannot prune a {type(model).__module__}.{type(model).__name__}: a network "
        f"needs {INTERFACE} (see docs/networks.md: one adapter in squeezr/networks/ adds a family)"
    )


def build(
    source: str, *, weights: str | os.PathLike[str] | None = None, **options: Any
) -> BlockNet:
    """The network a model source ``FAMILY:NAME`` names (``torchvision:resnet50``), built by
    ``squeezr.networks.<FAMILY>.build(NAME, weights=..., **options)``."""
    family, _, name = str(source).partition(":")
    module_name = f"squeezr.networks.{family.strip().lower().replace('-', '_')}"
    families = [m.rsplit(".", 1)[1] for m in adapter_modules()]
    if not name or module_name not in adapter_modules():
        raise UserError(
            f"unknown model source {source!r}; use FAMILY:NAME with FAMILY one of "
            f"{', '.join(families)} (e.g. torchvision:resnet50)"
        )
    module = importlib.import_module(module_name)
    if not hasattr(module, "build"):
        raise UserError(f"network family {family!r} builds no models by name")
    return module.build(name.strip(), weights=weights, **options)


# -- saving, loading, export ------------------------------------------------------------------


def save_model(model: BlockNet, path: str | os.PathLike[str]) -> Path:
    """Save ``{"spec": model.spec(), "state_dict": ...}`` atomically (tensors moved to CPU)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return save_torch_file({"spec": model.spec(), "state_dict": state}, path)


def attach_model(exp: Any, model: BlockNet, name: str) -> dict[str, Any]:
    """Save ``model`` (:func:`save_model`) and attach it to dbx experiment ``exp`` as the
    managed file ``name``, which :func:`load_model` reads back; returns attach's info."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(name).name
        save_model(model, path)
        return exp.attach(path, name=name)


def load_model(path: str | os.PathLike[str]) -> BlockNet:
    """Rebuild the saved shape with :func:`from_spec` and load its weights (on CPU)."""
    source = Path(path)
    payload = load_torch_file(
        source, "model file", "pass a file written by squeezr.models.save_model"
    )
    if not isinstance(payload, dict) or "spec" not in payload or "state_dict" not in payload:
        raise UserError(f"{source} is not a squeezr model file (no spec/state_dict)")
    model = from_spec(payload["spec"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"weights in {source} do not fit its spec: {exc}".splitlines()[0]) from None
    return model


def _export_copy(model: BlockNet) -> BlockNet:
    """An eval-mode CPU copy, so that exporting never changes the caller's model."""
    return copy.deepcopy(model).cpu().eval()


def export_torchscript(model: BlockNet, path: str | os.PathLike[str]) -> Path:
    """Save a TorchScript eval-mode copy, loadable without squeezr: scripted
    (``torch.jit.script``) where the family allows it, else traced on an example input."""
    clone = _export_copy(model)
    try:
        compiled = torch.jit.script(clone)
    except Exception:
        with torch.no_grad():
            compiled = torch.jit.trace(clone, (clone.example_input(),))
    return write_atomically(path, lambda tmp: torch.jit.save(compiled, tmp))


def export_onnx(
    model: BlockNet, path: str | os.PathLike[str], input_shape: Sequence[int] | None = None
) -> Path:
    """Export an eval-mode copy to ONNX with a dynamic batch dimension (input
    ``model.input_name``, output ``logits``)."""
    clone = _export_copy(model)
    example = clone.example_input(input_shape)
    name = clone.input_name

    def write(tmp: Path) -> None:
        torch.onnx.export(
            clone,
            (example,),
            tmp,
            input_names=[name],
            output_names=["logits"],
            dynamic_axes={name: {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )

    return write_atomically(path, write)
