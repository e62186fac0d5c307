"""The per-step table that ``squeezr prune`` and ``squeezr demo`` print, and its legend.

Kept apart from :mod:`squeezr.analysis` (scipy, pandas) so that the commands that print it,
and every other ``squeezr`` command, start without loading those.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STEP_LEGEND = (
    "val_before: validation accuracy right after removing the block(s); val_after/test_after: "
    "after fine-tuning\n(best epoch restored); finetune: why a loop ran (scheduled, threshold, "
    "final) and its epochs kept/run\n('+' joins a low and a high loop); cost: epoch-parameters "
    "so far (sum over loops of epochs kept x parameters)."
)


def step_rows(
    initial: dict[str, Any],
    steps: Sequence[dict[str, Any]],
    digits: int | None = 4,
    channel_steps: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The per-step table printed by ``squeezr prune`` and ``squeezr demo`` (step 0 = start);
    :data:`STEP_LEGEND` explains its columns. Accuracies are rounded to ``digits`` (the
    share of parameters to one digit less); ``None`` keeps the raw values (``--json``).
    The steps of a ``--then channels`` stage follow as ``c1``, ``c2``, ... with the share
    of channels removed in the ``blocks`` column."""

    def _acc(value: float | None) -> float | None:
        return value if value is None or digits is None else round(value, digits)

    def _pct(value: float) -> float:
        return value if digits is None else round(value, max(digits - 3, 0))

    rows = [
        {
            "step": 0,
            "removed": 0,
            "blocks": "",
            "val_before": _acc(initial.get("val_acc")),
            "val_after": _acc(initial.get("val_acc")),
            "test_after": _acc(initial.get("test_acc")),
            "params_removed_%": 0.0,
            "finetune": "",
            "cost": 0,
        }
    ]
    removed = steps[-1]["blocks_removed"] if steps else 0
    for s in [*steps, *channel_steps]:
        loops = s.get("loops", {})
        epochs = "+".join(f"{loops[k]['best_epoch']}/{loops[k]['epochs']}" for k in loops)
        why = s["finetune"] or ("low" if "low" in loops else "phase" if loops else "")
        channels = "chosen" not in s
        rows.append(
            {
                "step": f"c{s['step']}" if channels else s["step"],
                "removed": removed if channels else s["blocks_removed"],
                "blocks": (
                    f"-{_pct(s['channels_removed_pct'])}% channels"
                    if channels
                    else ",".join(map(str, s["chosen"]))
                ),
                "val_before": _acc(s["val_acc_before"]),
                "val_after": _acc(s["val_acc_after"]),
                "test_after": _acc(s["test_acc_after"]),
                "params_removed_%": _pct(s["params_removed_pct"]),
                "finetune": f"{why} {epochs}".strip(),
                "cost": s["cost"],
            }
        )
    return rows
