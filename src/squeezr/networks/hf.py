"""Decoder-only language models from Hugging Face transformers as block networks.

A causal LM (``LlamaForCausalLM``, ``Qwen2ForCausalLM``, ``GPT2LMHeadModel``, …) computes
``lm_head(final_norm(layers(embed(ids))))``; its decoder layers are the removable units. Three
things make a transformers layer unlike a ResNet block, and this adapter absorbs them:

* **A layer needs more than the hidden states.** It is called with the sequence's rotary
  embeddings, causal mask, position ids, … which the model computes once per forward. The
  adapter does not rebuild them family by family: it runs the model's *own* forward once per
  sequence length on a batch of one, with every layer replaced by a probe that records the
  arguments it was given (:class:`_LayerArguments`). Those arguments have batch size 1 and
  broadcast over any batch, so a unit is called as ``unit(h)`` on any stack of sequences —
  what the fast oracle needs to advance its candidate streams together. The embedding is
  taken the same way (the first probe's input), so whatever a family adds there (GPT-2's
  position embeddings, dropout) is the model's own code.
* **Layer keys are positional** (``model.layers.7``) and renumber when a layer is deleted.
  The layers move into ``DecoderNet.blocks``, an ``nn.ModuleDict`` keyed by the original
  index, for the whole pruning run; only :func:`save_pretrained` renumbers, writing a folder
  whose config says the new layer count (``num_hidden_layers`` / ``n_layer``, and every
  per-layer list such as ``layer_types`` cut to the kept layers) and which
  ``AutoModelForCausalLM.from_pretrained`` loads as an ordinary model.
* **Not every causal LM has that shape** (logit soft-capping, parallel blocks sharing a norm,
  encoder-decoders). :func:`from_hf` compares the adapter's logits with the model's own on a
  short random sequence and refuses a model whose forward it does not reproduce.

Only transformers is imported here, and only when a model is built from a config or a folder.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from squeezr.blocknet import BlockNet, KeyedBlocks, ResidualScaled
from squeezr.dbx.errors import UserError

__all__ = [
    "TINY_CONFIGS",
    "DecoderLayer",
    "DecoderNet",
    "adapt",
    "build",
    "from_config",
    "from_hf",
    "load_hf",
    "save_pretrained",
]

DEFAULT_SEQUENCE = 256
"""Sequence length MACs are counted for when none is given (``seq_len`` option)."""
_FINAL_NORMS = ("norm", "ln_f", "final_layernorm", "final_layer_norm")
CHECK_TOKENS = 8
"""Length of the random sequence on which :func:`from_hf` compares logits."""


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise UserError(
            "decoder language models need Hugging Face transformers: pip install 'squeezr[hf]'"
        ) from None
    return transformers


class _Captured(Exception):
    """Raised by the first probe once it holds what an embedding-only pass wanted."""

    def __init__(self, hidden: Tensor) -> None:
        super().__init__()
        self.hidden = hidden


class _Probe(nn.Module):
    """Stands in for a decoder layer during a probing pass: records its call, returns its input."""

    def __init__(self, stop: bool) -> None:
        super().__init__()
        self.stop = stop
        self.call: tuple[tuple, dict] | None = None

    def forward(self, hidden: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if self.stop:
            raise _Captured(hidden)
        self.call = (args, kwargs)
        return hidden


class _LayerArguments:
    """The arguments the model passes its layers, per sequence length, device and autograd
    mode (tensors made under inference mode cannot enter a graph that trains)."""

    def __init__(self, hf: nn.Module, layers_attr: str, count: int) -> None:
        self.hf = hf
        self.layers_attr = layers_attr
        self.count = count
        self.cache: dict[tuple, list[tuple[tuple, dict]]] = {}

    @property
    def base(self) -> nn.Module:
        return getattr(self.hf, self.hf.base_model_prefix)

    @contextlib.contextmanager
    def probes(self, stop: bool) -> Iterator[list[_Probe]]:
        """The model's layer list temporarily replaced by probes (restored afterwards)."""
        base = self.base
        saved = getattr(base, self.layers_attr)
        probes = [_Probe(stop) for _ in range(self.count)]
        setattr(base, self.layers_attr, nn.ModuleList(probes))
        try:
            yield probes
        finally:
            setattr(base, self.layers_attr, saved)

    def embed(self, ids: Tensor) -> Tensor:
        """The hidden states the model hands its first layer for ``ids``."""
        with self.probes(stop=True):
            try:
                self.base(input_ids=ids, use_cache=False)
            except _Captured as done:
                return done.hidden
        raise UserError(f"{type(self.hf).__name__} never called its first decoder layer")

    def of(self, index: int, hidden: Tensor) -> tuple[tuple, dict]:
        """``(args, kwargs)`` after the hidden states for original layer ``index``."""
        key = (hidden.shape[1], hidden.device, torch.is_inference_mode_enabled())
        if key not in self.cache:
            ids = torch.zeros(1, hidden.shape[1], dtype=torch.long, device=hidden.device)
            with self.probes(stop=False) as probes, torch.no_grad():
                self.base(input_ids=ids, use_cache=False)
            self.cache[key] = [p.call for p in probes]  # type: ignore[misc]
        return self.cache[key][index]

    def __deepcopy__(self, memo: dict) -> _LayerArguments:
        # The cache holds tensors of one device; a copy (brute-force oracle, teacher) re-probes.
        clone = _LayerArguments(copy.deepcopy(self.hf, memo), self.layers_attr, self.count)
        memo[id(self)] = clone
        return clone


class DecoderLayer(ResidualScaled, nn.Module):
    """One decoder layer called as ``unit(h)``, with the sequence's arguments supplied.

    ``residual_scale`` (``None`` = 1, a float, or a 0-dim tensor, possibly requiring grad)
    scales what the layer adds to the residual stream, ``h + s · (layer(h) − h)``: block-
    gradient saliency takes ∂loss/∂s, phased pruning fades s to 0
    (:class:`squeezr.blocknet.ResidualScaled`).
    """

    def __init__(self, layer: nn.Module, index: int, arguments: _LayerArguments) -> None:
        super().__init__()
        self.layer = layer
        self.index = index
        self.arguments = arguments  # shared by all layers of the model
        self.residual_scale = None

    def forward(self, h: Tensor) -> Tensor:
        args, kwargs = self.arguments.of(self.index, h)
        out = self.layer(h, *args, **kwargs)
        if isinstance(out, tuple):  # layers of some families return (hidden, attention, ...)
            out = out[0]
        scale = self.residual_scale
        if scale is not None:
            out = h + scale * (out - h)
        return out


def _layers_attr(base: nn.Module, count: int) -> str:
    for name, child in base.named_children():
        if isinstance(child, nn.ModuleList) and len(child) == count:
            return name
    raise UserError(
        f"{type(base).__name__} has no list of {count} decoder layers (config.num_hidden_layers); "
        "squeezr's decoder adapter needs embed → layers → final norm → lm_head"
    )


def _final_norm_attr(base: nn.Module) -> str:
    for name in _FINAL_NORMS:
        if isinstance(getattr(base, name, None), nn.Module):
            return name
    raise UserError(
        f"{type(base).__name__} has no final norm ({', '.join(_FINAL_NORMS)}); squeezr's decoder "
        "adapter needs embed → layers → final norm → lm_head"
    )


class DecoderNet(KeyedBlocks, BlockNet):
    """A causal LM whose decoder layers can be removed: ``readout(units(embed(ids)))``.

    Built by :func:`from_hf` (which checks it reproduces the model), :func:`from_config` or
    :func:`load_hf`. ``forward(ids)`` returns logits ``(N, T, vocab)``. ``input_shape`` is
    ``(seq_len,)``: MACs are counted per sequence of that length.
    """

    SPEC_FORMAT = "squeezr.hf/1"
    input_name = "input_ids"
    unit_noun = "layer"

    def __init__(self, hf: nn.Module, seq_len: int = DEFAULT_SEQUENCE) -> None:
        super().__init__()
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise UserError(f"seq_len must be a positive integer, got {seq_len!r}")
        self.input_shape = (seq_len,)
        config = hf.config
        count = int(config.num_hidden_layers)
        base = getattr(hf, hf.base_model_prefix, None)
        if not isinstance(base, nn.Module) or hf.get_output_embeddings() is None:
            raise UserError(
                f"{type(hf).__name__} is not a causal language model with an lm_head; "
                "load it with AutoModelForCausalLM"
            )
        self.layers_attr = _layers_attr(base, count)
        self.norm_attr = _final_norm_attr(base)
        layers = getattr(base, self.layers_attr)
        arguments = _LayerArguments(hf, self.layers_attr, count)
        setattr(base, self.layers_attr, nn.ModuleList())  # the layers now live in ``blocks``
        self.hf = hf
        self.blocks = nn.ModuleDict(
            {str(i): DecoderLayer(layer, i, arguments) for i, layer in enumerate(layers)}
        )
        self.arguments = arguments
        self.removed: list[int] = []

    @property
    def hf_config(self) -> Any:
        """The model's transformers config (of the unpruned model until export; ``config``
        is the block network's remaining blocks per group)."""
        return self.hf.config

    # -- the block-network interface ---------------------------------------------------------

    def embed(self, ids: Tensor) -> Tensor:
        """Token ids ``(N, T)`` → the hidden states the model gives its first layer."""
        limit = getattr(self.hf_config, "max_position_embeddings", None)
        if limit is not None and ids.shape[-1] > limit:
            raise UserError(
                f"sequences of {ids.shape[-1]} tokens are longer than the {limit} positions "
                f"this model has; use --seq-len {limit} or less"
            )
        return self.arguments.embed(ids)

    def readout(self, h: Tensor) -> Tensor:
        """Hidden states → logits: the final norm, then the lm_head."""
        norm = getattr(getattr(self.hf, self.hf.base_model_prefix), self.norm_attr)
        return self.hf.get_output_embeddings()(norm(h))

    @property
    def num_original_blocks(self) -> int:
        return self.arguments.count

    def example_input(self, input_shape: Sequence[int] | None = None, batch: int = 1) -> Tensor:
        """Token ids 0 of ``(batch, seq_len)`` on the model's device, for export."""
        length = self._sequence_length(input_shape)
        device = next(self.parameters()).device
        return torch.zeros(batch, length, dtype=torch.long, device=device)

    def _sequence_length(self, input_shape: Sequence[int] | None) -> int:
        if input_shape is None:
            return self.input_shape[0]
        if len(input_shape) != 1 or int(input_shape[0]) < 1:
            raise UserError(
                f"a decoder's input shape is (sequence length,), not {tuple(input_shape)}"
            )
        return int(input_shape[0])

    def block_macs(self, input_shape: Sequence[int] | None = None) -> dict[int, int]:
        """Per remaining layer: multiply-accumulates per sequence of ``input_shape = (T,)``
        (default :attr:`input_shape`) that removing it saves: T × its weight matrices, plus
        the attention products q·kᵀ and attn·v counted in full, 2·T²·heads·head_dim (which
        the generic hook-based count leaves out)."""
        t = self._sequence_length(input_shape)
        config = self.hf_config
        heads = int(config.num_attention_heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        return {
            i: t * _matrix_macs(unit) + 2 * t * t * heads * head_dim for i, unit in self.units()
        }

    def count_macs(self, input_shape: Sequence[int] | None = None) -> int:
        """Multiply-accumulates of one forward pass on one sequence (default
        :attr:`input_shape`): the layers (:meth:`block_macs`) and the lm_head; embedding lookups, norms, activations
        and softmax are not counted."""
        t = self._sequence_length(input_shape)
        head = self.hf.get_output_embeddings()
        return sum(self.block_macs(input_shape).values()) + t * head.weight.numel()

    # -- spec ---------------------------------------------------------------------------------

    def spec(self) -> dict[str, Any]:
        """JSON-able description from which :meth:`from_spec` rebuilds this shape."""
        return {
            "format": self.SPEC_FORMAT,
            "model_class": type(self.hf).__name__,
            # as config.json holds it: JSON's string keys (id2label's ints would not be)
            "config": json.loads(self.hf_config.to_json_string(use_diff=False)),
            "seq_len": self.input_shape[0],
            "removed": list(self.removed),
            "remaining_config": list(self.config),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], *, seed: int | None = None) -> DecoderNet:
        """A freshly initialised model of the shape ``spec`` describes (removals replayed);
        ``seed`` as in :meth:`squeezr.models.ResNet.from_spec`."""
        if not isinstance(spec, dict) or spec.get("format") != cls.SPEC_FORMAT:
            raise UserError(f"not a squeezr decoder spec (expected format {cls.SPEC_FORMAT!r})")
        transformers = _transformers()
        try:
            model_class = getattr(transformers, spec["model_class"], None)
            if model_class is None:
                raise UserError(
                    f"this transformers has no {spec['model_class']}; the model was saved with "
                    "another version"
                )
            config = dict(spec["config"])
            config_class = transformers.AutoConfig.for_model(config.pop("model_type")).__class__
            with torch.random.fork_rng(devices=[], enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(seed)
                model = model_class(config_class.from_dict(config))
            net = from_hf(model, check=False, seq_len=int(spec["seq_len"]))
            for i in spec["removed"]:
                net.remove_block(int(i))
        except KeyError as exc:
            raise UserError(f"decoder spec lacks the field {exc.args[0]!r}") from None
        return net


def _matrix_macs(module: nn.Module) -> int:
    """Multiply-accumulates per token of the weight matrices in ``module``: ``nn.Linear`` and
    transformers' ``Conv1D`` (GPT-2's transposed linear), by their 2-D weights."""
    return sum(
        m.weight.numel()
        for m in module.modules()
        if (isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D") and m.weight.dim() == 2
    )


def from_hf(model: nn.Module, *, check: bool = True, seq_len: int = DEFAULT_SEQUENCE) -> DecoderNet:
    """``model`` (a transformers causal LM) as a :class:`DecoderNet`; the net takes over its
    layers, so use the net from now on.

    With ``check`` (the default), the net's logits are compared with the model's own on a
    random sequence of :data:`CHECK_TOKENS` tokens, and a model the adapter does not
    reproduce is refused with a UserError.
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "get_output_embeddings"):
        raise UserError(
            f"{type(model).__name__} is not a transformers model; squeezr's decoder adapter "
            "takes a causal LM (AutoModelForCausalLM)"
        )
    if getattr(config, "is_encoder_decoder", False):
        raise UserError(f"{type(model).__name__} is an encoder-decoder; only decoder-only LMs")
    reference = None
    if check:
        generator = torch.Generator().manual_seed(0)
        length = min(CHECK_TOKENS, int(getattr(config, "max_position_embeddings", CHECK_TOKENS)))
        device = next(model.parameters()).device
        ids = torch.randint(config.vocab_size, (1, length), generator=generator).to(device)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            reference = model(input_ids=ids, use_cache=False).logits
    net = DecoderNet(model, seq_len)
    if reference is not None:
        with torch.no_grad():
            ours = net(ids)
        net.train(was_training)
        tolerance = 1e-5 * float(reference.abs().max()) + 1e-6  # the same kernels: ~exact
        if ours.shape != reference.shape or float((ours - reference).abs().max()) > tolerance:
            raise UserError(
                f"{type(model).__name__} does not compute embed → decoder layers → final norm → "
                "lm_head (its logits differ from the adapter's); squeezr cannot prune it"
            )
    return net


TINY_CONFIGS: dict[str, dict[str, Any]] = {
    # Random tiny models for tests, benchmarks and examples (a few hundred thousand params).
    "tiny-llama": {
        "model_type": "llama",
        "vocab_size": 512,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
    },
    "tiny-qwen2": {
        "model_type": "qwen2",
        "vocab_size": 512,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "use_sliding_window": True,
        "sliding_window": 16,
        "max_window_layers": 3,
    },
    "tiny-gpt2": {
        "model_type": "gpt2",
        "vocab_size": 512,
        "n_embd": 64,
        "n_layer": 6,
        "n_head": 4,
        "n_positions": 256,
        "bos_token_id": 0,
        "eos_token_id": 0,
    },
}


def from_config(
    config: Any, *, seed: int | None = None, seq_len: int = DEFAULT_SEQUENCE
) -> DecoderNet:
    """A randomly initialised causal LM of a transformers ``config`` (object, dict with
    ``model_type``, or path of a ``config.json``) as a :class:`DecoderNet`."""
    transformers = _transformers()
    if isinstance(config, str | os.PathLike):
        try:
            config = transformers.AutoConfig.from_pretrained(str(config), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise UserError(
                f"{config}: not a transformers config ({exc})".splitlines()[0]
            ) from None
    elif isinstance(config, dict):
        values = dict(config)
        if "model_type" not in values:
            raise UserError("a transformers config needs its model_type (e.g. 'llama', 'gpt2')")
        try:
            config = transformers.AutoConfig.for_model(values.pop("model_type"), **values)
        except ValueError as exc:
            raise UserError(f"bad transformers config: {exc}".splitlines()[0]) from None
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        try:
            model = transformers.AutoModelForCausalLM.from_config(config)
        except ValueError as exc:
            raise UserError(f"no causal LM for this config: {exc}".splitlines()[0]) from None
    return from_hf(model, seq_len=seq_len)


def load_hf(path: str | os.PathLike[str], *, seq_len: int = DEFAULT_SEQUENCE) -> DecoderNet:
    """A causal LM from a local folder (``config.json`` + weights, as ``save_pretrained``
    writes) or, for a random init, a folder or ``config.json`` with a config only. Never
    downloads: the folder must hold everything."""
    transformers = _transformers()
    source = Path(path).expanduser()
    if source.is_file():
        return from_config(source, seq_len=seq_len)
    if not (source / "config.json").is_file():
        raise UserError(f"{source}: no config.json; pass a transformers model folder or config")
    weights = [*source.glob("*.safetensors"), *source.glob("pytorch_model*.bin")]
    if not weights:
        return from_config(source, seq_len=seq_len)
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(source), local_files_only=True
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"{source}: cannot load the model ({exc})".splitlines()[0]) from None
    return from_hf(model, seq_len=seq_len)


def build(
    name: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    seq_len: int = DEFAULT_SEQUENCE,
    seed: int | None = None,
    **options: Any,
) -> DecoderNet:
    """``hf:SOURCE`` model sources: a transformers model folder (weights and config, as
    ``save_pretrained`` writes), a ``config.json`` or a folder with only a config (random
    init, ``seed``), or one of :data:`TINY_CONFIGS` (random tiny models for trying things).

    The weights come from the folder, so ``weights`` must be None; ``seq_len`` is the
    sequence length MACs are counted for (the dataset's). Other ``options`` (such as the
    dataset's class count, which a language model has no use for) are ignored.
    """
    if weights is not None:
        raise UserError("hf: models take their weights from their folder; drop the weights file")
    path = Path(name).expanduser()
    if not path.exists() and name not in TINY_CONFIGS:
        raise UserError(
            f"hf:{name}: no such folder or config file (or tiny model: {', '.join(TINY_CONFIGS)}); "
            "squeezr never downloads models: save_pretrained one into a folder first"
        )
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        if path.exists():
            return load_hf(path, seq_len=seq_len)
        return from_config(TINY_CONFIGS[name], seq_len=seq_len)


def adapt(model: Any) -> DecoderNet | None:
    """A transformers causal LM object as a :class:`DecoderNet` (:func:`from_hf`, checked);
    None for anything else, so that other adapters get their turn."""
    if type(model).__module__.startswith("transformers.") and hasattr(
        model, "get_output_embeddings"
    ):
        return from_hf(model)
    return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' own progress bars off (a one-shard save needs none), restored after."""
    from transformers.utils import logging

    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            logging.enable_progress_bar()


def _pruned_config(net: DecoderNet) -> Any:
    """The config of the pruned model: the kept layer count, and every per-layer list (a list
    with one entry per original layer, such as ``layer_types``) cut to the kept layers."""
    config = copy.deepcopy(net.hf_config)
    keep = net.block_ids()
    count = net.num_original_blocks
    for name, value in config.to_diff_dict().items():
        if isinstance(value, list | tuple) and len(value) == count and count > 1:
            setattr(config, name, type(value)(value[i] for i in keep))
    config.num_hidden_layers = len(keep)
    return config


def save_pretrained(net: DecoderNet, folder: str | os.PathLike[str]) -> Path:
    """Write the pruned model as a transformers folder (``config.json`` with the new layer
    count, safetensors weights, layers renumbered 0..n-1), which
    ``AutoModelForCausalLM.from_pretrained(folder)`` loads with the same logits.

    Crash-safe: written into a temporary folder beside ``folder``, then renamed over it. An
    existing ``folder`` is replaced only when it is empty or a model folder (has a
    ``config.json``), never a folder of other files.
    """
    target = Path(folder).expanduser()
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} exists and is not a folder; choose another export path")
    if target.is_dir() and any(target.iterdir()) and not (target / "config.json").is_file():
        raise UserError(
            f"{target} is a folder with other files (no config.json): squeezr replaces only "
            "a model folder it wrote; choose a new or empty folder"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    hf, base = net.hf, getattr(net.hf, net.hf.base_model_prefix)
    saved_config = hf.config
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        setattr(base, net.layers_attr, nn.ModuleList([unit.layer for _, unit in net.units()]))
        hf.config = base.config = _pruned_config(net)
        with _quiet():
            hf.save_pretrained(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        setattr(base, net.layers_attr, nn.ModuleList())
        hf.config = base.config = saved_config
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target
