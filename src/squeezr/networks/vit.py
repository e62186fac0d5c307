"""Vision Transformers in timm's layout, whose transformer blocks can be removed one by one.

Every parameter name is timm's (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``blocks.N.norm1`` / ``attn.qkv`` / ``attn.proj`` / ``norm2`` / ``mlp.fc1`` / ``mlp.fc2``,
``norm``, ``fc_norm``, ``head``), so a timm ViT's ``state_dict`` (a pretrained weights file)
loads as is, and the forward pass is timm's ``VisionTransformer`` with its default options
(pre-norm blocks, GELU MLP, class token with its own position, LayerNorm eps 1e-6). timm itself
is not needed: on PyPI it requires torchvision, which does not install beside every torch
build, so :func:`from_timm` takes a timm model object *by structure* (its attributes and
``state_dict``) and never imports timm.

Blocks live in ``VisionTransformer.blocks``, an ``nn.ModuleDict`` keyed by the original index
(timm's ``nn.Sequential`` has the same keys, ``"0"`` … ``"depth-1"``, while nothing is
removed). A block is a residual map of the token sequence that never changes its shape, so a
removed block leaves nothing behind: the next block receives what it received.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezr.blocknet import BlockNet, KeyedBlocks, ResidualScaled
from squeezr.dbx.errors import UserError
from squeezr.names import normalised_key
from squeezr.torchfiles import load_torch_file

__all__ = [
    "PRESETS",
    "Block",
    "ViTConfig",
    "VisionTransformer",
    "adapt",
    "build",
    "config_of_timm",
    "from_timm",
    "vit",
]


@dataclass(frozen=True)
class ViTConfig:
    """The shape of a ViT: timm's ``VisionTransformer`` arguments that squeezr supports."""

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    global_pool: str = "token"  # "token" (the class token) or "avg" (mean of patch tokens)

    def __post_init__(self) -> None:
        for name in ("img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "num_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"ViT {name} must be a positive integer, got {value!r}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 0:
            raise UserError(f"ViT depth must be a non-negative integer, got {self.depth!r}")
        if self.img_size % self.patch_size:
            raise UserError(
                f"ViT img_size {self.img_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.embed_dim % self.num_heads:
            raise UserError(
                f"ViT embed_dim {self.embed_dim} is not a multiple of num_heads {self.num_heads}"
            )
        if self.global_pool not in ("token", "avg"):
            raise UserError(f"ViT global_pool must be 'token' or 'avg', got {self.global_pool!r}")

    @property
    def num_tokens(self) -> int:
        """Sequence length inside the blocks: the patches plus the class token."""
        return (self.img_size // self.patch_size) ** 2 + 1

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)


PRESETS: dict[str, ViTConfig] = {
    # timm's names and shapes (ImageNet-1k heads); vit_base_patch16_224 has 86,567,656 params.
    "vit_tiny_patch16_224": ViTConfig(embed_dim=192, num_heads=3),
    "vit_small_patch16_224": ViTConfig(embed_dim=384, num_heads=6),
    "vit_base_patch16_224": ViTConfig(embed_dim=768, num_heads=12),
    "vit_large_patch16_224": ViTConfig(embed_dim=1024, depth=24, num_heads=16),
    "tiny": ViTConfig(embed_dim=192, num_heads=3),
    "small": ViTConfig(embed_dim=384, num_heads=6),
    "base": ViTConfig(embed_dim=768, num_heads=12),
    "large": ViTConfig(embed_dim=1024, depth=24, num_heads=16),
    # For 32x32 images (CIFAR, digits): 64 patches of 4x4, 10 classes.
    "vit_tiny_patch4_32": ViTConfig(
        img_size=32, patch_size=4, num_classes=10, embed_dim=192, num_heads=3
    ),
}


class Attention(nn.Module):
    """timm's multi-head self-attention (fused ``qkv`` projection, ``proj`` out)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """timm's MLP: ``fc1`` → GELU → ``fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(ResidualScaled, nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``+ mlp(norm2(·))``.

    ``residual_scale`` (``None`` = 1, a float, or a 0-dim tensor, possibly requiring grad)
    scales everything the block adds to its input, ``x + s · (block(x) − x)``, as it scales
    a CIFAR block's residual branch: block-gradient saliency takes ∂loss/∂s, phased pruning
    fades s to 0 (:class:`squeezr.blocknet.ResidualScaled`).
    """

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, qkv_bias: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_hidden)
        self.residual_scale = None

    def forward(self, x: Tensor) -> Tensor:
        out = x + self.attn(self.norm1(x))
        out = out + self.mlp(self.norm2(out))
        scale = self.residual_scale
        if scale is not None:
            out = x + scale * (out - x)
        return out


class PatchEmbed(nn.Module):
    """Non-overlapping patches → tokens: a conv with kernel = stride = patch size."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.img_size = (img_size, img_size)
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.img_size:
            raise UserError(
                f"this ViT takes {self.img_size[0]}x{self.img_size[1]} images, "
                f"got {x.shape[-2]}x{x.shape[-1]}"
            )
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(KeyedBlocks, BlockNet):
    """A timm-layout ViT as a block network: ``readout(blocks in order(embed(images)))``.

    ``embed`` = patch embedding, class token, position embedding; ``readout`` = final norm,
    pooling (class token or mean of the patch tokens), ``fc_norm`` and the linear ``head``.
    """

    SPEC_FORMAT = "squeezr.vit/1"

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        if not isinstance(config, ViTConfig):
            raise UserError(f"VisionTransformer takes a ViTConfig, not {type(config).__name__}")
        self.vit_config = config
        self.input_shape = (config.in_chans, config.img_size, config.img_size)
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config.img_size, config.patch_size, config.in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, config.num_tokens, dim) * 0.02)
        self.blocks = nn.ModuleDict(
            {
                str(i): Block(dim, config.num_heads, config.mlp_hidden, config.qkv_bias)
                for i in range(config.depth)
            }
        )
        # timm: the final norm sits before pooling for the class token, after it (fc_norm) for avg.
        avg = config.global_pool == "avg"
        self.norm = nn.Identity() if avg else nn.LayerNorm(dim, eps=1e-6)
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6) if avg else nn.Identity()
        self.head = nn.Linear(dim, config.num_classes)
        self.removed: list[int] = []
        self._init_weights()

    def _init_weights(self) -> None:
        """timm's default init: truncated normal (std 0.02) for linears and embeddings."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    # -- the block-network interface ---------------------------------------------------------

    def embed(self, x: Tensor) -> Tensor:
        """Images → token sequence ``(N, 1 + patches, dim)``."""
        tokens = self.patch_embed(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embed

    def readout(self, h: Tensor) -> Tensor:
        """Token sequence → class logits."""
        h = self.norm(h)
        pooled = h[:, 1:].mean(1) if self.vit_config.global_pool == "avg" else h[:, 0]
        return self.head(self.fc_norm(pooled))

    @property
    def num_original_blocks(self) -> int:
        return self.vit_config.depth

    def block_macs(self, input_shape: Sequence[int] | None = None) -> dict[int, int]:
        """Per remaining block: multiply-accumulates per image that removing it saves (its
        linear layers, and the attention products q·kᵀ and attn·v, which the generic
        hook-based count leaves out), counted from the shapes without running the model."""
        n, d = self.vit_config.num_tokens, self.vit_config.embed_dim
        self._check_input_shape(input_shape)
        per_block = {}
        for i, block in self.units():
            linear = sum(
                m.in_features * m.out_features for m in block.modules() if isinstance(m, nn.Linear)
            )
            per_block[i] = n * linear + 2 * n * n * d  # projections, then q·kᵀ and attn·v
        return per_block

    def count_macs(self, input_shape: Sequence[int] | None = None) -> int:
        """Multiply-accumulates of one forward pass on one image: the patch conv, the blocks'
        linear layers and attention products, the head (norms, GELU, softmax not counted)."""
        c = self.vit_config
        patches = c.num_tokens - 1
        embed = patches * c.embed_dim * c.in_chans * c.patch_size**2
        head = c.embed_dim * c.num_classes
        return embed + sum(self.block_macs(input_shape).values()) + head

    def _check_input_shape(self, input_shape: Sequence[int] | None) -> None:
        c = self.vit_config
        if input_shape is not None and tuple(input_shape) != (c.in_chans, c.img_size, c.img_size):
            raise UserError(
                f"this ViT takes inputs of shape {(c.in_chans, c.img_size, c.img_size)}, "
                f"not {tuple(input_shape)}"
            )

    # -- spec ---------------------------------------------------------------------------------

    def spec(self) -> dict[str, Any]:
        """JSON-able description from which :meth:`from_spec` rebuilds this shape."""
        return {
            "format": self.SPEC_FORMAT,
            "config": asdict(self.vit_config),
            "removed": list(self.removed),
            "remaining_config": list(self.config),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], *, seed: int | None = None) -> VisionTransformer:
        """A freshly initialised ViT of the shape ``spec`` describes (removals replayed);
        ``seed`` as in :meth:`squeezr.models.ResNet.from_spec`."""
        if not isinstance(spec, dict) or spec.get("format") != cls.SPEC_FORMAT:
            raise UserError(f"not a squeezr ViT spec (expected format {cls.SPEC_FORMAT!r})")
        try:
            config = ViTConfig(**spec["config"])
            with torch.random.fork_rng(devices=[], enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(seed)
                model = cls(config)
            for i in spec["removed"]:
                model.remove_block(int(i))
        except KeyError as exc:
            raise UserError(f"ViT spec lacks the field {exc.args[0]!r}") from None
        except TypeError as exc:
            raise UserError(f"ViT spec has a bad config: {exc}") from None
        return model


def vit(name: str, **overrides: Any) -> VisionTransformer:
    """A preset by timm name (``vit_tiny_patch16_224``; case, ``-``/``_`` ignored) or short
    name (``tiny``, ``small``, ``base``, ``large``: patch 16, 224x224) with
    ``ViTConfig`` fields overridden, e.g. ``vit("vit_small_patch16_224", num_classes=10)``."""
    key = normalised_key(name, PRESETS, "ViT preset")
    try:
        config = replace(PRESETS[key], **overrides)
    except TypeError as exc:
        raise UserError(f"unknown ViT option: {exc}") from None
    return VisionTransformer(config)


# -- timm models by structure -----------------------------------------------------------------


def _need(model: Any, name: str) -> Any:
    if not hasattr(model, name):
        raise UserError(
            f"{type(model).__name__} is not a timm-layout ViT: it has no {name!r}; squeezr's ViT "
            "adapter needs patch_embed.proj, cls_token, pos_embed, blocks (norm1, attn.qkv, "
            "attn.proj, norm2, mlp.fc1, mlp.fc2), norm, fc_norm/head"
        )
    return getattr(model, name)


def config_of_timm(model: nn.Module) -> ViTConfig:
    """The :class:`ViTConfig` of a timm ``VisionTransformer`` (or any module of its layout),
    read from its layers' shapes."""
    proj = _need(_need(model, "patch_embed"), "proj")
    blocks = list(_need(model, "blocks").children())
    pos_embed = _need(model, "pos_embed")
    if _need(model, "cls_token") is None:
        raise UserError("this ViT has no class token; squeezr's ViT adapter needs one")
    head = _need(model, "head")
    patch = proj.kernel_size[0]
    grid = round((pos_embed.shape[1] - 1) ** 0.5)
    first = blocks[0] if blocks else None
    pool = getattr(model, "global_pool", "token")
    return ViTConfig(
        img_size=grid * patch,
        patch_size=patch,
        in_chans=proj.in_channels,
        num_classes=head.out_features if isinstance(head, nn.Linear) else 0,
        embed_dim=proj.out_channels,
        depth=len(blocks),
        num_heads=first.attn.num_heads if first is not None else 1,
        mlp_ratio=first.mlp.fc1.out_features / proj.out_channels if first is not None else 4.0,
        qkv_bias=first.attn.qkv.bias is not None if first is not None else True,
        global_pool=pool if isinstance(pool, str) else "token",
    )


def from_timm(model: nn.Module) -> VisionTransformer:
    """A squeezr ViT with the weights of ``model``, a timm ``VisionTransformer`` (read by
    structure; timm is not imported): the shapes from its layers, then its ``state_dict``
    loaded strictly, so a model with parts squeezr does not compute (layer scale, register
    tokens, a different norm) is refused with the keys that do not fit."""
    net = VisionTransformer(config_of_timm(model))
    state = {k: v for k, v in model.state_dict().items()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        names = ", ".join([*unexpected[:3], *missing[:3]])
        raise UserError(
            f"{type(model).__name__} has parts squeezr's timm-layout ViT does not compute "
            f"({names}); it supports timm's default VisionTransformer blocks"
        )
    return net.to(next(model.parameters()).dtype)


def adapt(model: Any) -> VisionTransformer | None:
    """A timm-layout ViT object (timm's ``VisionTransformer``) as a squeezr ViT; None for
    anything without its layout, so that other adapters get their turn."""
    if isinstance(model, nn.Module) and all(
        hasattr(model, name) for name in ("patch_embed", "cls_token", "pos_embed", "blocks")
    ):
        return from_timm(model)
    return None


def _read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A weights file: timm's ``model.safetensors`` or a torch file holding a state_dict
    (as ``torch.save(model.state_dict())`` writes, or under a ``state_dict``/``model`` key)."""
    source = Path(path).expanduser()
    remedy = "pass a timm ViT state_dict (.pth, .bin or .safetensors)"
    if source.suffix == ".safetensors":
        if not source.is_file():
            raise UserError(f"weights file {source} not found; {remedy}")
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise UserError(".safetensors weights need the safetensors package") from None
        return load_file(str(source))
    state = load_torch_file(source, "weights file", remedy)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"{source} holds no state_dict; {remedy}")
    return state


def _option_value(key: str, text: str) -> Any:
    """A ``key=value`` override of a ``vit:`` source, typed as the :class:`ViTConfig` field."""
    fields = {f.name: f.type for f in dataclasses.fields(ViTConfig)}
    if key not in fields:
        raise UserError(f"unknown ViT option {key!r}; known: {', '.join(fields)}")
    kind = fields[key]
    try:
        if kind == "bool":
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        return {"int": int, "float": float}.get(kind, str)(text)
    except ValueError:
        raise UserError(f"ViT option {key}={text!r} is not a valid {kind}") from None


def build(
    name: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    **options: Any,
) -> VisionTransformer:
    """``vit:NAME`` model sources: the preset ``NAME`` (:func:`vit`) with ``options`` as
    :class:`ViTConfig` overrides (None = the preset's), and timm's weights from ``weights``.
    ``NAME`` may carry overrides itself, ``vit_tiny_patch4_32,depth=4,embed_dim=96``, so that
    a command line names any shape (and a recorded source rebuilds it).

    ``num_classes`` defaults to the weights' head (else the preset's); when it differs from
    theirs (or they have none) the head starts fresh and everything else loads, as when
    fine-tuning a pretrained ViT on another dataset.
    """
    name, *pairs = name.split(",")
    for pair in pairs:
        key, _, value = pair.partition("=")
        options[key.strip()] = _option_value(key.strip(), value.strip())
    state = _read_state_dict(weights) if weights is not None else None
    head = state.get("head.weight") if state is not None else None
    if num_classes is None and head is not None:
        num_classes = int(head.shape[0])
    overrides = {k: v for k, v in options.items() if v is not None}
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    net = vit(name, **overrides)
    if state is None:
        return net
    own = net.state_dict()
    if head is not None and head.shape != own["head.weight"].shape:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    wrong = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    missing = [k for k in own if k not in state and not k.startswith("head.")]  # head: fresh
    unexpected = [k for k in state if k not in own]
    if missing or unexpected or wrong:
        names = ", ".join([*wrong[:2], *missing[:2], *unexpected[:2]])
        raise UserError(
            f"{weights} does not fit vit:{name} ({names}); pick the preset it was trained as"
        )
    net.load_state_dict(state, strict=False)
    return net
