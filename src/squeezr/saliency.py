"""Block saliency: how much each remaining block matters, as a score per original block index.

The pruning loop removes the blocks with the **lowest** scores. Methods form a registry so
that a new criterion is one decorated function ``(model, data, ctx) -> {block: score}``; the
loop, the CLI (``--method``) and the experiment record pick it up by name. Methods see the
network only through the block-sequence interface (:class:`squeezr.blocknet.BlockNet`) and
the data only through the context's task (:class:`squeezr.tasks.Task`), so every family and
every task (error rate of a classifier, token NLL of a language model) is scored alike.

The oracle is the expensive one (one evaluation per candidate), so it shares the
work every candidate has in common: the selection data goes through the network once per
chunk, and candidate *i* starts from the activation at block *i* with the block bypassed;
candidates then advance through the remaining units together as one stacked batch, whose
size (candidates × chunk) is capped by ``SaliencyContext.stack_images``. On CUDA it runs
under bf16 autocast; on CPU in the model's dtype.
``brute_force_oracle`` is the plain way (copy, remove, evaluate the whole model), kept as the
reference for the tests and the speed benchmark.

Under torchrun (:mod:`squeezr.distributed`) the data-driven methods split the selection set
across ranks (:func:`batches` yields only this rank's share) and all-reduce their sums, so
every rank gets the scores of the whole set.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from squeezr import distributed
from squeezr.dbx.errors import UserError
from squeezr.dbx.progress import progress_bar
from squeezr.tasks import ImageClassification, Task

Scores = dict[int, float]
MethodFn = Callable[..., Scores]


@dataclass
class SaliencyContext:
    """What a method may use besides the model and the data.

    ``task`` turns stored inputs into model inputs and scores outputs, exactly as training
    does; without one, ``mean``/``std`` make it image classification of uint8 images.
    ``generator`` is the only source of randomness (seeded, saved with the pruning state for
    resume). ``stack_images`` caps the oracle's stacked candidate batch (None: by device, see
    :meth:`oracle_chunk`).
    """

    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 1000
    grad_batch_size: int = 128
    dtype: torch.dtype = torch.float32
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))
    stack_images: int | None = None
    progress: bool = False  # show a bar over the oracle's scoring (a step's slow part on CPU)
    task: Task | None = None

    def __post_init__(self) -> None:
        if self.task is None:
            if self.mean is None or self.std is None:
                raise UserError("a saliency context needs a task (or an image mean and std)")
            self.task = ImageClassification(self.mean, self.std)

    def oracle_chunk(self, candidates: int) -> int:
        """Selection images per oracle pass: ``batch_size``, cut so that the ``candidates``
        streams stacked together hold at most ``stack_images`` images.

        The default budget depends on the device. A GPU wants large batches (65,536 keeps a
        chunk of 1,000 for all 54 candidates of ResNet-110, about 2 GiB per bf16 activation).
        On a CPU a stack beyond a few hundred images falls out of the caches and costs more
        in memory traffic than the shared prefix saves (measured on 2 cores, ResNet-110: 5
        images per chunk 2.3x faster than the plain oracle, 20 per chunk 1.4x, 500 per chunk
        1.06x), hence 384 there.
        """
        budget = self.stack_images
        if budget is None:
            budget = 65_536 if self.device.type == "cuda" else 384
        if self.task.max_batch is not None:  # large outputs: a language model's logits
            budget = min(budget, self.task.max_batch)
        return max(1, min(self.batch_size, budget // max(1, candidates)))

    @property
    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA (where it pays), nothing elsewhere (CPU runs stay exact)."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


@dataclass(frozen=True)
class Method:
    """A registered saliency method; ``needs_data`` is False for data-free ones."""

    name: str
    fn: MethodFn
    needs_data: bool
    doc: str


METHODS: dict[str, Method] = {}


def method(name: str, needs_data: bool = True) -> Callable[[MethodFn], MethodFn]:
    """Register ``fn(model, data, ctx) -> {block: score}`` under ``name`` (lowest pruned first)."""

    def register(fn: MethodFn) -> MethodFn:
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        METHODS[name] = Method(name, fn, needs_data, doc)
        return fn

    return register


def get(name: str) -> Method:
    """The method called ``name``; UserError listing the known ones otherwise."""
    if name not in METHODS:
        raise UserError(f"unknown saliency method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def compute(name: str, model: torch.nn.Module, data, ctx: SaliencyContext) -> Scores:
    """Scores of every remaining block of ``model`` under method ``name``."""
    chosen = get(name)
    if chosen.needs_data and (data is None or len(data) == 0):
        raise UserError(f"saliency method {name!r} needs selection data, but the set is empty")
    was_training = model.training
    model.eval()
    try:
        with fixed_conv_algorithms():
            scores = chosen.fn(model, data, ctx)
    finally:
        model.train(was_training)
    return {int(k): float(v) for k, v in scores.items()}


@contextlib.contextmanager
def fixed_conv_algorithms() -> Iterator[None]:
    """cuDNN autotuning off while scoring (restored afterwards).

    Autotuning (``cudnn.benchmark``: on while the trainer's fast path trains, and a user may
    switch it on globally) tunes every new input shape. The oracle's stacked candidate
    batches change shape from step to step (the number of streams at each unit shrinks as
    blocks go), so with autotuning on every step would pay for fresh tuning runs; cuDNN's
    heuristic choice costs nothing per shape and, unlike timing-based tuning, picks the same
    kernels every time, so a re-run scores alike.
    """
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def lowest(scores: Scores, count: int) -> list[int]:
    """The ``count`` blocks to remove: lowest score first, ties broken by the lower index."""
    return [b for _, b in sorted((s, b) for b, s in scores.items())[:count]]


# --------------------------------------------------------------------------- data helpers


def prepare(x: torch.Tensor, ctx: SaliencyContext) -> torch.Tensor:
    """Stored inputs -> model inputs on the context's device and dtype, exactly as the
    trainer prepares them (the task's ``prepare``; images channels_last on CUDA)."""
    x = ctx.task.prepare(x, ctx.device, ctx.dtype)
    if ctx.device.type == "cuda" and x.dim() == 4 and x.is_floating_point():
        x = x.contiguous(memory_format=torch.channels_last)  # what bf16 convolutions run fastest on
    return x


def batches(
    data, ctx: SaliencyContext, size: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The selection set in order, in chunks of ``size`` (default ``ctx.batch_size``) samples,
    ready for the model: (inputs, targets). Under torchrun only this rank's contiguous share
    of the set: callers sum over ranks (:func:`squeezr.distributed.all_reduce`)."""
    size = size or ctx.batch_size
    if ctx.task.max_batch is not None:  # large outputs: a language model's logits
        size = min(size, ctx.task.max_batch)
    part = distributed.shard(len(data))
    for start in range(part.start, part.stop, size):
        stop = min(start + size, part.stop)
        yield prepare(data.x[start:stop], ctx), ctx.task.targets(data.y[start:stop], ctx.device)


def stacked_score(
    task: Task, outputs: torch.Tensor, targets: torch.Tensor, streams: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per candidate stream: (Σ score sums, Σ counts) of ``outputs``, the outputs of
    ``streams`` candidate networks on ``targets`` stacked along the batch dimension."""
    sums, counts = task.score(outputs, targets.repeat(streams, *[1] * (targets.dim() - 1)))
    return sums.view(streams, -1).sum(1), counts.view(streams, -1).sum(1)


def bypass(model, index: int, x: torch.Tensor) -> torch.Tensor:
    """What block ``index`` leaves behind when removed (the network's ``bypass``)."""
    return model.bypass(index, x)


def _block_positions(model) -> list[tuple[int, int]]:
    """(position in ``model.units()``, original index) of every remaining block."""
    remaining = set(model.block_ids())
    return [(p, idx) for p, (idx, _) in enumerate(model.units()) if idx in remaining]


# --------------------------------------------------------------------------- the methods


@method("oracle")
@torch.inference_mode()
def oracle(model, data, ctx: SaliencyContext) -> Scores:
    """Task score on the selection set with the block removed (least harmful removal first):
    the error rate of a classifier, the mean token NLL of a language model.

    One pass per chunk, as a wavefront: walking the units in order, the unpruned activation
    ``h`` goes through every unit once; at block *i* a new candidate stream starts from
    ``bypass(h)`` (the network without block *i* up to here), and all streams started earlier
    go through each later unit together, stacked into one large batch. No prefix is computed
    twice and the GPU sees few, large kernels.
    """
    units = model.units()
    slots = {idx: slot for slot, (_, idx) in enumerate(_block_positions(model))}
    sums = torch.zeros(len(slots), dtype=torch.float64, device=ctx.device)
    counts = torch.zeros(len(slots), dtype=torch.float64, device=ctx.device)
    chunk = ctx.oracle_chunk(len(slots))
    bar = progress_bar(
        total=len(data),
        desc=f"oracle: scoring {len(slots)} blocks",
        unit="image",
        disable=not ctx.progress,
        leave=False,
    )
    for x, y in batches(data, ctx, chunk):
        with ctx.autocast:
            h = model.embed(x)
            streams = None
            for idx, unit in units:
                if streams is not None:
                    streams = unit(streams)
                if idx in slots:  # a remaining block: its candidate stream starts here
                    start = bypass(model, idx, h)
                    streams = start if streams is None else torch.cat([streams, start])
                h = unit(h)
            chunk_sums, chunk_counts = stacked_score(
                ctx.task, model.readout(streams), y, len(slots)
            )
            sums += chunk_sums
            counts += chunk_counts
        bar.update(len(y))
    bar.close()
    sums, counts = distributed.all_reduce(torch.stack([sums, counts])).cpu()
    scores = sums / counts
    return {idx: float(scores[slot]) for idx, slot in slots.items()}


@torch.inference_mode()
def brute_force_oracle(model, data, ctx: SaliencyContext) -> Scores:
    """The plain oracle: for each block, copy the model, remove the block, evaluate it all.

    No shared prefix, no autocast; the reference for tests and the speed benchmark.
    """
    scores = {}
    for idx in model.block_ids():
        pruned = copy.deepcopy(model)
        pruned.remove_block(idx)
        pruned.eval()
        total, count = 0.0, 0.0
        for start in range(0, len(data), ctx.batch_size):
            x = ctx.task.prepare(data.x[start : start + ctx.batch_size], ctx.device, ctx.dtype)
            y = ctx.task.targets(data.y[start : start + ctx.batch_size], ctx.device)
            sums, counts = ctx.task.score(pruned(x), y)
            total += float(sums.sum())
            count += float(counts.sum())
        scores[idx] = total / count
    return scores


def _activation_scores(model, data, ctx: SaliencyContext, measure) -> Scores:
    """Average ``measure(index, h, out, nxt, nxt_out)`` over the data, weighted by chunk size,
    from one forward pass per chunk.

    For the block with original ``index``: ``h`` is its input, ``out`` its output, ``nxt``
    the unit after it (the head after the last unit) and ``nxt_out = nxt(out)``, which the
    forward pass computes anyway (so a block is measured one unit late). Totals stay on the
    device until the end: one host synchronisation per call, not per block and chunk.
    """
    units = model.units()
    positions = dict(_block_positions(model))
    totals: dict[int, torch.Tensor] = {}

    def add(idx, h, out, nxt, nxt_out, weight):
        value = measure(idx, h, out, nxt, nxt_out).double() * weight
        totals[idx] = totals[idx] + value if idx in totals else value

    with torch.inference_mode():
        for x, _ in batches(data, ctx):
            h = model.embed(x)
            waiting = None  # (index, input, output) of the block before this unit
            for p, (_, unit) in enumerate(units):
                out = unit(h)
                if waiting is not None:
                    add(*waiting, unit, out, len(x))
                waiting = (positions[p], h, out) if p in positions else None
                h = out
            if waiting is not None:
                add(*waiting, model.readout, model.readout(h), len(x))
    ids = [idx for _, idx in _block_positions(model)]  # a rank may have had no data
    zero = torch.zeros((), dtype=torch.float64, device=ctx.device)
    sums = distributed.all_reduce(torch.stack([totals.get(i, zero) for i in ids] or [zero]))
    return dict(zip(ids, (sums[: len(ids)] / len(data)).tolist(), strict=True))


@method("activation-mean")
def activation_mean(model, data, ctx: SaliencyContext) -> Scores:
    """Mean absolute output activation of the block (its output, after the final ReLU)."""
    return _activation_scores(model, data, ctx, lambda idx, h, out, nxt, nxt_out: out.abs().mean())


@method("activation-change")
def activation_change(model, data, ctx: SaliencyContext) -> Scores:
    """MSE between the next block's input with and without the block."""

    def measure(idx, h, out, nxt, nxt_out):
        return F.mse_loss(out, bypass(model, idx, h))

    return _activation_scores(model, data, ctx, measure)


@method("activation-change-plus-one")
def activation_change_plus_one(model, data, ctx: SaliencyContext) -> Scores:
    """MSE one block later: the next unit's output (the logits after the last block)."""

    def measure(idx, h, out, nxt, nxt_out):
        return F.mse_loss(nxt_out, nxt(bypass(model, idx, h)))

    return _activation_scores(model, data, ctx, measure)


@method("block-gradient")
def block_gradient(model, data, ctx: SaliencyContext) -> Scores:
    """|dloss/dm| for a scalar mask m = 1 on each block's residual branch, one random batch.

    Under torchrun each rank takes its share of the batch and weights its mean loss by that
    share; the gradients are summed over ranks (exact when every sample counts alike, as
    images do; a language model's samples are weighted by sample, not by scored token)."""
    pick = torch.randperm(len(data), generator=ctx.generator)[: ctx.grad_batch_size]
    batch = len(pick)
    pick = pick[distributed.shard(batch)]
    x = prepare(data.x[pick], ctx)
    y = ctx.task.targets(data.y[pick], ctx.device)
    ids = model.block_ids()
    saved = {i: model.block(i).residual_scale for i in ids}
    masks = {i: torch.ones((), dtype=ctx.dtype, device=ctx.device, requires_grad=True) for i in ids}
    try:
        for i in ids:
            model.set_residual_scale(i, masks[i])
        with torch.enable_grad():
            if len(pick):  # (a rank with no share of a small batch contributes nothing)
                loss = ctx.task.loss(model(x), y)
                if len(pick) < batch:
                    loss = loss * (len(pick) / batch)
                grads = torch.stack(torch.autograd.grad(loss, [masks[i] for i in ids]))
            else:
                grads = torch.zeros(len(ids), dtype=ctx.dtype, device=ctx.device)
    finally:
        for i in ids:
            model.set_residual_scale(i, saved[i])
    grads = distributed.all_reduce(grads.double()).tolist()
    return {i: abs(g) for i, g in zip(ids, grads, strict=True)}


@method("block-gradient-max")
def block_gradient_max(model, data, ctx: SaliencyContext) -> Scores:
    """Negated block-gradient: removes the most important block first (a bad-choice baseline)."""
    return {i: -s for i, s in block_gradient(model, data, ctx).items()}


@method("weights-mean", needs_data=False)
def weights_mean(model, data, ctx: SaliencyContext) -> Scores:
    """Mean absolute weight of the block's removable conv/linear layers."""
    scores = {}
    for idx in model.block_ids():
        weights = [w.detach().abs().flatten() for w in residual_weights(model, idx)]
        scores[idx] = float(torch.cat(weights).mean())
    return scores


@method("random", needs_data=False)
def random_choice(model, data, ctx: SaliencyContext) -> Scores:
    """Uniform random scores from the seeded context generator."""
    ids = model.block_ids()
    draws = torch.rand(len(ids), generator=ctx.generator, dtype=torch.float64)
    return {i: float(d) for i, d in zip(ids, draws, strict=True)}


def residual_weights(model, index: int) -> list[torch.Tensor]:
    """Weight matrices/kernels (``weight`` of 2+ dimensions: convolutions and linear layers,
    not norms) of what removing block ``index`` deletes (a kept shortcut conv survives)."""
    return [
        p
        for top in model.removable_modules(index)
        for name, p in top.named_parameters()
        if name.rsplit(".", 1)[-1] == "weight" and p.dim() >= 2
    ]
