"""GPU fast path for training epochs: launch overhead and data movement removed.

Training a CIFAR ResNet-110 at batch 128 is dominated by ~1,000 tiny kernel launches per
step and by the input pipeline, not by arithmetic. This runner keeps the whole training set
on the GPU as uint8, augments a whole epoch at once with a few GPU kernels, runs forward and
backward in bf16 autocast with channels_last tensors, and replays the entire training step —
normalisation, forward, backward, SGD update, loss/accuracy bookkeeping — as one CUDA graph.

Semantics match :class:`squeezr.train.PlainEpochRunner` (same optimizer maths: SGD with
Nesterov momentum, weight decay and the epoch's learning rate, momentum buffers shared with
``torch.optim.SGD``'s state so checkpoints and resume states are interchangeable) except:

* the last partial batch of each epoch is dropped (a graph has one static batch shape);
  with 45,000 training images and batch 128 that is 72 images per epoch, a different 72
  each epoch;
* arithmetic is bf16 (autocast), so results are not bit-identical to the fp32 path;
* if graph capture fails the same step runs eagerly, with a warning (every tensor the
  warm-up and capture touched is put back first, and the eager steps run on the default
  stream, not the capture's).

Side effects are scoped to the runner: it switches cuDNN autotuning on and converts the
model to channels_last when built, and :meth:`FastEpochRunner.close` (called by
:func:`squeezr.train.fit` when training ends, also on errors) restores the previous
``torch.backends.cudnn.benchmark`` value and the memory format the model had before (the
pruner keeps its models channels_last on CUDA; a plain model stays contiguous).

:func:`squeezr.train.make_epoch_runner` only builds this runner on a CUDA device. The
CUDA-only parts (graph capture, bf16 autocast, channels_last, cuDNN autotuning) are switched
on by the device, so on CPU the runner is the same step in fp32 and eager — which is how
its maths and its capture-failure handling are tested without a GPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from squeezr.augment import normalize, pad_crop_flip
from squeezr.dbx.errors import UserError

WARMUP_STEPS = 3


def sgd_step_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    bufs: list[torch.Tensor],
    lr: torch.Tensor,
    *,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
) -> None:
    """``torch.optim.SGD``'s update (dampening 0) with a tensor ``lr``, graph-capturable.

    Uses ``grads`` as scratch space. ``bufs`` are the momentum buffers (zeros before the
    first step reproduce torch's ``buf = grad``).
    """
    if weight_decay:
        torch._foreach_add_(grads, params, alpha=weight_decay)
    if momentum:
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads)
        if nesterov:
            torch._foreach_add_(grads, bufs, alpha=momentum)
        else:
            grads = bufs
    torch._foreach_sub_(params, torch._foreach_mul(grads, lr))


class FastEpochRunner:
    """One training epoch per :meth:`run`, as CUDA-graph replays of a whole-step graph.

    Built from a :class:`squeezr.train.EpochContext`; call :meth:`close` when done.
    """

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        model, optimizer, cfg, device = ctx.model, ctx.optimizer, ctx.cfg, ctx.device
        self.model, self.optimizer, self.cfg, self.device = model, optimizer, cfg, device
        self.sd = ctx.sd
        # On the device up front: a host-to-device copy is illegal during graph capture.
        self.mean = torch.as_tensor(ctx.mean, dtype=torch.float32).view(1, -1, 1, 1).to(device)
        self.std = torch.as_tensor(ctx.std, dtype=torch.float32).view(1, -1, 1, 1).to(device)
        self.cuda = device.type == "cuda"
        self._saved_cudnn_benchmark = torch.backends.cudnn.benchmark
        self._saved_memory_format = _memory_format(model)
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            model.to(memory_format=torch.channels_last)
        self.x = ctx.split.x.to(device)
        self.y = ctx.split.y.to(device)
        bs = cfg.batch_size
        self.steps = len(self.y) // bs
        self.xb = torch.zeros((bs, *self.x.shape[1:]), dtype=torch.uint8, device=device)
        self.yb = torch.zeros((bs,), dtype=torch.int64, device=device)
        self.lr = torch.zeros((), dtype=torch.float32, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        group = optimizer.param_groups[0]
        self.params = list(group["params"])
        self.momentum, self.nesterov = group["momentum"], group["nesterov"]
        self.weight_decay = group["weight_decay"]
        self.bufs = []
        if self.momentum:
            for p in self.params:
                state = optimizer.state[p]
                # A zero buffer gives exactly torch's first step (buf = grad).
                if state.get("momentum_buffer") is None:
                    state["momentum_buffer"] = torch.zeros_like(p)
                self.bufs.append(state["momentum_buffer"])
        self.graph = self._try_capture(self._record_graph) if self.cuda else None

    @property
    def images_per_epoch(self) -> int:
        return self.steps * self.cfg.batch_size

    def _step(self) -> None:
        """One SGD step on the static batch; every tensor it touches has a fixed address."""
        x = normalize(self.xb, self.mean, self.std)
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False, enabled=self.cuda):
            out = self.model(x)
        if self.ctx.loss is not None:  # distillation: the teacher runs inside the graph too
            loss = self.ctx.loss(out.float(), self.yb, x, None)
        else:
            loss = F.cross_entropy(out.float(), self.yb)
        grads = torch.autograd.grad(loss, self.params, allow_unused=True, materialize_grads=True)
        with torch.no_grad():
            sgd_step_(
                self.params,
                list(grads),
                self.bufs,
                self.lr,
                momentum=self.momentum,
                nesterov=self.nesterov,
                weight_decay=self.weight_decay,
            )
            self.loss_sum += loss.detach()
            self.correct += (out.argmax(1) == self.yb).sum()

    def _state_tensors(self) -> list[torch.Tensor]:
        return [*self.params, *self.model.buffers(), *self.bufs]

    def _record_graph(self) -> torch.cuda.CUDAGraph:
        """Warm up on a side stream (cuDNN autotuning, allocator), then capture one step."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_STEPS):
                self._step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._step()
        return graph

    def _try_capture(self, record: Callable[[], Any]) -> Any:
        """Run ``record`` (warm-up and capture) and return its graph, or None if it failed.

        Whatever happens, every parameter, BN buffer and momentum buffer is put back to its
        value before the warm-up, so training starts from the same state either way; after
        a failure the graph (and its memory pool) is dropped and the step runs eagerly on
        the default stream. If the GPU itself is left broken, that is a UserError saying to
        train without the fast path.
        """
        self.model.train()
        if self.sd is not None:
            self.sd.reset()
        snapshot = [t.detach().clone() for t in self._state_tensors()]
        stream = torch.cuda.current_stream(self.device) if self.cuda else None
        graph = None
        try:
            graph = record()
        except Exception as exc:  # capture can fail in many ways (driver, allocator, ops)
            graph = None
            if stream is not None:
                # torch.cuda.graph ends the capture before it switches back from its side
                # stream; if ending fails, the side stream would stay current.
                torch.cuda.set_stream(stream)
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            warnings.warn(
                f"CUDA graph capture failed ({message}); the fast path runs eagerly",
                stacklevel=3,
            )
        self._synchronize()
        with torch.no_grad():
            for t, saved in zip(self._state_tensors(), snapshot, strict=True):
                t.copy_(saved)
        return graph

    def _synchronize(self) -> None:
        if not self.cuda:
            return
        try:
            torch.cuda.synchronize(self.device)
        except Exception as exc:
            raise UserError(
                f"the GPU failed while setting up the fast path ({exc}); "
                "train with --no-fast (fast=False)".splitlines()[0]
            ) from None

    def run(self) -> tuple[float, float]:
        """Train one epoch; returns (mean loss per batch, training accuracy)."""
        bs = self.cfg.batch_size
        self.model.train()
        self.lr.fill_(self.optimizer.param_groups[0]["lr"])
        self.loss_sum.zero_()
        self.correct.zero_()
        perm = torch.randperm(len(self.y), generator=self.ctx.order_gen).to(self.device)
        xs, ys = self.x[perm], self.y[perm]
        if self.cfg.augment:
            xs = pad_crop_flip(xs, self.ctx.aug_gen)
        sd_scales = self.sd.draw(self.steps) if self.sd is not None else None
        for i in range(self.steps):
            self.xb.copy_(xs[i * bs : (i + 1) * bs])
            self.yb.copy_(ys[i * bs : (i + 1) * bs])
            if sd_scales is not None:
                self.sd.use(sd_scales[i])
            if self.graph is not None:
                self.graph.replay()
            else:
                self._step()
        if self.sd is not None:
            self.sd.reset()
        return self.loss_sum.item() / self.steps, self.correct.item() / self.images_per_epoch

    def close(self) -> None:
        """Drop the graph; give back cuDNN autotuning and the model's memory format as they
        were when the runner was built."""
        self.graph = None
        if self.cuda:
            torch.backends.cudnn.benchmark = self._saved_cudnn_benchmark
            self.model.to(memory_format=self._saved_memory_format)


def _memory_format(model: torch.nn.Module) -> torch.memory_format:
    """``torch.channels_last`` when the model's 4-d weights are stored that way, else
    ``torch.contiguous_format`` (weights that are both, such as 1x1 convs, decide nothing)."""
    weights = [p for p in model.parameters() if p.dim() == 4 and not p.is_contiguous()]
    channels_last = [p.is_contiguous(memory_format=torch.channels_last) for p in weights]
    return torch.channels_last if channels_last and all(channels_last) else torch.contiguous_format
