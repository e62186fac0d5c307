"""Fine-tuning schedules fire at exactly the steps the spec defines.

The table is checked twice: against ``Schedule.planned`` (the plan printed before a run) and
against the pruning loop itself, driven step by step with fine-tuning replaced by a recorder,
so the decisions tested are the ones a run makes.
"""

from types import SimpleNamespace as NS

import pytest
import torch

from squeezr.dbx.errors import UserError
from squeezr.models import ResNet
from squeezr.prune import PruneConfig, Target, prune
from squeezr.prune import loop as loop_module
from squeezr.schedules import FINAL, SCHEDULED, THRESHOLD, parse
from squeezr.train import FitResult

TABLE = pytest.mark.parametrize(
    ("text", "total", "per_step", "expected"),
    [
        ("none", 27, 1, []),
        ("once", 27, 1, [27]),
        ("uniform:4", 27, 1, [6, 12, 18, 27]),  # the spec's example
        ("uniform:3", 27, 1, [9, 18, 27]),
        ("uniform:4", 45, 1, [11, 22, 33, 45]),
        ("uniform:1", 27, 1, [27]),
        ("uniform:5", 3, 1, [1, 2, 3]),  # more loops than steps: every step
        ("at:6,12,18,27", 27, 1, [6, 12, 18, 27]),
        ("at:18,6", 20, 1, [6, 18, 20]),  # unordered marks; the final step always fine-tunes
        ("every:2", 9, 1, [2, 4, 6, 8, 9]),
        ("every:3", 9, 1, [3, 6, 9]),
        ("threshold:0.01+at:27", 27, 1, [27]),
        ("low-high:3", 27, 1, [27]),
        ("low-high:2+uniform:2", 10, 1, [5, 10]),
        # several blocks per step: a mark fires at the first step reaching or passing it
        ("at:6,12,18,27", 27, 4, [8, 12, 20, 27]),
        ("every:2", 9, 4, [4, 8, 9]),
    ],
)


@TABLE
def test_planned_loops(text, total, per_step, expected):
    assert parse(text).planned(total, per_step) == expected


class _Split(NS):
    def __len__(self):
        return len(self.y)


def _tiny_splits():
    g = torch.Generator().manual_seed(0)

    def split(n):
        return _Split(
            x=torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8),
            y=torch.randint(0, 2, (n,), generator=g),
        )

    return NS(train=split(4), val=split(4), test=split(4), mean=[0.5] * 3, std=[0.25] * 3)


@TABLE
def test_the_loop_fine_tunes_where_the_table_says(monkeypatch, text, total, per_step, expected):
    """Drive the real loop (random saliency, fine-tuning recorded instead of run)."""
    high_loops = []

    def recording_fit(model, splits, cfg, exp=None, prefix="", **kwargs):
        if not prefix.endswith("/low"):
            high_loops.append(int(prefix.split("/")[2]))  # prune/step/<k>/finetune
        return FitResult(best_epoch=0, best_val_acc=0.0, test_acc=0.0, epochs_run=0, seconds=0)

    monkeypatch.setattr(loop_module, "fit", recording_fit)
    torch.manual_seed(0)
    model = ResNet((15, 15, 15), num_classes=2)  # 45 blocks: room for every row
    cfg = PruneConfig(
        target=Target("removed", total),
        method="random",
        schedule=text,
        blocks_per_step=per_step,
        epochs=1,
        device="cpu",
    )
    result = prune(model, _tiny_splits(), cfg, progress=False)
    by_step = {s["step"]: s for s in result.steps}
    marked = [s["blocks_removed"] for s in result.steps if s["finetune"] in (SCHEDULED, FINAL)]
    assert marked == expected
    assert high_loops == [k for k, s in by_step.items() if s["finetune"] is not None]


def test_threshold_fires_on_drop_since_reference():
    schedule = parse("threshold:0.05")
    assert schedule.high_loop(0, 1, 27, False, val_acc=0.90, ref_acc=0.94) is None
    assert schedule.high_loop(0, 1, 27, False, val_acc=0.88, ref_acc=0.94) == THRESHOLD
    assert schedule.high_loop(26, 27, 27, True, val_acc=0.94, ref_acc=0.94) == FINAL


def test_threshold_with_forced_step():
    schedule = parse("threshold:0.01+at:5")
    assert schedule.high_loop(4, 5, 27, False, val_acc=0.9, ref_acc=0.9) == SCHEDULED
    assert schedule.high_loop(5, 6, 27, False, val_acc=0.9, ref_acc=0.9) is None


def test_none_never_fine_tunes_even_at_the_end():
    schedule = parse("none")
    assert schedule.high_loop(26, 27, 27, True, val_acc=0.1, ref_acc=0.9) is None
    assert schedule.low_epochs == 0 and not schedule.mark_crossed(0, 27, 27)


def test_low_high_runs_low_loop_every_step():
    schedule = parse("low-high:3+threshold:0.02")
    assert schedule.low_epochs == 3
    assert schedule.threshold == 0.02
    assert schedule.high_loop(3, 4, 27, False, val_acc=0.9, ref_acc=0.91) is None


def test_budget_targets_work_without_total_except_uniform():
    assert parse("every:2").mark_crossed(1, 2, None)
    assert parse("at:3").mark_crossed(2, 3, None)
    with pytest.raises(UserError, match="block-count target"):
        parse("uniform:4").mark_crossed(0, 1, None)


def test_canonical_text():
    assert parse(" Threshold:0.01 + AT:27 ").text == "threshold:0.01+at:27"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("sometimes", "unknown schedule term"),
        ("uniform:0", "positive whole number"),
        ("uniform:x", "positive whole number"),
        ("at:3,,4", "positive whole number"),
        ("threshold:2", "fraction"),
        ("threshold:abc", "fraction"),
        ("none+at:3", "cannot be combined"),
        ("once:3", "takes no value"),
        ("every:2+every:3", "given twice"),
    ],
)
def test_bad_schedules(text, message):
    with pytest.raises(UserError, match=message):
        parse(text)
