"""What each process of the data-parallel tests runs (``torchrun ... ddp_worker.py SCENARIO OUT``).

The same function also runs in the test process itself (one process, no torchrun) to give the
reference, so the two runs share every setting. Rank 0 saves the outcome to ``OUT``.
``ddp_worker.py cli ARGS...`` runs the ``squeezr`` command instead (optionally crashing one
rank, see :func:`cli`).
"""

from __future__ import annotations

import dataclasses
import sys

import torch

from squeezr import distributed, saliency
from squeezr.data import load_dataset
from squeezr.models import ResNet
from squeezr.tasks import ImageClassification
from squeezr.train import TrainConfig, fit

SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


def splits():
    """256 synthetic images of 4 classes: 231 for training, 25 validation, 51 test."""
    return load_dataset("synthetic", synthetic_size=256, synthetic_classes=4, seed=0)


def model(batch_norm: bool = True):
    """A seeded ResNet (1, 1, 1); without ``batch_norm`` its BatchNorm layers are identities
    (a network the trainer gives a stand-in sample when a rank's share is empty)."""
    torch.manual_seed(0)
    net = ResNet((1, 1, 1), num_classes=4)
    if not batch_norm:
        for name, module in list(net.named_modules()):
            if isinstance(module, torch.nn.BatchNorm2d):
                parent, _, leaf = name.rpartition(".")
                setattr(net.get_submodule(parent), leaf, torch.nn.Identity())
    return net


def train(dtype: torch.dtype, batches=(50, 115), batch_norm: bool = True) -> dict:
    """One short training run (augmentation, Nesterov momentum, weight decay, a milestone)
    per batch size: the final weights and the per-epoch records. With 231 training images,
    batch 50 ends with a batch of 31 (16 + 15 per rank) and batch 115 with one of 1 (an empty
    shard on rank 1)."""
    data = splits()
    if dtype == torch.float64:
        data = dataclasses.replace(data, task=Float64Images(data.mean, data.std))
    out = {}
    for batch in batches:
        net = model(batch_norm).to(dtype)
        cfg = TrainConfig(
            epochs=2, lr=0.02, milestones=(1,), batch_size=batch, device="cpu", seed=3
        )
        result = fit(net, data, cfg, progress=False)
        out[batch] = {"state": net.state_dict(), "history": result.history}
    return out


class Float64Images(ImageClassification):
    """Images fed to the network in float64 (the trainer prepares float32 ones)."""

    def prepare(self, x, device, dtype=torch.float32):
        return super().prepare(x, device, torch.float64)


@scenario
def training() -> dict:
    """:func:`train` in float64 (rounding out of the way), also without batch norm (the
    empty shard's stand-in sample), and in float32 (as squeezr trains; batch 50 only, to
    keep the test short)."""
    return {
        "float64": train(torch.float64),
        "float64-no-bn": train(torch.float64, batches=(115,), batch_norm=False),
        "float32": train(torch.float32, batches=(50,)),
    }


@scenario
def scores() -> dict:
    """Every data-driven saliency method's scores (selection set: the 25 validation images,
    split 13 + 12; chunks of 7 images) on an untrained network with random batch-norm
    statistics and affine parameters (training first would amplify float rounding)."""
    data = splits()
    net = model()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
    ctx = saliency.SaliencyContext(mean=data.mean, std=data.std, batch_size=7, grad_batch_size=9)
    names = [name for name, m in saliency.METHODS.items() if m.needs_data]
    return {name: saliency.compute(name, net, data.val, ctx) for name in names}


@scenario
def language() -> dict:
    """A tiny decoder-style language model (``test_blocknet.TinyLM``, no batch norm), trained
    in float64 at batches 9 (40 sequences: a last batch of 4 = 2 + 2) and 13 (a last batch
    of 1: rank 1 forwards a stand-in at weight 0), then scored by the oracle (token NLL)."""
    from blocknet_contract import Data
    from test_blocknet import TinyLM, tokens

    from squeezr.data import DataSplits
    from squeezr.tasks import LanguageModelling

    def part(n, seed):
        ids = tokens(n=n, seed=seed)
        return Data(x=ids, y=ids)

    data = DataSplits(
        name="tokens",
        num_classes=11,
        train=part(40, 1),
        val=part(13, 2),
        test=part(12, 3),
        prune=None,
        mean=(),
        std=(),
        task=LanguageModelling(),
    )
    out = {}
    for batch in (9, 13):
        torch.manual_seed(0)
        net = TinyLM().double()
        fit(
            net,
            data,
            TrainConfig(epochs=2, batch_size=batch, lr=0.05, device="cpu"),
            progress=False,
        )
        ctx = saliency.SaliencyContext(task=data.task, batch_size=5, dtype=torch.float64)
        out[batch] = {
            "state": net.state_dict(),
            "oracle": saliency.compute("oracle", net, data.val, ctx),
        }
    return out


@scenario
def hf_decoder() -> dict:
    """A tiny Hugging Face decoder (``hf:tiny-llama``: 6 Llama layers, rotary embeddings,
    grouped-query attention) on a generated token file (``squeezr.textdata``): 63 training
    sequences of 16 tokens at batch 10 (a last batch of 3 = 2 + 1), 7 validation ones for the
    oracle (4 + 3), all in float64."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from squeezr.networks.hf import build
    from squeezr.textdata import fit_language_model, load_text_dataset

    with tempfile.TemporaryDirectory() as folder:  # one per process: no shared writes
        tokens = np.random.default_rng(0).integers(0, 512, size=16 * 70 + 5)
        tokens.astype("<u2").tofile(Path(folder, "train.bin"))
        tokens[:40].astype("<u2").tofile(Path(folder, "val.bin"))
        data = load_text_dataset(folder, seq_len=16)
    net = build("tiny-llama", seed=0).double()
    fit_language_model(net, data)
    fit(net, data, TrainConfig(epochs=1, batch_size=10, lr=0.05, device="cpu"), progress=False)
    ctx = saliency.SaliencyContext(task=data.task, batch_size=3, dtype=torch.float64)
    return {
        "state": net.state_dict(),
        "oracle": saliency.compute("oracle", net, data.val, ctx),
        "val": len(data.val),
        "train": len(data.train),
    }


def cli(args: list[str]) -> int:
    """The ``squeezr`` command; with ``$DDP_WORKER_CRASH=RANK:N`` that rank raises at its
    N-th fine-tuning loop (a crashed process in the middle of a pruning run)."""
    import os

    import squeezr.prune.loop
    from squeezr.cli import main as squeezr_main

    crash = os.environ.get("DDP_WORKER_CRASH")
    if crash:
        rank, nth = map(int, crash.split(":"))
        calls = []
        real_fit = squeezr.prune.loop.fit

        def crashing_fit(*args, **kwargs):
            calls.append(1)
            if distributed.rank() == rank and len(calls) == nth:
                raise RuntimeError(f"rank {rank} crashes (test)")
            return real_fit(*args, **kwargs)

        squeezr.prune.loop.fit = crashing_fit
    return squeezr_main(args)


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    if argv[0] == "cli":
        return cli(argv[1:])
    outcome = SCENARIOS[argv[0]]()
    if distributed.is_main():
        torch.save({"world": distributed.world_size(), "outcome": outcome}, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
