"""The trainer: training from scratch (spec §6) and fine-tuning (spec §5), recorded in dbx.

One function, :func:`fit`, serves both baselines and the pruning loop's fine-tuning: SGD with
Nesterov momentum and weight decay, a milestone learning-rate schedule, batched CIFAR
augmentation, validation every epoch with restore of the best epoch, checkpoints, and an
exact resume state written after every epoch so a killed run continues bit-identically (on
CPU). On a CUDA device with ``fast=True`` the epochs run through :mod:`squeezr.fastpath`
(same hyperparameters; see that module for what differs).

Every random stream the trainer owns (data order, augmentation, stochastic depth) lives in a
CPU ``torch.Generator``, whatever the training device, so a resume state written on a GPU
continues on a CPU and vice versa.
"""

from __future__ import annotations

import copy
import itertools
import math
import numbers
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from squeezr import distributed
from squeezr.blocknet import BlockNet, attach_model, count_macs, count_params, save_model
from squeezr.dbx.errors import UserError
from squeezr.dbx.progress import progress_bar
from squeezr.models import MODEL_ATTACHMENT
from squeezr.tasks import ImageClassification, Task, task_of
from squeezr.torchfiles import load_torch_file, save_torch_file

RESUME_FORMAT = 2
"""Version of the resume state; 2 = all trainer generators on the CPU (portable)."""
SEED_LIMIT = 2**62
"""Seeds are whole numbers below this, well inside torch's range (below 2**64) for the
``seed + 1`` and ``seed + 2`` the trainer also seeds generators with."""
EVAL_BATCH = 1000
FAST_PATH_BYTES = 4 << 30
"""The GPU fast path holds the whole training set on the device; larger sets (ImageNet-size
image folders) train through the plain runner, batch by batch from host memory."""
_DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")
_DEVICE_HELP = "use auto, cpu, cuda or cuda:N"


def _whole(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int if it is a whole number >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UserError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def _real(
    name: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """``value`` as a float if it is a finite number between ``low`` and ``high`` (bounds
    included unless ``open_low``/``open_high``); bools and NaN/inf are refused."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low)
    ok = ok and (value < high if open_high else value <= high)
    if not ok:
        interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise UserError(f"{name} must be a finite number in {interval}, got {value!r}")
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{name} must be true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training (or fine-tuning) loop; JSON-able via :meth:`to_dict`.

    ``milestones=None`` divides the learning rate by ``1/lr_gamma`` after 50% and 75% of the
    epochs (250 and 375 of 500, as in the spec); an explicit increasing tuple gives the epochs
    after which it is divided (milestones past ``epochs`` never fire); ``()`` keeps it
    constant. ``stochastic_depth`` is the drop probability of the last block (survival decays
    linearly from 1 over the blocks). ``noise_eta`` adds Gaussian noise to the conv weights
    before epoch 1 (:func:`add_weight_noise`). ``initial_is_candidate`` lets the weights fit()
    was given (epoch 0, evaluated before any noise) win the best-epoch restore, so a
    fine-tuning loop that only hurts is undone.

    Every field is checked when the config is built (types, ranges, finite numbers, device
    syntax), so a bad setting fails before any data is loaded or experiment created. Whether
    the device exists is checked by :func:`resolve_device`.
    """

    epochs: int = 1
    lr: float = 0.1
    milestones: tuple[int, ...] | None = None
    lr_gamma: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    batch_size: int = 128
    augment: bool = True
    restore_best: bool = True
    checkpoint_every: int = 0
    seed: int = 0
    device: str = "auto"
    fast: bool = True
    stochastic_depth: float = 0.0
    noise_eta: float = 0.0
    freeze_classifier: bool = False
    initial_is_candidate: bool = False

    def __post_init__(self) -> None:
        values = {
            "epochs": _whole("epochs", self.epochs, 0),
            "lr": _real("lr", self.lr, 0, open_low=True),
            "milestones": self._checked_milestones(),
            "lr_gamma": _real("lr_gamma", self.lr_gamma, 0, 1, open_low=True),
            "momentum": _real("momentum", self.momentum, 0, 1, open_high=True),
            "weight_decay": _real("weight_decay", self.weight_decay, 0),
            "batch_size": _whole("batch_size", self.batch_size, 1),
            "checkpoint_every": _whole("checkpoint_every (0 = none)", self.checkpoint_every, 0),
            "seed": _whole("seed", self.seed, 0),
            "stochastic_depth": _real(
                "stochastic_depth", self.stochastic_depth, 0, 1, open_high=True
            ),
            "noise_eta": _real("noise_eta", self.noise_eta, 0),
        }
        for name in (
            "nesterov",
            "augment",
            "restore_best",
            "fast",
            "freeze_classifier",
            "initial_is_candidate",
        ):
            values[name] = _flag(name, getattr(self, name))
        if not isinstance(self.device, str) or not _DEVICE_NAME.fullmatch(self.device):
            raise UserError(f"unknown device {self.device!r}; {_DEVICE_HELP}")
        if values["seed"] >= SEED_LIMIT:
            raise UserError(f"seed must be below 2**62, got {self.seed}")
        if self.nesterov and values["momentum"] == 0:
            raise UserError("nesterov needs momentum > 0; set momentum or nesterov=False")
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _checked_milestones(self) -> tuple[int, ...] | None:
        if self.milestones is None:
            return None
        if isinstance(self.milestones, str | bytes) or not isinstance(self.milestones, Sequence):
            raise UserError(f"milestones must be a list of epochs, got {self.milestones!r}")
        checked = tuple(_whole("a milestone", m, 1) for m in self.milestones)
        if any(b <= a for a, b in itertools.pairwise(checked)):
            raise UserError(f"milestones must be increasing epochs, got {list(checked)}")
        return checked

    def resolved_milestones(self) -> tuple[int, ...]:
        """The epochs after which the learning rate is multiplied by ``lr_gamma``."""
        if self.milestones is not None:
            return self.milestones
        return tuple(m for m in (self.epochs // 2, self.epochs * 3 // 4) if m >= 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (milestones as a list), for dbx params and resume checks."""
        d = asdict(self)
        d["milestones"] = None if self.milestones is None else list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a UserError (typo protection)."""
        if not isinstance(d, dict):
            raise UserError(f"training options must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown training options {unknown}; known: {sorted(known)}")
        return cls(**d)


@dataclass
class FitResult:
    """What :func:`fit` did. ``history`` has one dict per epoch, epoch 0 = before training.

    ``val_acc`` and ``test_acc`` come from one final fp32 evaluation of the model fit returns
    (the restored best epoch, or the last epoch with ``restore_best=False``); these are the
    recorded results. ``best_epoch`` is the epoch with the highest per-epoch validation
    accuracy; ``best_val_acc`` is the final ``val_acc`` when that epoch was restored, else the
    per-epoch figure. (Per-epoch figures are bf16 on the GPU fast path, so they may differ
    slightly from the final evaluation there; on CPU they are identical.) ``epochs_run`` is
    the number of training epochs done, over all resumed runs.
    """

    best_epoch: int
    best_val_acc: float
    test_acc: float
    epochs_run: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    val_acc: float = math.nan


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) — call before building a model."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto``/None → CUDA when available, else CPU; else ``cpu``, ``cuda`` or ``cuda:N``.

    Anything else, or a CUDA device this machine does not have, is a UserError saying what
    to use instead, so callers can check a device before they start work.
    """
    text = "auto" if name is None else str(name)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not _DEVICE_NAME.fullmatch(text):
        raise UserError(f"unknown device {text!r}; {_DEVICE_HELP}")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"device {text!r} requested but no CUDA GPU is available; use --device cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(f"device {text!r} does not exist: this machine has {count} GPU(s)")
    return distributed.local_device(device)


def evaluate(
    model: nn.Module,
    split: Any,
    batch_size: int = EVAL_BATCH,
    device: str | torch.device | None = None,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    amp: bool = False,
    task: Task | None = None,
) -> float:
    """Accuracy of ``model`` on ``split`` (batched, no_grad, eval mode), in [0, 1].

    ``task`` (:func:`squeezr.tasks.task_of` of the dataset) says how inputs are prepared and
    what accuracy means; ``mean``/``std`` (``splits.mean``/``splits.std``, 0–1 scale) stand
    for image classification without one. ``device`` defaults to the model's device. ``amp``
    runs in bf16 on CUDA (faster, slightly different numbers). The model's train/eval mode is
    restored.
    """
    if task is None:
        if mean is None or std is None:
            raise UserError(
                "evaluate needs the dataset's task or normalisation: pass "
                "task=task_of(splits), or mean=splits.mean, std=splits.std"
            )
        task = ImageClassification(mean, std)
    if device is None:
        device = next(model.parameters()).device
    return _accuracy(model, split.x, split.y, task, batch_size, torch.device(device), amp)


@torch.no_grad()
def _accuracy(model, x, y, task: Task, batch_size, device, amp) -> float:
    if len(y) == 0:
        return float("nan")
    part = distributed.shard(len(y))  # under torchrun each rank counts its share
    x, y = x[part], y[part]
    batch_size = min(batch_size, task.max_batch or batch_size)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total = 0
    use_amp = amp and device.type == "cuda"
    try:
        for i in range(0, len(y), batch_size):
            xb = task.prepare(x[i : i + batch_size], device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                out = model(xb)
            hits, count = task.hits(out, task.targets(y[i : i + batch_size], device))
            correct += hits
            total += count
    finally:
        model.train(was_training)
    if distributed.world_size() > 1:
        counts = distributed.all_reduce(torch.stack([correct, correct.new_tensor(total)]))
        correct, total = counts[0], int(counts[1])
    return correct.item() / total if total else float("nan")


class StochasticDepth:
    """Stochastic depth (Huang et al. 2016), "inverse" variant, via ``block.residual_scale``.

    Survival probability decays linearly over the remaining blocks in forward order, from
    ``1 - drop_last/L`` for the first to ``1 - drop_last`` for the last. In training each
    block's residual branch is multiplied by ``keep / p`` (0 when dropped, ``1/p`` when
    kept), so at evaluation the network is used as is and saved models are ordinary. A
    dropped branch is still computed (its BN statistics update), it just contributes zero.
    The scales are views into one device tensor refilled in place, which CUDA graphs need;
    the draws come from a CPU generator, one ``(steps, blocks)`` table per epoch, so the
    stream is the same on every device and a GPU step never waits for the host.
    """

    def __init__(
        self, model: nn.Module, drop_last: float, device: torch.device, generator: torch.Generator
    ):
        if not hasattr(model, "block_ids"):
            raise UserError("stochastic depth needs a squeezr ResNet (a model with block_ids())")
        self.blocks = [model.block(i) for i in model.block_ids()]
        if any(b.residual_scale is not None for b in self.blocks):
            raise UserError("stochastic depth cannot combine with a block's residual_scale")
        n = max(len(self.blocks), 1)
        self.survival = torch.tensor([1 - (k + 1) / n * drop_last for k in range(len(self.blocks))])
        self.scales = torch.ones(len(self.blocks), device=device)
        self.generator = generator
        for k, block in enumerate(self.blocks):
            block.residual_scale = self.scales[k]

    def draw(self, steps: int) -> torch.Tensor:
        """Residual scales for ``steps`` training batches, ``(steps, blocks)`` on the device."""
        rand = torch.rand((steps, len(self.blocks)), generator=self.generator)
        return ((rand < self.survival).float() / self.survival).to(self.scales.device)

    def use(self, scales: torch.Tensor) -> None:
        """Apply one row of :meth:`draw` to the blocks (in place)."""
        self.scales.copy_(scales)

    def reset(self) -> None:
        """Every block on at full weight (evaluation)."""
        self.scales.fill_(1.0)

    def remove(self) -> None:
        """Give the blocks back their plain residual branch."""
        for block in self.blocks:
            block.residual_scale = None


@dataclass
class EpochContext:
    """What an epoch runner trains with; built once per :func:`fit`.

    ``order_gen`` draws the data order and ``aug_gen`` the augmentation (and, through ``sd``,
    stochastic depth); both are CPU generators on every device. ``sd`` is any per-batch
    residual-scale source with StochasticDepth's ``draw``/``use``/``reset`` (phased pruning
    passes its own); ``loss(out, y, x, idx)`` replaces the task's loss (distillation;
    ``idx`` are the batch's training-set indices, None on the fast path). ``task`` prepares,
    augments and scores batches (image classification with ``mean``/``std`` when None).
    """

    model: nn.Module
    optimizer: torch.optim.SGD
    split: Any
    mean: Sequence[float]
    std: Sequence[float]
    cfg: TrainConfig
    device: torch.device
    order_gen: torch.Generator
    aug_gen: torch.Generator
    sd: Any = None
    loss: Callable[..., torch.Tensor] | None = None
    task: Task | None = None

    def __post_init__(self) -> None:
        if self.task is None:
            self.task = ImageClassification(self.mean, self.std)


def batch_loss(ctx: EpochContext, out, y, x, idx) -> torch.Tensor:
    """The training loss of one batch: ``ctx.loss`` when given, else the task's loss."""
    if ctx.loss is not None:
        return ctx.loss(out, y, x, idx)
    return ctx.task.loss(out, y)


class PlainEpochRunner:
    """One epoch of ordinary training: fp32, eager, batch-by-batch augmentation.

    Keeps the last partial batch. Used on CPU, on CUDA when ``fast=False``, and under
    torchrun: there every rank draws the same data order and augments the whole global batch
    (the same random streams as one process), then trains on its shard of it
    (:func:`squeezr.distributed.shard`) through :class:`squeezr.distributed.DataParallel`.
    DDP averages gradients over ranks, so each rank's loss is scaled by its share of the
    batch times the world size: the update is the global batch's mean-loss gradient, also
    when the last batch splits unevenly (for a language model: exact when the samples have
    equally many scored tokens, as fixed-length sequences do).
    """

    def __init__(self, ctx: EpochContext) -> None:
        self.ctx = ctx
        self.world = distributed.world_size()
        self.parallel = distributed.DataParallel(ctx.model, ctx.device) if self.world > 1 else None

    @property
    def images_per_epoch(self) -> int:
        return len(self.ctx.split.y)

    def run(self) -> tuple[float, float]:
        """Train one epoch; returns (mean loss per image, training accuracy)."""
        ctx = self.ctx
        model, opt, bs, device = ctx.model, ctx.optimizer, ctx.cfg.batch_size, ctx.device
        model.train()
        n = len(ctx.split.y)
        perm = torch.randperm(n, generator=ctx.order_gen)
        sd_scales = ctx.sd.draw(math.ceil(n / bs)) if ctx.sd is not None else None
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        total = 0
        task = ctx.task
        net = self.parallel or model
        for step, i in enumerate(range(0, n, bs)):
            idx = perm[i : i + bs]
            xb = ctx.split.x[idx].to(device, non_blocking=True)
            yb = task.targets(ctx.split.y[idx], device)
            if ctx.cfg.augment:
                xb = task.augment(xb, ctx.aug_gen)
            if sd_scales is not None:
                ctx.sd.use(sd_scales[step])
            part, batch = distributed.shard(len(idx)), len(idx)
            share = part.stop - part.start  # 0: a last batch smaller than the world
            if share == 0 and self.parallel.stand_in:
                part = slice(0, 1)  # one sample at weight 0 (some models refuse empty batches)
            idx, xb, yb = idx[part], xb[part], yb[part]
            xb = task.prepare(xb, device)
            out = net(xb)
            loss = batch_loss(ctx, out, yb, xb, idx) if len(idx) else out.sum() * 0.0
            opt.zero_grad(set_to_none=True)
            (loss * (share * self.world / batch) if self.world > 1 else loss).backward()
            opt.step()
            if share:
                loss_sum += loss.detach() * share
                hits, count = task.hits(out, yb)
                correct += hits
                total += count
        if ctx.sd is not None:
            ctx.sd.reset()
        if self.world > 1:
            sums = torch.stack([loss_sum, correct.double(), loss_sum.new_tensor(total)])
            loss_sum, correct, total = distributed.all_reduce(sums).tolist()
            return loss_sum / n, correct / max(total, 1)
        return loss_sum.item() / n, correct.item() / max(total, 1)

    def close(self) -> None:
        """Undo the data-parallel wrapping (the fast runner restores global settings here)."""
        if self.parallel is not None:
            self.parallel.close()
            self.parallel = None


def make_epoch_runner(ctx: EpochContext) -> Any:
    """The fast GPU runner when ``cfg.fast`` on CUDA with at least one full batch of an image
    classification set that fits the device (:data:`FAST_PATH_BYTES`), in one process (its
    CUDA graphs hold no collectives), else plain.

    Both have ``run() -> (train_loss, train_acc)`` (one epoch), ``images_per_epoch`` and
    ``close()`` (call it when training ends: it undoes the runner's global side effects).
    """
    fits = (
        type(ctx.task) is ImageClassification
        and ctx.split.x.numel() * ctx.split.x.element_size() <= FAST_PATH_BYTES
    )
    if (
        fits
        and ctx.cfg.fast
        and ctx.device.type == "cuda"
        and len(ctx.split.y) >= ctx.cfg.batch_size
        and distributed.world_size() == 1
    ):
        from squeezr.fastpath import FastEpochRunner

        return FastEpochRunner(ctx)
    return PlainEpochRunner(ctx)


def add_weight_noise(model: nn.Module, eta: float, generator: torch.Generator) -> None:
    """Add N(0, (η·std(W))²) noise to every trainable conv weight W (spec §5 fine-tuning
    option; layers frozen for the loop, as in local training, are left as they are)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d) and module.weight.requires_grad:
                w = module.weight
                noise = torch.randn(w.shape, generator=generator, dtype=w.dtype)
                w.add_(noise.to(w.device) * (eta * w.std()))


def fit(
    model: nn.Module,
    splits: Any,
    cfg: TrainConfig,
    exp: Any = None,
    prefix: str = "train",
    resume_path: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    set_results: bool | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
    scales: Any = None,
    loss: Callable[..., torch.Tensor] | None = None,
) -> FitResult:
    """Train ``model`` in place on ``splits.train``; validate/test each epoch; restore the best.

    Logs ``f"{prefix}/epoch/{e}"`` events (epoch 0 = before training: val/test accuracy
    only) and ``f"{prefix}/result"`` to ``exp`` when given. ``set_results`` (default: only
    when ``prefix == "train"``) makes this fit the experiment's outcome: the returned model
    (a squeezr ResNet) is attached as ``model.pt`` and then best_epoch, best_val_acc, val_acc,
    test_acc, params, macs, epochs and seconds are written into ``exp.results`` — in that
    order, so results imply the model is there. Checkpoints (every ``checkpoint_every``
    epochs, epoch 0 included) go to the experiment as ``checkpoints/epoch-XXXX.pt`` (under
    ``checkpoints/<prefix>/`` for other prefixes) or into ``checkpoint_dir``.

    A resume state is written after every epoch to ``resume_path`` (default:
    ``exp.path / "resume-<prefix>.pt"``, else ``checkpoint_dir / "resume.pt"``, else none);
    if that file exists when fit starts, training continues from it, and it is deleted once
    fit has finished. ``on_epoch_end(epoch, row)`` runs after each training epoch's state is
    safe, ``on_epoch_start(epoch)`` before each training epoch (also the first one after a
    resume). ``scales`` (an object like :class:`StochasticDepth`: ``draw``, ``use``, ``reset``,
    ``remove``) sets the blocks' residual scales per batch, as phased pruning does; ``loss``
    replaces the cross-entropy (see :class:`EpochContext`), as distillation does.

    Under torchrun every rank calls fit alike and trains its shard of each global batch
    (:class:`PlainEpochRunner`); only rank 0 writes (``exp``, resume state, checkpoints: the
    other ranks' are ignored), and the others continue from the resume state rank 0 read.
    """
    device = resolve_device(cfg.device)
    if set_results is None:
        set_results = prefix == "train"
    if not distributed.is_main():  # rank 0 writes; the others get its resume state
        exp = resume_path = checkpoint_dir = None
    elif cfg.checkpoint_every and exp is None and checkpoint_dir is None:
        raise UserError("checkpoint_every needs an experiment or a checkpoint_dir to write to")
    resume_file = _resume_file(exp, prefix, resume_path, checkpoint_dir)
    saved = distributed.broadcast_object(_load_resume(resume_file))
    seed_everything(cfg.seed)
    model.to(device)
    training = _Training(model, splits, cfg, device, exp, prefix, checkpoint_dir)
    training.ctx.loss = loss
    if scales is not None:
        if cfg.stochastic_depth > 0:
            raise UserError("stochastic depth cannot combine with other residual scales")
        training.sd = training.ctx.sd = scales
    try:
        if saved is not None:
            _check_resume_matches(saved, cfg, model, resume_file)
            training.run.restore(saved)
        else:
            training.start(resume_file)
        training.train(resume_file, progress, on_epoch_end, on_epoch_start)
        result = training.finish()
        if exp is not None:
            _record(exp, prefix, result, model, set_results)
        if resume_file is not None:
            resume_file.unlink(missing_ok=True)
        return result
    finally:
        training.close()


class _Training:
    """One :func:`fit` call: the optimizer, schedule, random streams, evaluation and records.

    ``start`` evaluates the initial weights (epoch 0), ``train`` runs the remaining epochs,
    ``finish`` restores the chosen weights and evaluates them once in fp32, ``close`` undoes
    everything fit changed temporarily (stochastic depth, a frozen classifier, the fast
    runner's settings). Each epoch, 0 included, ends through :meth:`_end_epoch`.
    """

    def __init__(self, model, splits, cfg: TrainConfig, device, exp, prefix, checkpoint_dir):
        self.model, self.splits, self.cfg, self.device = model, splits, cfg, device
        self.exp, self.prefix, self.checkpoint_dir = exp, prefix, checkpoint_dir
        self.amp = cfg.fast and device.type == "cuda"
        self.frozen = _freeze_classifier(model) if cfg.freeze_classifier else []
        self.sd: Any = None
        self.runner: Any = None
        optimizer = torch.optim.SGD(
            [p for p in model.parameters() if p.requires_grad],
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(cfg.resolved_milestones()), gamma=cfg.lr_gamma
        )
        self.ctx = EpochContext(
            model=model,
            optimizer=optimizer,
            split=splits.train,
            mean=splits.mean,
            std=splits.std,
            cfg=cfg,
            device=device,
            order_gen=torch.Generator().manual_seed(cfg.seed),
            aug_gen=torch.Generator().manual_seed(cfg.seed + 1),
            task=task_of(splits),
        )
        self.run = _RunState(self.ctx, scheduler)
        self.eval_sets = _eval_tensors(splits, device, self.amp)

    def _evaluate(self, amp: bool) -> dict[str, float]:
        """Validation and test accuracy of the model as it is now."""
        val_x, val_y, test_x, test_y = self.eval_sets

        def accuracy(x, y) -> float:
            return _accuracy(self.model, x, y, self.ctx.task, EVAL_BATCH, self.device, amp)

        return {"val_acc": accuracy(val_x, val_y), "test_acc": accuracy(test_x, test_y)}

    def start(self, resume_file: Path | None) -> None:
        """Epoch 0: evaluate and record the weights fit was given (before any noise)."""
        t0 = time.perf_counter()
        row: dict[str, Any] = {"epoch": 0, **self._evaluate(self.amp)}
        row["seconds"] = time.perf_counter() - t0
        self._end_epoch(row, resume_file)

    def train(
        self, resume_file: Path | None, progress: bool, on_epoch_end, on_epoch_start=None
    ) -> None:
        """Train from the epoch after the last one recorded up to ``cfg.epochs``."""
        cfg, run = self.cfg, self.run
        if cfg.stochastic_depth > 0:
            self.sd = StochasticDepth(self.model, cfg.stochastic_depth, self.device, run.aug_gen)
            self.ctx.sd = self.sd
        if run.epoch < cfg.epochs:
            if run.epoch == 0 and cfg.noise_eta > 0:
                # Training starts from noisy weights, but epoch 0 (the candidate to fall back
                # on) stays the weights as given. Added here, not in start(), so a run resumed
                # from the epoch-0 state adds it too.
                noise_gen = torch.Generator().manual_seed(cfg.seed + 2)
                add_weight_noise(self.model, cfg.noise_eta, noise_gen)
            self.runner = make_epoch_runner(self.ctx)
        bar = progress_bar(
            range(run.epoch + 1, cfg.epochs + 1),
            desc=self.prefix,
            total=cfg.epochs,
            initial=run.epoch,
            disable=not progress,
            leave=False,
        )
        with bar:
            for epoch in bar:
                t0 = time.perf_counter()
                lr = self.ctx.optimizer.param_groups[0]["lr"]
                if on_epoch_start is not None:
                    on_epoch_start(epoch)
                train_loss, train_acc = self.runner.run()
                run.scheduler.step()
                row = {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "train_acc": train_acc,
                    **self._evaluate(self.amp),
                    "lr": lr,
                }
                row["seconds"] = time.perf_counter() - t0
                self._end_epoch(row, resume_file)
                bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{row['val_acc']:.4f}")
                if on_epoch_end is not None:
                    on_epoch_end(epoch, row)

    def _end_epoch(self, row: dict[str, Any], resume_file: Path | None) -> None:
        """Book an evaluated epoch: history, best-so-far, event, checkpoint, resume state."""
        cfg, run, epoch = self.cfg, self.run, row["epoch"]
        run.epoch = epoch
        run.seconds += row["seconds"]
        run.history.append(row)
        if epoch > 0 or cfg.initial_is_candidate or cfg.epochs == 0:
            run.best.offer(epoch, row["val_acc"], self.model)
        if self.exp is not None:
            self.exp.log(
                f"{self.prefix}/epoch/{epoch}", **{k: v for k, v in row.items() if k != "epoch"}
            )
        writes = self.exp is not None or self.checkpoint_dir is not None  # rank 0 only
        if cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0 and writes:
            _checkpoint(self.model, epoch, self.exp, self.prefix, self.checkpoint_dir)
        run.save(resume_file)

    def finish(self) -> FitResult:
        """Restore the chosen weights and evaluate them once, in fp32 (the recorded result)."""
        self.close()
        run, cfg = self.run, self.cfg
        restored = cfg.restore_best and run.best.weights is not None
        if restored:
            self.model.load_state_dict(run.best.weights)
        returned = run.history[run.best.epoch if restored else -1]
        # The per-epoch figures are already exact fp32 unless the fast path evaluated in bf16.
        final = (
            self._evaluate(amp=False)
            if self.amp
            else {
                "val_acc": returned["val_acc"],
                "test_acc": returned["test_acc"],
            }
        )
        return FitResult(
            best_epoch=run.best.epoch,
            best_val_acc=final["val_acc"] if restored else run.best.val_acc,
            test_acc=final["test_acc"],
            epochs_run=run.epoch,
            seconds=run.seconds,
            history=run.history,
            val_acc=final["val_acc"],
        )

    def close(self) -> None:
        """Undo fit's temporary changes to the model and to global settings (idempotent)."""
        if self.runner is not None:
            self.runner.close()
            self.runner = None
        if self.sd is not None:
            self.sd.remove()
            self.sd = self.ctx.sd = None
        for p in self.frozen:
            p.requires_grad_(True)
        self.frozen = []


class _RunState:
    """What a resume state holds: training objects, RNG streams, best-so-far and history."""

    def __init__(self, ctx: EpochContext, scheduler) -> None:
        self.model, self.optimizer, self.cfg = ctx.model, ctx.optimizer, ctx.cfg
        self.order_gen, self.aug_gen, self.scheduler = ctx.order_gen, ctx.aug_gen, scheduler
        self.epoch, self.seconds = 0, 0.0
        self.history: list[dict[str, Any]] = []
        self.best = _BestTracker()

    def save(self, path: Path | None) -> None:
        """Write the state atomically (nothing when there is no resume file)."""
        if path is None:
            return
        state = {
            "format": RESUME_FORMAT,
            "config": self.cfg.to_dict(),
            "spec": _model_spec(self.model),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best": self.best.state(),
            "history": self.history,
            "seconds": self.seconds,
            "rng": _rng_state(self.order_gen, self.aug_gen),
        }
        save_torch_file(state, path, make_folder=True)

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"], self.order_gen, self.aug_gen)
        self.best = _BestTracker.from_state(state["best"])
        self.history, self.epoch, self.seconds = state["history"], state["epoch"], state["seconds"]


class _BestTracker:
    """Best validation accuracy so far and a copy of that epoch's weights (earliest on ties)."""

    def __init__(self) -> None:
        self.epoch, self.val_acc, self.weights = -1, -math.inf, None

    def offer(self, epoch: int, val_acc: float, model: nn.Module) -> None:
        if val_acc > self.val_acc or self.weights is None:
            self.epoch, self.val_acc = epoch, val_acc
            self.weights = copy.deepcopy(model.state_dict())

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "val_acc": self.val_acc, "weights": self.weights}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _BestTracker:
        tracker = cls()
        tracker.epoch, tracker.val_acc = state["epoch"], state["val_acc"]
        tracker.weights = state["weights"]
        return tracker


def _rng_state(order_gen: torch.Generator, aug_gen: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
        "order": order_gen.get_state(),
        "augment": aug_gen.get_state(),
    }


def _set_rng_state(state: dict[str, Any], order_gen, aug_gen) -> None:
    """Restore every stream; the global CUDA states only where the same GPUs are present (the
    trainer draws nothing from them, so a run moved to another device loses nothing)."""
    torch.set_rng_state(state["torch"])
    cuda_states = state["cuda"]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])
    order_gen.set_state(state["order"])
    aug_gen.set_state(state["augment"])


def _model_spec(model: nn.Module) -> Any:
    return model.spec() if hasattr(model, "spec") else type(model).__name__


def _resume_file(exp, prefix: str, resume_path, checkpoint_dir) -> Path | None:
    if resume_path is not None:
        return Path(resume_path)
    if exp is not None:
        return Path(exp.path) / f"resume-{prefix.replace('/', '-')}.pt"
    if checkpoint_dir is not None:
        return Path(checkpoint_dir) / "resume.pt"
    return None


def _check_resume_matches(state: dict[str, Any], cfg: TrainConfig, model, path: Path) -> None:
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise UserError(
            f"{path} is not a resume state of this squeezr version (format {found}, expected "
            f"{RESUME_FORMAT}); delete it to start over"
        )
    saved = {k: v for k, v in state["config"].items() if k != "device"}
    wanted = {k: v for k, v in cfg.to_dict().items() if k != "device"}
    diff = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
    if diff:
        raise UserError(
            f"resume state {path} was written with different settings ({', '.join(diff)}); "
            "use the same configuration or delete the file to start over"
        )
    if state["spec"] != _model_spec(model):
        raise UserError(f"resume state {path} belongs to a different model shape; delete it")


def _freeze_classifier(model: nn.Module) -> list[nn.Parameter]:
    """Freeze the final linear layer(s); returns the parameters to unfreeze afterwards."""
    frozen = [
        p
        for m in model.modules()
        if isinstance(m, nn.Linear)
        for p in m.parameters()
        if p.requires_grad
    ]
    if not frozen:
        raise UserError("freeze_classifier: the model has no trainable linear classifier")
    for p in frozen:
        p.requires_grad_(False)
    return frozen


def _eval_tensors(splits, device: torch.device, resident: bool):
    """Validation/test tensors; resident on the GPU for the fast path when they are small
    (CIFAR's are; an ImageNet-size validation set is read batch by batch)."""
    tensors = (splits.val.x, splits.val.y, splits.test.x, splits.test.y)
    small = sum(t.numel() * t.element_size() for t in tensors) <= FAST_PATH_BYTES // 4
    return tuple(t.to(device) for t in tensors) if resident and small else tensors


def _load_resume(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    return load_torch_file(path, "resume state", "delete it to start over")


def _checkpoint(model: nn.Module, epoch: int, exp, prefix: str, checkpoint_dir) -> None:
    name = f"epoch-{epoch:04d}.pt"
    if exp is None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        save_model(model, Path(checkpoint_dir) / name)
        return
    rel = f"checkpoints/{name}" if prefix == "train" else f"checkpoints/{prefix}/{name}"
    exp.log(f"{prefix}/checkpoint/{epoch}", **attach_model(exp, model, rel))


def _record(exp, prefix: str, result: FitResult, model: nn.Module, set_results: bool) -> None:
    summary = {
        "best_epoch": result.best_epoch,
        "best_val_acc": result.best_val_acc,
        "val_acc": result.val_acc,
        "test_acc": result.test_acc,
        "params": count_params(model),
        "macs": count_macs(model) if isinstance(model, BlockNet) else None,
        "epochs": result.epochs_run,
        "seconds": result.seconds,
    }
    if set_results and isinstance(model, BlockNet):
        attach_model(exp, model, MODEL_ATTACHMENT)
    exp.log(f"{prefix}/result", **summary)
    if set_results:
        exp.results.update(summary)
