"""Batched CIFAR augmentation and normalisation on uint8 image tensors.

Augmentation runs on whole batches (or a whole epoch) of ``(N, C, H, W)`` uint8 tensors on
whatever device they live on, so the GPU fast path can augment 45,000 images with a handful
of kernels and the CPU path avoids per-image Python. It is the standard CIFAR recipe: zero
padding of 4 pixels, a random crop back to the original size, and a random horizontal flip,
all drawn from an explicit ``torch.Generator`` so that runs are reproducible and resumable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def pad_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Zero-pad by ``pad``, crop a random ``H×W`` window and flip half the images horizontally.

    The draws per call are fixed (offsets, then flips) and are made on ``generator``'s device,
    then moved to ``x``'s: the trainer passes a CPU generator, so the same seed gives the same
    augmentation on every device and a resume state moves between CPU and GPU. (Three small
    index tensors per call; for the fast path one call covers a whole epoch.)
    """
    n, _, h, w = x.shape
    device = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    drawn_on = generator.device
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=drawn_on)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=drawn_on)
    flip = torch.rand((n,), generator=generator, device=drawn_on) < 0.5
    oy, ox, flip = oy.to(device), ox.to(device), flip.to(device)
    cols = torch.arange(w, device=device)
    # A flipped image reads its crop window right to left.
    cols = torch.where(flip[:, None], (w - 1) - cols[None, :], cols[None, :]) + ox[:, None]
    rows = torch.arange(h, device=device)[None, :] + oy[:, None]
    batch = torch.arange(n, device=device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def normalize(
    x: torch.Tensor,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    dtype=torch.float32,
) -> torch.Tensor:
    """Map uint8 images to ``(x / 255 - mean) / std`` per channel (mean/std on the 0–1 scale).

    Pass ``mean``/``std`` as tensors already on ``x``'s device and of ``dtype`` to avoid a
    host-to-device copy (required inside CUDA graph capture).
    """
    m = torch.as_tensor(mean, dtype=dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=dtype, device=x.device).view(1, -1, 1, 1)
    return (x.to(dtype) / 255.0 - m) / s
