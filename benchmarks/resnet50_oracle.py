"""Oracle step on a torchvision-layout ResNet-50 (ImageNet stem, 224² images): fast vs plain.

The fast oracle (``saliency.oracle``: the unpruned prefix computed once per chunk, candidate
streams stacked along the batch and advanced together through the later units) against the
plain way in the same run (for each of the 16 blocks: copy the network, remove the block,
evaluate it whole), on the same synthetic uint8 images and the same network: torchvision's
ResNet-50 built by squeezr with random weights and randomised BN statistics, so that the
candidates' outputs differ (the largest difference between the two score vectors is
printed; on CPU both run in fp32 and agree exactly up to float summation order).

    python benchmarks/resnet50_oracle.py [--quick] [--images 32] [--device cuda]

``--quick``: 8 images. On CPU the figures are labelled "CPU"; they say nothing about a GPU.
Prints the ratio and, last, one JSON line.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from _common import parser, ratio, report, timed_on
from squeezr import saliency
from squeezr.blocknet import build, count_params
from squeezr.prune.loop import place
from squeezr.train import resolve_device


def network(device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = build("torchvision:resnet50", num_classes=10)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.3, 1.2)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return place(model.eval(), device)


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, help="selection images (default 32; --quick: 8)")
    p.add_argument("--resolution", type=int, default=224)
    args = p.parse_args()
    images = args.images or (8 if args.quick else 32)
    device = resolve_device(args.device)
    label = "GPU" if device.type == "cuda" else "CPU"
    g = torch.Generator().manual_seed(1)
    data = saliency_data(images, args.resolution, g)
    model = network(device)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    fast_ctx = saliency.SaliencyContext(mean, std, device=device, batch_size=images)
    plain_ctx = saliency.SaliencyContext(mean, std, device=device, batch_size=images)
    chunk = fast_ctx.oracle_chunk(len(model.block_ids()))
    saliency.compute("oracle", model, data, fast_ctx)  # warm-up (allocator, kernels)

    fast, fast_s = timed_on(device, lambda: saliency.compute("oracle", model, data, fast_ctx))
    plain, plain_s = timed_on(device, lambda: saliency.brute_force_oracle(model, data, plain_ctx))
    gap = max(abs(fast[b] - plain[b]) for b in plain)
    print(
        f"[{label}, {torch.get_num_threads()} threads] oracle step, torchvision ResNet-50 "
        f"({count_params(model):,} params, {len(plain)} candidates), {images} images at "
        f"{args.resolution}²: fast {fast_s:.2f} s ({chunk} images per chunk), plain "
        f"{plain_s:.2f} s, speed-up {ratio(plain_s, fast_s)}; largest score difference {gap:.2e}"
    )
    report(
        "resnet50_oracle",
        {
            "device": label,
            "threads": torch.get_num_threads(),
            "images": images,
            "resolution": args.resolution,
            "candidates": len(plain),
            "chunk": chunk,
            "fast_s": fast_s,
            "plain_s": plain_s,
            "speedup": plain_s / fast_s,
            "max_score_gap": gap,
            "gpu": "measured" if device.type == "cuda" else "not measured",
        },
    )
    return 0


class _Data:
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)


def saliency_data(images: int, resolution: int, g: torch.Generator) -> _Data:
    """Synthetic uint8 images (smooth random patterns plus noise) and random labels."""
    coarse = torch.rand(images, 3, 7, 7, generator=g)
    smooth = nn.functional.interpolate(coarse, size=(resolution, resolution), mode="bilinear")
    noise = torch.rand(images, 3, resolution, resolution, generator=g) * 0.2
    x = ((smooth * 0.8 + noise) * 255).clamp(0, 255).to(torch.uint8)
    return _Data(x, torch.randint(0, 10, (images,), generator=g))


if __name__ == "__main__":
    sys.exit(main())
