"""The trainer: training from scratch (spec §6) and fine-tuning (spec §5), recorded in dbx.

One function, :func:`fit`, serves both baselines and the pruning loop's fine-tuning: SGD with
Nesterov momentum and weight decay, a milestone learning-rate schedule, batched CIFAR
augmentation, validation every epoch with restore of the best epoch, checkpoints, and an
exact resume state written after every epoch so a killed run continues bit-identically (on
CPU). On a CUDA device with ``fast=True`` the epochs run through :mod:`squeezr.fastpath`
(same hyperparameters; see that module for what differs).
"""

from __future__ import annotations

import copy
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from squeezr.augment import normalize, pad_crop_flip
from squeezr.dbx.fileio import atomic_path
from squeezr.errors import UserError

RESUME_FORMAT = 1


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training (or fine-tuning) loop; JSON-able via :meth:`to_dict`.

    ``milestones=None`` divides the learning rate by ``1/lr_gamma`` after 50% and 75% of the
    epochs (250 and 375 of 500, as in the spec); an explicit tuple gives the epochs after
    which it is divided; ``()`` keeps it constant. ``stochastic_depth`` is the drop
    probability of the last block (survival decays linearly from 1 over the blocks).
    ``initial_is_candidate`` lets the weights fit() started with (epoch 0) win the best-epoch
    restore, so a fine-tuning loop that only hurts is undone.
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
        if self.milestones is not None:
            object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        checks = [
            (self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0 < self.lr_gamma <= 1, f"lr_gamma must be in (0, 1], got {self.lr_gamma}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0 (0 = no checkpoints)"),
            (
                0 <= self.stochastic_depth < 1,
                f"stochastic_depth must be in [0, 1), got {self.stochastic_depth}",
            ),
            (self.noise_eta >= 0, f"noise_eta must be >= 0, got {self.noise_eta}"),
            (
                self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
                f"device must be auto, cpu or cuda, got {self.device!r}",
            ),
            (
                self.milestones is None or all(m >= 1 for m in self.milestones),
                f"milestones must be epochs >= 1, got {self.milestones}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        if self.nesterov and self.momentum == 0:
            raise UserError("nesterov needs momentum > 0; set momentum or nesterov=False")

    def resolved_milestones(self) -> tuple[int, ...]:
        """The epochs after which the learning rate is multiplied by ``lr_gamma``."""
        if self.milestones is not None:
            return self.milestones
        return tuple(m for m in (self.epochs // 2, self.epochs * 3 // 4) if m >= 1)

    def lr_at(self, epoch: int) -> float:
        """Learning rate used during (1-based) ``epoch``."""
        drops = sum(1 for m in self.resolved_milestones() if m < epoch)
        return self.lr * self.lr_gamma**drops

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (milestones as a list), for dbx params and resume checks."""
        d = asdict(self)
        d["milestones"] = None if self.milestones is None else list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a UserError (typo protection)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown training options {unknown}; known: {sorted(known)}")
        return cls(**d)


@dataclass
class FitResult:
    """What :func:`fit` did. ``history`` has one dict per epoch, epoch 0 = before training."""

    best_epoch: int
    best_val_acc: float
    test_acc: float
    epochs_run: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) — call before building a model."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto``/None → CUDA when available, else CPU; asking for absent CUDA is a UserError."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    return device


def evaluate(
    model: nn.Module,
    split: Any,
    batch_size: int = 1000,
    device: str | torch.device | None = None,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    amp: bool = False,
) -> float:
    """Accuracy of ``model`` on ``split`` (batched, no_grad, eval mode), in [0, 1].

    Normalisation uses ``mean``/``std`` (0–1 scale), defaulting to ``split.mean``/``split.std``
    when the split carries them. ``device`` defaults to the model's device. ``amp`` runs in
    bf16 on CUDA (the fast path's evaluation). The model's train/eval mode is restored.
    """
    mean = mean if mean is not None else getattr(split, "mean", None)
    std = std if std is not None else getattr(split, "std", None)
    if mean is None or std is None:
        raise UserError("evaluate needs the dataset normalisation: pass mean=splits.mean, std=...")
    if device is None:
        device = next(model.parameters()).device
    return _accuracy(model, split.x, split.y, mean, std, batch_size, torch.device(device), amp)


@torch.no_grad()
def _accuracy(model, x, y, mean, std, batch_size, device, amp) -> float:
    if len(y) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    use_amp = amp and device.type == "cuda"
    try:
        for i in range(0, len(y), batch_size):
            xb = normalize(x[i : i + batch_size].to(device, non_blocking=True), mean, std)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                out = model(xb)
            correct += (out.argmax(1) == y[i : i + batch_size].to(device)).sum()
    finally:
        model.train(was_training)
    return correct.item() / len(y)


class StochasticDepth:
    """Stochastic depth (Huang et al. 2016), "inverse" variant, via ``block.residual_scale``.

    Survival probability decays linearly over the remaining blocks in forward order, from
    ``1 - drop_last/L`` for the first to ``1 - drop_last`` for the last. In training each
    block's residual branch is multiplied by ``keep / p`` (0 when dropped, ``1/p`` when
    kept), so at evaluation the network is used as is and saved models are ordinary. A
    dropped branch is still computed (its BN statistics update), it just contributes zero.
    The scales are views into one device tensor refilled in place, which CUDA graphs need.
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
        self.survival = torch.tensor(
            [1 - (k + 1) / n * drop_last for k in range(len(self.blocks))], device=device
        )
        self.scales = torch.ones(len(self.blocks), device=device)
        self.generator = generator
        for k, block in enumerate(self.blocks):
            block.residual_scale = self.scales[k]

    def resample(self) -> None:
        """Draw which blocks survive for the next training batch."""
        rand = torch.rand(self.scales.shape, generator=self.generator, device=self.scales.device)
        self.scales.copy_((rand < self.survival).to(self.scales.dtype) / self.survival)

    def reset(self) -> None:
        """Every block on at full weight (evaluation)."""
        self.scales.fill_(1.0)

    def remove(self) -> None:
        """Give the blocks back their plain residual branch."""
        for block in self.blocks:
            block.residual_scale = None


class PlainEpochRunner:
    """One epoch of ordinary training: fp32, eager, batch-by-batch augmentation.

    Keeps the last partial batch. Used on CPU, and on CUDA when ``fast=False``.
    """

    def __init__(self, model, optimizer, split, mean, std, cfg, device, order_gen, aug_gen, sd):
        self.model, self.optimizer, self.split = model, optimizer, split
        self.mean, self.std, self.cfg, self.device = mean, std, cfg, device
        self.order_gen, self.aug_gen, self.sd = order_gen, aug_gen, sd

    @property
    def images_per_epoch(self) -> int:
        return len(self.split.y)

    def run(self) -> tuple[float, float]:
        """Train one epoch; returns (mean loss per image, training accuracy)."""
        model, opt, bs = self.model, self.optimizer, self.cfg.batch_size
        model.train()
        n = len(self.split.y)
        perm = torch.randperm(n, generator=self.order_gen)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            xb = self.split.x[idx].to(self.device, non_blocking=True)
            yb = self.split.y[idx].to(self.device, non_blocking=True)
            if self.cfg.augment:
                xb = pad_crop_flip(xb, self.aug_gen)
            if self.sd is not None:
                self.sd.resample()
            out = model(normalize(xb, self.mean, self.std))
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            correct += (out.argmax(1) == yb).sum()
        if self.sd is not None:
            self.sd.reset()
        return loss_sum.item() / n, correct.item() / n


def make_epoch_runner(
    model: nn.Module,
    optimizer: torch.optim.SGD,
    split: Any,
    mean: Sequence[float],
    std: Sequence[float],
    cfg: TrainConfig,
    device: torch.device,
    order_gen: torch.Generator,
    aug_gen: torch.Generator,
    sd: StochasticDepth | None = None,
) -> Any:
    """The fast GPU runner when ``cfg.fast`` on CUDA with at least one full batch, else plain.

    Both have ``run() -> (train_loss, train_acc)`` (one epoch) and ``images_per_epoch``;
    ``order_gen`` (CPU) draws the data order, ``aug_gen`` (on ``device``) the augmentation.
    """
    if cfg.fast and device.type == "cuda" and len(split.y) >= cfg.batch_size:
        from squeezr.fastpath import FastEpochRunner

        return FastEpochRunner(
            model, optimizer, split, mean, std, cfg, device, order_gen, aug_gen, sd
        )
    return PlainEpochRunner(model, optimizer, split, mean, std, cfg, device, order_gen, aug_gen, sd)


def add_weight_noise(model: nn.Module, eta: float, generator: torch.Generator) -> None:
    """Add N(0, (η·std(W))²) noise to every conv weight W (spec §5 fine-tuning option)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                w = module.weight
                noise = torch.randn(w.shape, generator=generator, dtype=w.dtype)
                w.add_(noise.to(w.device) * (eta * w.std()))


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


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
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
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
    if state.get("format") != RESUME_FORMAT:
        raise UserError(f"{path} is not a squeezr resume state (format {state.get('format')})")
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
) -> FitResult:
    """Train ``model`` in place on ``splits.train``; validate/test each epoch; restore the best.

    Logs ``f"{prefix}/epoch/{e}"`` events (epoch 0 = before training: val/test accuracy
    only) and ``f"{prefix}/result"`` to ``exp`` when given. ``set_results`` (default: only
    when ``prefix == "train"``) also writes best_epoch, best_val_acc, test_acc, params,
    macs, epochs and seconds into ``exp.results``. Checkpoints (every ``checkpoint_every``
    epochs, epoch 0 included) go to the experiment as ``checkpoints/epoch-XXXX.pt`` (under
    ``checkpoints/<prefix>/`` for other prefixes) or into ``checkpoint_dir``.

    A resume state is written after every epoch to ``resume_path`` (default:
    ``exp.path / "resume-<prefix>.pt"``, else ``checkpoint_dir / "resume.pt"``, else none);
    if that file exists when fit starts, training continues from it, and it is deleted once
    fit has finished. ``on_epoch_end(epoch, row)`` runs after each epoch's state is safe.
    """
    device = resolve_device(cfg.device)
    if set_results is None:
        set_results = prefix == "train"
    if cfg.checkpoint_every and exp is None and checkpoint_dir is None:
        raise UserError("checkpoint_every needs an experiment or a checkpoint_dir to write to")
    seed_everything(cfg.seed)
    model.to(device)
    mean, std = splits.mean, splits.std
    amp = cfg.fast and device.type == "cuda"
    frozen = _freeze_classifier(model) if cfg.freeze_classifier else []
    sd = None
    try:
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
        order_gen = torch.Generator().manual_seed(cfg.seed)
        aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        val_x, val_y, test_x, test_y = _eval_tensors(splits, device, amp)

        def accuracy(x, y) -> float:
            return _accuracy(model, x, y, mean, std, 1000, device, amp)

        resume_file = _resume_file(exp, prefix, resume_path, checkpoint_dir)
        run = _RunState(model, optimizer, scheduler, order_gen, aug_gen, cfg)
        saved = _load_resume(resume_file)
        if saved is not None:
            _check_resume_matches(saved, cfg, model, resume_file)
            run.restore(saved)
        else:
            if cfg.noise_eta > 0:
                add_weight_noise(model, cfg.noise_eta, torch.Generator().manual_seed(cfg.seed + 2))
            t0 = time.perf_counter()
            row = {"epoch": 0, "val_acc": accuracy(val_x, val_y)}
            row["test_acc"] = accuracy(test_x, test_y)
            row["seconds"] = time.perf_counter() - t0
            run.history, run.seconds = [row], row["seconds"]
            if cfg.initial_is_candidate or cfg.epochs == 0:
                run.best.offer(0, row["val_acc"], model)
            if exp is not None:
                exp.log(f"{prefix}/epoch/0", **{k: v for k, v in row.items() if k != "epoch"})
            if cfg.checkpoint_every:
                _checkpoint(model, 0, exp, prefix, checkpoint_dir)
            run.save(resume_file)
        if cfg.stochastic_depth > 0:
            sd = StochasticDepth(model, cfg.stochastic_depth, device, aug_gen)
        runner = make_epoch_runner(
            model, optimizer, splits.train, mean, std, cfg, device, order_gen, aug_gen, sd
        )
        bar = tqdm(
            range(run.epoch + 1, cfg.epochs + 1),
            desc=prefix,
            total=cfg.epochs,
            initial=run.epoch,
            disable=not progress,
            leave=False,
        )
        for epoch in bar:
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            train_loss, train_acc = runner.run()
            scheduler.step()
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_acc": accuracy(val_x, val_y),
                "test_acc": accuracy(test_x, test_y),
                "lr": lr,
            }
            row["seconds"] = time.perf_counter() - t0
            run.epoch = epoch
            run.seconds += row["seconds"]
            run.history.append(row)
            run.best.offer(epoch, row["val_acc"], model)
            if exp is not None:
                exp.log(f"{prefix}/epoch/{epoch}", **{k: v for k, v in row.items() if k != "epoch"})
            if cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0:
                _checkpoint(model, epoch, exp, prefix, checkpoint_dir)
            run.save(resume_file)
            bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{row['val_acc']:.4f}")
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
        bar.close()
        if sd is not None:
            sd.remove()
            sd = None
        best = run.best
        if cfg.restore_best and best.weights is not None:
            model.load_state_dict(best.weights)
        # The restored weights are exactly those evaluated at the best epoch.
        restored = best.epoch if cfg.restore_best and best.weights is not None else -1
        result = FitResult(
            best_epoch=best.epoch,
            best_val_acc=best.val_acc,
            test_acc=run.history[restored]["test_acc"],
            epochs_run=cfg.epochs,
            seconds=run.seconds,
            history=run.history,
        )
        if exp is not None:
            _record(exp, prefix, result, model, set_results)
        if resume_file is not None:
            resume_file.unlink(missing_ok=True)
        return result
    finally:
        if sd is not None:
            sd.remove()
        for p in frozen:
            p.requires_grad_(True)


class _RunState:
    """What a resume state holds: training objects, RNG streams, best-so-far and history."""

    def __init__(self, model, optimizer, scheduler, order_gen, aug_gen, cfg: TrainConfig):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.order_gen, self.aug_gen, self.cfg = order_gen, aug_gen, cfg
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
        _atomic_torch_save(state, path)

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
        tracker.epoch, tracker.val_acc, tracker.weights = (
            state["epoch"],
            state["val_acc"],
            state["weights"],
        )
        return tracker


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
    """Validation/test tensors; resident on the GPU for the fast path (they are small)."""
    tensors = (splits.val.x, splits.val.y, splits.test.x, splits.test.y)
    return tuple(t.to(device) for t in tensors) if resident else tensors


def _load_resume(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(
            f"cannot read resume state {path} ({exc}); delete it to start over"
        ) from exc


def _checkpoint(model: nn.Module, epoch: int, exp, prefix: str, checkpoint_dir) -> None:
    from squeezr.models import save_model

    name = f"epoch-{epoch:04d}.pt"
    if exp is None:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        save_model(model, Path(checkpoint_dir) / name)
        return
    rel = f"checkpoints/{name}" if prefix == "train" else f"checkpoints/{prefix}/{name}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        save_model(model, path)
        info = exp.attach(path, name=rel)
    exp.log(f"{prefix}/checkpoint/{epoch}", **info)


def _record(exp, prefix: str, result: FitResult, model: nn.Module, set_results: bool) -> None:
    from squeezr.models import ResNet, count_macs, count_params

    summary = {
        "best_epoch": result.best_epoch,
        "best_val_acc": result.best_val_acc,
        "test_acc": result.test_acc,
        "params": count_params(model),
        "macs": count_macs(model) if isinstance(model, ResNet) else None,
        "epochs": result.epochs_run,
        "seconds": result.seconds,
    }
    exp.log(f"{prefix}/result", **summary)
    if set_results:
        exp.results.update(summary)
