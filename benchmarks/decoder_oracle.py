"""One oracle step on a small decoder language model: squeezr's fast oracle vs the plain way.

The model is a Llama-style decoder built from a config (random weights, nothing downloaded)
and wrapped by squeezr's transformers adapter (``squeezr.networks.hf``); the selection set is
synthetic token ids cut into sequences. The oracle scores each layer by the selection set's
mean token NLL with that layer removed (perplexity = exp). squeezr's oracle shares the
prefix (the unpruned activations are computed once, and candidate streams advance through
the later layers stacked along the batch; bf16 autocast on CUDA), against the plain way
measured in the same run: for each layer, copy the model, remove the layer, evaluate the
whole model in fp32. Both score vectors are compared (largest difference, Kendall's tau, the
chosen layer).

    python benchmarks/decoder_oracle.py [--quick] [--device cuda] [--layers 12]
                                        [--sequences 64] [--seq-len 128] [--stack N]

Prints the ratio and, last, one JSON line.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from types import SimpleNamespace

import torch
from scipy.stats import kendalltau

from _common import parser, ratio, report, timer
from squeezr import saliency
from squeezr.networks.hf import from_config
from squeezr.prune.loop import place
from squeezr.tasks import LanguageModelling
from squeezr.train import resolve_device


class Selection(SimpleNamespace):
    def __len__(self) -> int:
        return len(self.y)


def model_config(args) -> dict:
    return {
        "model_type": "llama",
        "vocab_size": args.vocab,
        "hidden_size": args.hidden,
        "intermediate_size": args.hidden * 8 // 3,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.hidden // 64,
        "num_key_value_heads": max(1, args.hidden // 256),
        "max_position_embeddings": args.seq_len,
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--sequences", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--stack", type=int, help="stack budget in sequences (default: the device's)")
    args = p.parse_args()
    if args.quick:
        args.layers, args.hidden, args.vocab, args.sequences, args.seq_len = 4, 64, 512, 8, 32
    device = torch.device(resolve_device(args.device))
    if device.type != "cuda":
        print("warning: no GPU; CPU figures (fp32 on both sides)")
    net = place(from_config(model_config(args), seed=0, seq_len=args.seq_len), device).eval()
    ids = torch.randint(
        args.vocab, (args.sequences, args.seq_len), generator=torch.Generator().manual_seed(1)
    )
    data = Selection(x=ids, y=ids)
    task = LanguageModelling()
    fast_ctx = saliency.SaliencyContext(task=task, device=device, stack_images=args.stack)
    plain_ctx = saliency.SaliencyContext(task=task, device=device, batch_size=args.sequences)
    chunk = fast_ctx.oracle_chunk(args.layers)
    if device.type == "cuda":  # warm-up: CUDA context, kernel selection
        saliency.compute("oracle", net, data, fast_ctx)
    with timer() as fast_time:
        fast = saliency.compute("oracle", net, data, fast_ctx)
    with timer() as plain_time:
        plain = saliency.brute_force_oracle(net, data, plain_ctx)
    layers = sorted(fast)
    tau = kendalltau([fast[i] for i in layers], [plain[i] for i in layers]).statistic
    diff = max(abs(fast[i] - plain[i]) for i in layers)
    same = saliency.lowest(fast, 1) == saliency.lowest(plain, 1)
    params = sum(p.numel() for p in net.parameters())
    print(
        f"one oracle step, Llama-style decoder ({args.layers} layers, hidden {args.hidden}, "
        f"{params:,} params), {args.sequences} sequences of {args.seq_len} tokens, {device.type}"
    )
    print(f"  plain (copy, remove, evaluate per layer): {plain_time.seconds:8.2f} s")
    print(
        f"  squeezr's oracle ({chunk} sequences per chunk): {fast_time.seconds:8.2f} s  "
        f"({ratio(plain_time.seconds, fast_time.seconds)})"
    )
    print(
        f"  scores: largest difference {diff:.2e} (NLL), Kendall's tau {tau:.3f}, same choice {same}"
    )
    report(
        "decoder_oracle",
        dict(
            device=device.type,
            layers=args.layers,
            hidden=args.hidden,
            params=params,
            sequences=args.sequences,
            seq_len=args.seq_len,
            chunk=chunk,
            fast_s=round(fast_time.seconds, 3),
            plain_s=round(plain_time.seconds, 3),
            speedup=round(plain_time.seconds / fast_time.seconds, 2),
            max_diff=diff,
            kendall_tau=tau,
            same_choice=same,
        ),
    )


if __name__ == "__main__":
    main()
