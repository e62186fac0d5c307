"""Fine-tuning schedules fire at exactly the steps the spec defines."""

import pytest

from squeezr.errors import UserError
from squeezr.schedules import FINAL, MARK, THRESHOLD, parse


@pytest.mark.parametrize(
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
def test_planned_loops(text, total, per_step, expected):
    assert parse(text).planned(total, per_step) == expected


def test_threshold_fires_on_drop_since_reference():
    schedule = parse("threshold:0.05")
    assert schedule.high_loop(0, 1, 27, False, val_acc=0.90, ref_acc=0.94) is None
    assert schedule.high_loop(0, 1, 27, False, val_acc=0.88, ref_acc=0.94) == THRESHOLD
    assert schedule.high_loop(26, 27, 27, True, val_acc=0.94, ref_acc=0.94) == FINAL


def test_threshold_with_forced_step():
    schedule = parse("threshold:0.01+at:5")
    assert schedule.high_loop(4, 5, 27, False, val_acc=0.9, ref_acc=0.9) == MARK
    assert schedule.high_loop(5, 6, 27, False, val_acc=0.9, ref_acc=0.9) is None


def test_none_never_fine_tunes_even_at_the_end():
    schedule = parse("none")
    assert schedule.high_loop(26, 27, 27, True, val_acc=0.1, ref_acc=0.9) is None
    assert schedule.low_loop() == 0


def test_low_high_runs_low_loop_every_step():
    schedule = parse("low-high:3+threshold:0.02")
    assert schedule.low_loop() == 3
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
