"""The settings of a pruning run, recorded as the experiment's params and checked on resume."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import Any

from squeezr import saliency, schedules
from squeezr.dbx.errors import UserError
from squeezr.prune.targets import Target
from squeezr.train import SEED_LIMIT, TrainConfig


@dataclass
class PruneConfig:
    """Everything that decides a pruning run's outcome (stored as the experiment's params).

    Fine-tuning defaults follow the spec: 50 epochs per loop, lr 0.1 dropped x0.1 at epochs
    10 and 20 (``lr=0.001, milestones=()`` is the constant-rate variant).
    """

    target: Target
    method: str = "oracle"
    schedule: str = "once"
    blocks_per_step: int = 1
    selection: str = "val"
    recompute_every: int = 1
    epochs: int = 50
    lr: float = 0.1
    milestones: tuple[int, ...] = (10, 20)
    noise: float = 0.0
    freeze_classifier: bool = False
    batch_size: int = 128
    eval_batch_size: int = 1000
    augment: bool = True
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        """UserError for settings that cannot work, before any compute is spent.

        Checks the settings on their own, including the fine-tuning :class:`TrainConfig` every
        loop will use; what depends on the model and data is checked by
        :func:`squeezr.prune.plan.plan_run`.
        """
        saliency.get(self.method)
        schedule = schedules.parse(self.schedule)
        seed = self.seed
        if (
            isinstance(seed, bool)
            or not isinstance(seed, numbers.Integral)
            or not 0 <= seed < SEED_LIMIT
        ):
            raise UserError(f"--seed must be a whole number from 0 to 2**62 - 1, not {seed!r}")
        if self.selection not in ("val", "prune"):
            raise UserError(f"--selection must be 'val' or 'prune', not {self.selection!r}")
        if self.blocks_per_step < 1:
            raise UserError("--blocks-per-step must be at least 1")
        if self.recompute_every < 0:
            raise UserError("--recompute-every must be 0 (once) or a positive number of steps")
        if self.eval_batch_size < 1:
            raise UserError(f"eval_batch_size must be at least 1, not {self.eval_batch_size}")
        if schedule.never:
            return
        if self.epochs < 1:
            raise UserError("--epochs must be at least 1 (or use --schedule none)")
        try:  # low loops differ only in their (positive) epoch count
            self.train_config(self.epochs, seed=self.seed)
        except UserError as exc:
            raise UserError(f"bad fine-tuning setting: {exc}") from None

    def params(self) -> dict[str, Any]:
        """JSON-able form, as recorded in the experiment (and compared on resume)."""
        out = asdict(self)
        out["target"] = asdict(self.target)
        out["milestones"] = list(self.milestones)
        out["schedule"] = schedules.parse(self.schedule).text
        return out

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> PruneConfig:
        """Inverse of ``params()`` (used to resume a run from its experiment record)."""
        try:
            values = dict(params)
            values["target"] = Target(**dict(values["target"]))
            values["milestones"] = tuple(values["milestones"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"the recorded pruning settings are unreadable ({exc!r})") from None
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})

    def train_config(self, epochs: int, seed: int) -> TrainConfig:
        """The settings of one fine-tuning loop of ``epochs`` epochs (best epoch restored,
        the loop's starting weights included as a candidate)."""
        return TrainConfig(
            epochs=epochs,
            lr=self.lr,
            milestones=tuple(self.milestones),
            batch_size=self.batch_size,
            augment=self.augment,
            restore_best=True,
            seed=seed,
            device=self.device,
            noise_eta=self.noise,
            freeze_classifier=self.freeze_classifier,
            initial_is_candidate=True,
        )
