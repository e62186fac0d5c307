"""Data parallelism across the processes ``torchrun`` starts: one process per GPU (or CPU).

``torchrun --nproc-per-node N -m squeezr.cli train|prune ...`` runs the ordinary command in N
processes. Everything here is a no-op in a single process, so the trainer, the saliency
methods and the pruning loop call these helpers unconditionally:

* the process group is created lazily from torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), gloo for CPU tensors and NCCL for CUDA
  ones; a group the caller created (``torch.distributed.init_process_group``) is used as is;
* :func:`shard` cuts a global batch (or an evaluation set) into one contiguous part per
  rank; :func:`all_reduce` sums the per-rank totals; :func:`broadcast_object` hands rank 0's
  decisions (resume states, saliency scores) to the others;
* :class:`DataParallel` wraps a model in ``DistributedDataParallel`` with *global* batch
  normalisation: batch statistics are summed over all ranks (forward and backward), so a
  global batch split across ranks trains exactly as it does in one process, up to float
  rounding. torch's ``SyncBatchNorm`` does the same but refuses CPU tensors, which is why
  squeezr has its own (one implementation for gloo and NCCL, tested on CPU).

Only rank 0 writes (dbx experiments, resume states, checkpoints); :func:`is_main` says which
process that is.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from squeezr.dbx.errors import UserError

__all__ = [
    "DataParallel",
    "all_reduce",
    "broadcast_object",
    "is_main",
    "local_device",
    "rank",
    "shard",
    "world_size",
]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise UserError(
            f"${name} must be a whole number (torchrun sets it), got {value!r}"
        ) from None


def _launched() -> bool:
    """Whether torchrun (or a caller's own process group) asks for more than one process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    return _env_int("WORLD_SIZE", 1) > 1


def _ensure_group() -> None:
    """Create the process group from torchrun's environment on first use (every rank calls
    a collective helper in the same order, so this rendezvous happens everywhere)."""
    if dist.is_initialized():
        return
    if not dist.is_available():
        raise UserError("this torch build has no torch.distributed; run one process")
    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
        if name not in os.environ:
            raise UserError(f"WORLD_SIZE > 1 but ${name} is not set: start the run with torchrun")
    nccl = torch.cuda.is_available() and dist.is_nccl_available()
    dist.init_process_group(backend="cpu:gloo,cuda:nccl" if nccl else "gloo")
    atexit.register(_close_group)


def _close_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """Number of processes taking part (1 without torchrun)."""
    if not _launched():
        return 1
    _ensure_group()
    return dist.get_world_size()


def rank() -> int:
    """This process's rank, 0 to ``world_size() - 1``."""
    if not _launched():
        return 0
    _ensure_group()
    return dist.get_rank()


def is_main() -> bool:
    """Whether this process is rank 0, the only one that writes records and prints."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """The device this rank uses: under torchrun a CUDA device becomes the GPU of the
    process's ``LOCAL_RANK`` (one process per GPU); CPU stays CPU."""
    if device.type != "cuda" or world_size() == 1:
        return device
    local = _env_int("LOCAL_RANK", rank())
    if device.index is not None:  # refused on every rank alike, so all of them stop
        raise UserError(
            f"device {device} under torchrun: each process takes the GPU of its LOCAL_RANK; "
            "use --device cuda (or auto), and CUDA_VISIBLE_DEVICES to pick the GPUs"
        )
    if local >= torch.cuda.device_count():
        raise UserError(
            f"LOCAL_RANK {local} but this machine has {torch.cuda.device_count()} GPU(s): "
            "start at most one process per GPU (torchrun --nproc-per-node)"
        )
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def shard(n: int) -> slice:
    """This rank's part of ``n`` items: contiguous, sizes differing by at most one (the
    first ``n % world`` ranks take one more); all of them in a single process."""
    world, me = world_size(), rank()
    base, extra = divmod(n, world)
    start = me * base + min(me, extra)
    return slice(start, start + base + (me < extra))


def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, in place; returns it (unchanged in one process)."""
    if world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; tensors come back on the CPU they left)."""
    if world_size() == 1:
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --------------------------------------------------------------------------- global batch norm


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) with a gradient: the input's gradient is the sum of the output's
    gradients over ranks, since every rank's output depends on every rank's input."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class _GlobalBatchNorm:
    """Batch norm whose training-mode statistics cover the global batch (all ranks).

    Mixed in front of a module's own BatchNorm class (see :class:`DataParallel`), so the
    module keeps its parameters, buffers and state_dict keys. Mean and variance are two-pass
    sums in float64 through a differentiable all-reduce: the backward pass sums the
    statistics' gradients over ranks too, which is what makes a split batch equal the whole
    one. A rank with an empty shard contributes zeros. Evaluation mode is the plain module.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)  # type: ignore[misc]
        dims = [d for d in range(x.dim()) if d != 1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.new_full((1,), x.numel() // max(x.shape[1], 1), dtype=torch.float64)
        sums = _SumOverRanks.apply(torch.cat([x.sum(dims, dtype=torch.float64), count]))
        n = sums[-1]
        mean = (sums[:-1] / n).to(x.dtype)
        centred = x - mean.view(shape)
        var = _SumOverRanks.apply((centred * centred).sum(dims, dtype=torch.float64)) / n
        out = centred * torch.rsqrt(var.to(x.dtype) + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            self._update_running(mean.detach(), (var * n / (n - 1).clamp(min=1)).detach())
        return out

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = self.momentum
        if factor is None:  # cumulative moving average, as nn.BatchNorm does
            factor = 1.0 / float(self.num_batches_tracked)
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(
            unbiased_var.to(self.running_var.dtype), alpha=factor
        )


_GLOBAL_CLASSES: dict[type, type] = {}


def _global_class(cls: type) -> type:
    if cls not in _GLOBAL_CLASSES:
        _GLOBAL_CLASSES[cls] = type(f"Global{cls.__name__}", (_GlobalBatchNorm, cls), {})
    return _GLOBAL_CLASSES[cls]


class DataParallel:
    """``model`` as ``DistributedDataParallel`` with global batch norm, until :meth:`close`.

    Gradients are averaged over ranks by DDP; each rank must therefore scale its loss so
    that the average is the global batch's (see :func:`squeezr.train.PlainEpochRunner`).
    The model's BatchNorm modules switch class in place (their parameters, buffers and
    state_dict keys stay), so resume states and the best-epoch copies written meanwhile are
    ordinary; :meth:`close` switches them back. (The running statistics come from the same
    all-reduced sums on every rank; DDP's buffer broadcast from rank 0 changes nothing.)
    """

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        world_size()  # the process group, before DDP needs it
        self.swapped: list[tuple[nn.Module, type]] = []
        for module in model.modules():
            if isinstance(module, _BatchNorm) and not isinstance(module, nn.SyncBatchNorm):
                self.swapped.append((module, type(module)))
                module.__class__ = _global_class(type(module))
        self.module = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    @property
    def stand_in(self) -> bool:
        """Whether a rank with no share of a batch should forward one sample at weight 0
        instead of an empty batch: every rank must run the forward and backward (DDP's
        gradient all-reduce), and some models (a Llama attention reshape) refuse an empty
        batch. Not with batch norm, whose global statistics must not count a stand-in (and
        convolutions take an empty batch)."""
        return not self.swapped

    def close(self) -> None:
        """Give the BatchNorm modules back their own class (idempotent)."""
        for module, cls in self.swapped:
            module.__class__ = cls
        self.swapped = []
