"""Pruning targets: when the greedy loop stops (blocks removed or left, a named size, a budget)."""

from __future__ import annotations

from dataclasses import dataclass

from squeezr.blocknet import BlockNet, block_macs, block_params, count_macs, count_params
from squeezr.dbx.errors import UserError
from squeezr.models import PRESETS, preset_key

BUDGETS = ("params", "macs")
KINDS = ("removed", "left", *BUDGETS)


@dataclass(frozen=True)
class Target:
    """When pruning stops: ``removed`` / ``left`` blocks, or a ``params`` / ``macs`` budget."""

    kind: str
    value: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"unknown pruning target kind {self.kind!r}; use one of {KINDS}")

    @property
    def is_budget(self) -> bool:
        return self.kind in BUDGETS

    def check(self, model: BlockNet) -> int | None:
        """UserError unless this target can be reached from ``model`` by removing at least one
        block; returns how many blocks the run removes in all (None for a budget: that
        depends on the blocks chosen)."""
        if self.is_budget:
            self._check_budget(model)
            return None
        have = len(model.block_ids())
        count = self.value if self.kind == "removed" else have - self.value
        if not 0 < count <= have:
            raise UserError(
                f"target {self.describe()} is impossible for a model with {have} blocks; "
                f"remove between 1 and {have} blocks"
            )
        return count

    def _check_budget(self, model: BlockNet) -> None:
        size = self.measure(model)
        per_block = block_params(model) if self.kind == "params" else block_macs(model)
        floor = size - sum(per_block.values())
        if self.value < floor:
            raise UserError(
                f"--target-{self.kind} {self.value} is below {floor}, the size of this model "
                "with every block removed; give a larger budget"
            )
        if size <= self.value:
            raise UserError(
                f"the model already has {size} {self.kind}, within --target-{self.kind} "
                f"{self.value}: nothing to prune; give a budget below {size}"
            )

    def measure(self, model: BlockNet) -> int:
        """The model's size in this budget's unit (parameters or MACs)."""
        return count_params(model) if self.kind == "params" else count_macs(model)

    def budget_met(self, model: BlockNet) -> bool:
        """Whether ``model`` fits this budget (or has no blocks left to remove)."""
        return self.measure(model) <= self.value or not model.block_ids()

    def reached(self, model: BlockNet, removed: int, total: int | None) -> bool:
        """Whether the run is done: ``total`` blocks removed, or the budget met."""
        if total is not None:
            return removed >= total
        return self.budget_met(model)

    def describe(self) -> str:
        return f"{self.kind}={self.value}"


def preset_blocks(name: str) -> int:
    """Blocks of a named network size (``resnet56`` -> 27), from the model presets."""
    return sum(PRESETS[preset_key(name, what="network size")])


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
