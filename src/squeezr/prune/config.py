"""The settings of a pruning run, recorded as the experiment's params and checked on resume."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

from squeezr import saliency, schedules
from squeezr.dbx.errors import UserError
from squeezr.prune import channels
from squeezr.prune.phasing import MODES, SAMPLES
from squeezr.prune.replace import INITS
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
    # The chapter-4 strategies (spec §7; see docs/pruning.md). Off by default.
    phase: int = 0
    lazy: bool = False
    phase_mode: str = "linear"
    phase_sample: str = "epoch"
    equalise: bool = False
    replace: int = 0
    replace_init: str = "random"
    distill: tuple[float, float] | None = None
    local: tuple[int, int] | None = None
    total_budget: int | None = None
    initial_epochs: int | None = None
    # A stage after the blocks: "channels:RATIO[,...]" (squeezr.prune.channels). Off: None.
    then: str | None = None

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
        self._validate_strategies()
        if self.then is not None:
            channels.parse(self.then)
            channels.require_torch_pruning()
        if schedule.never:
            return
        if self.epochs < 1:
            raise UserError("--epochs must be at least 1 (or use --schedule none)")
        try:  # low loops differ only in their (positive) epoch count
            self.train_config(self.epochs, seed=self.seed)
        except UserError as exc:
            raise UserError(f"bad fine-tuning setting: {exc}") from None

    def _validate_strategies(self) -> None:
        """Each strategy setting on its own (combinations: :func:`squeezr.prune.plan`)."""
        if not _whole(self.phase, 0):
            raise UserError(f"--phase must be a whole number of epochs >= 0, not {self.phase!r}")
        if self.phase_mode not in MODES:
            raise UserError(f"--phase-mode must be one of {', '.join(MODES)}")
        if self.phase_sample not in SAMPLES:
            raise UserError(f"--phase-sample must be one of {', '.join(SAMPLES)}")
        if not _whole(self.replace, 0) or self.replace == 1:
            raise UserError(
                f"--replace K needs a window of at least 2 blocks (0 = off), not {self.replace!r}"
            )
        if self.replace_init not in INITS:
            raise UserError(f"--init must be one of {', '.join(INITS)}")
        if self.distill is not None:
            alpha, temperature = self.distill
            if not (0 <= alpha <= 1 and 0 < temperature < math.inf):
                raise UserError(
                    f"--distill α,T needs 0 <= α <= 1 and T > 0 (e.g. 0.5,4), not {alpha},{temperature}"
                )
        if self.local is not None:
            before, after = self.local
            if not (_whole(before, 0) and _whole(after, 0)) or before + after < 1:
                raise UserError(
                    f"--local BL,BR needs whole numbers >= 0, at least one positive, not {before},{after}"
                )
        for name, value in (
            ("--total-budget", self.total_budget),
            ("--checkpoint", self.initial_epochs),
        ):
            if value is not None and not _whole(value, 0):
                raise UserError(f"{name} must be a whole number of epochs >= 0, not {value!r}")

    def params(self) -> dict[str, Any]:
        """JSON-able form, as recorded in the experiment (and compared on resume)."""
        out = asdict(self)
        out["target"] = asdict(self.target)
        out["milestones"] = list(self.milestones)
        out["schedule"] = schedules.parse(self.schedule).text
        for name in ("distill", "local"):
            out[name] = None if out[name] is None else list(out[name])
        if self.then is None:
            # Recorded only when used, so runs recorded before the stage existed resume.
            del out["then"]
        else:
            out["then"] = channels.parse(self.then).text
        return out

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> PruneConfig:
        """Inverse of ``params()`` (used to resume a run from its experiment record)."""
        try:
            values = dict(params)
            values["target"] = Target(**dict(values["target"]))
            values["milestones"] = tuple(values["milestones"])
            for name in ("distill", "local"):
                if values.get(name) is not None:
                    values[name] = tuple(values[name])
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


def _whole(value: Any, minimum: int) -> bool:
    """Whether ``value`` is a whole number (not a bool) >= ``minimum``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum
