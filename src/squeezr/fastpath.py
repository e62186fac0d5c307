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
* if graph capture fails the same step runs eagerly, with a warning.

:func:`squeezr.train.make_epoch_runner` only builds this runner on a CUDA device. The
CUDA-only parts (graph capture, bf16 autocast, channels_last, cuDNN autotuning) are switched
on by the device, so on CPU the runner is the same step in fp32 and eager — which is how
its maths is tested against the plain runner without a GPU.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from squeezr.augment import normalize, pad_crop_flip

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
    """One training epoch per :meth:`run`, as CUDA-graph replays of a whole-step graph."""

    def __init__(self, model, optimizer, split, mean, std, cfg, device, order_gen, aug_gen, sd):
        self.model, self.optimizer, self.cfg, self.device = model, optimizer, cfg, device
        self.order_gen, self.aug_gen, self.sd = order_gen, aug_gen, sd
        # On the device up front: a host-to-device copy is illegal during graph capture.
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1).to(device)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1).to(device)
        self.cuda = device.type == "cuda"
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            model.to(memory_format=torch.channels_last)
        self.x = split.x.to(device)
        self.y = split.y.to(device)
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
        self.graph = self._capture() if self.cuda else None

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

    def _capture(self) -> torch.cuda.CUDAGraph | None:
        """Warm up on a side stream, capture one step, then undo the warm-up's updates."""
        self.model.train()
        if self.sd is not None:
            self.sd.reset()
        snapshot = [t.detach().clone() for t in self._state_tensors()]
        graph: torch.cuda.CUDAGraph | None = torch.cuda.CUDAGraph()
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(WARMUP_STEPS):
                    self._step()
            torch.cuda.current_stream().wait_stream(stream)
            with torch.cuda.graph(graph):
                self._step()
        except RuntimeError as exc:
            warnings.warn(
                f"CUDA graph capture failed ({exc}); the fast path runs eagerly", stacklevel=2
            )
            graph = None
        torch.cuda.synchronize()
        with torch.no_grad():
            for t, saved in zip(self._state_tensors(), snapshot, strict=True):
                t.copy_(saved)
        return graph

    def run(self) -> tuple[float, float]:
        """Train one epoch; returns (mean loss per batch, training accuracy)."""
        bs = self.cfg.batch_size
        self.model.train()
        self.lr.fill_(self.optimizer.param_groups[0]["lr"])
        self.loss_sum.zero_()
        self.correct.zero_()
        perm = torch.randperm(len(self.y), generator=self.order_gen).to(self.device)
        xs, ys = self.x[perm], self.y[perm]
        if self.cfg.augment:
            xs = pad_crop_flip(xs, self.aug_gen)
        for i in range(self.steps):
            self.xb.copy_(xs[i * bs : (i + 1) * bs])
            self.yb.copy_(ys[i * bs : (i + 1) * bs])
            if self.sd is not None:
                self.sd.resample()
            if self.graph is not None:
                self.graph.replay()
            else:
                self._step()
        if self.sd is not None:
            self.sd.reset()
        return self.loss_sum.item() / self.steps, self.correct.item() / self.images_per_epoch
