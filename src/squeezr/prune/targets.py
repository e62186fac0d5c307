"""Pruning targets: when the greedy loop stops (blocks removed or left, a named size, a budget)."""

from __future__ import annotations

from dataclasses import dataclass

from squeezr.errors import UserError
from squeezr.models import PRESETS, ResNet, count_macs, count_params


@dataclass(frozen=True)
class Target:
    """When pruning stops: ``removed`` / ``left`` blocks, or a ``params`` / ``macs`` budget."""

    kind: str
    value: int

    def blocks_to_remove(self, model: ResNet) -> int | None:
        """How many blocks the run removes in all; None for budgets (depends on choices)."""
        have = len(model.block_ids())
        if self.kind == "removed":
            count = self.value
        elif self.kind == "left":
            count = have - self.value
        else:
            return None
        if not 0 < count <= have:
            raise UserError(
                f"target {self.describe()} is impossible for a model with {have} blocks; "
                f"remove between 1 and {have} blocks"
            )
        return count

    def reached(self, model: ResNet, removed: int, total: int | None) -> bool:
        """Whether the model now meets the target (``removed`` blocks taken so far)."""
        if total is not None:
            return removed >= total
        measured = count_params(model) if self.kind == "params" else count_macs(model)
        return measured <= self.value or not model.block_ids()

    def describe(self) -> str:
        return f"{self.kind}={self.value}"


def preset_blocks(name: str) -> int:
    """Blocks of a named network size (``resnet56`` -> 27), from the model presets."""
    key = name.strip().lower().replace("-", "")
    if key not in PRESETS:
        raise UserError(f"unknown network size {name!r}; choose one of {', '.join(PRESETS)}")
    return sum(PRESETS[key])


def make_target(
    blocks: int | None = None,
    left: int | None = None,
    size: str | None = None,
    params: int | None = None,
    macs: int | None = None,
) -> Target:
    """The one target given (blocks removed, blocks left, named size, params or MACs budget)."""
    given = {"blocks": blocks, "left": left, "size": size, "params": params, "macs": macs}
    chosen = {k: v for k, v in given.items() if v is not None}
    if len(chosen) != 1:
        raise UserError(
            "give exactly one pruning target: --target-blocks, --target-left, --target-size, "
            f"--target-params or --target-macs (got {', '.join(chosen) or 'none'})"
        )
    ((kind, value),) = chosen.items()
    if kind == "size":
        return Target("left", preset_blocks(value))
    if int(value) < 0:
        raise UserError(f"pruning target --target-{kind} must not be negative (got {value})")
    return Target({"blocks": "removed"}.get(kind, kind), int(value))
