"""Rankings and Kendall's tau from logged pruning steps."""

import pytest
import torch
from scipy.stats import kendalltau

from squeezr.analysis import kendall_tau, ranking, ranking_table, step_records, tau_matrix
from squeezr.baselines import equal_config, scratch_spec
from squeezr.cli.steps import step_rows
from squeezr.dbx.errors import UserError
from squeezr.models import ResNet, count_params


class FakeExp:
    """Just enough of a dbx experiment: merged events by name."""

    def __init__(self, name, steps, ident="0123456789"):
        self.name, self.id = name, ident
        self._events = {f"prune/step/{k}": s for k, s in enumerate(steps, 1)}
        self._events["prune/initial"] = {"val_acc": 0.9}

    def merged_events(self):
        return dict(self._events)


def steps(*rounds):
    """Records from (chosen, {block: score}) rounds, as the loop logs them."""
    return [
        {"step": k, "chosen": chosen, "saliency": {str(b): s for b, s in scores.items()}}
        for k, (chosen, scores) in enumerate(rounds, 1)
    ]


RUN = steps(
    ([2], {0: 0.5, 1: 0.3, 2: 0.1, 3: 0.4, 4: 0.9}),
    ([1], {0: 0.6, 1: 0.2, 3: 0.6, 4: 0.8}),
)


def test_ranking_removed_first_then_current_saliency():
    assert ranking(RUN, step=1) == {2: 0, 1: 1, 3: 2, 0: 3, 4: 4}
    # step 2: removed 2 then 1; blocks 0 and 3 tie (0.6) and share rank 2.5
    assert ranking(RUN) == {2: 0, 1: 1, 0: 2.5, 3: 2.5, 4: 4}


def test_kendall_tau_handles_ties_like_scipy_tau_b():
    a = ranking(RUN)
    b = {2: 0, 1: 1, 0: 2, 3: 3, 4: 4}
    blocks = sorted(a)
    expected = kendalltau([a[x] for x in blocks], [b[x] for x in blocks]).statistic
    assert kendall_tau(a, b) == pytest.approx(expected)
    assert kendall_tau(b, b) == pytest.approx(1)
    assert kendall_tau(b, {k: -v for k, v in b.items()}) == pytest.approx(-1)
    assert 0 < expected < 1  # ties lower tau-b below 1


def test_tau_matrix_and_step_records():
    other = steps(([4], {0: 0.5, 1: 0.3, 2: 0.1, 3: 0.4, 4: 0.0}))
    exps = [FakeExp("a", RUN, "aaaaaaaaaa"), FakeExp("b", other, "bbbbbbbbbb")]
    assert step_records(exps[0]) == RUN
    matrix = tau_matrix(exps, step=1)
    assert list(matrix.index) == ["a (aaaaaaaa)", "b (bbbbbbbb)"]
    assert matrix.iloc[0, 0] == pytest.approx(1) == matrix.iloc[1, 1]
    assert (
        matrix.iloc[0, 1]
        == matrix.iloc[1, 0]
        == pytest.approx(kendall_tau(ranking(RUN, 1), ranking(other, 1)))
    )


def test_ranking_table_lists_each_runs_ranking():
    other = steps(([4], {0: 0.5, 1: 0.3, 2: 0.1, 3: 0.4, 4: 0.0}))
    table = ranking_table([FakeExp("a", RUN, "aaaaaaaaaa"), FakeExp("b", other, "bbbbbbbbbb")])
    a = table[table["run"] == "a (aaaaaaaa)"]
    assert list(a["block"]) == [2, 1, 0, 3, 4]  # removed 2, then 1's step; 0 and 3 tie
    assert list(a["rank"]) == [0, 1, 2.5, 2.5, 4]
    assert list(a["removed_at"]) == [1, None, None, None, None]  # 1 goes at step 2 (= k)
    assert list(a["saliency"]) == [None, 0.2, 0.6, 0.6, 0.8]
    b = table[table["run"] == "b (bbbbbbbb)"]
    assert list(b["block"]) == [4, 2, 1, 3, 0]
    step1 = ranking_table([FakeExp("a", RUN, "aaaaaaaaaa")], step=1)
    assert list(step1["block"]) == [2, 1, 3, 0, 4] and set(step1["removed_at"]) == {None}


def test_scratch_spec_is_the_pruned_shape_or_the_equal_one():
    torch.manual_seed(5)
    pruned = ResNet((2, 2, 2), num_classes=4)
    for i in (2, 4, 5):  # two downsampling blocks: their shortcuts stay
        pruned.remove_block(i)
    spec = scratch_spec(pruned.spec(), equal=False)
    assert spec == pruned.spec()
    scratch = ResNet.from_spec(spec, seed=0)  # as a training run of that spec builds it
    assert count_params(scratch) == count_params(pruned) != count_params(ResNet((2, 1, 0), 4))
    equal = scratch_spec(pruned.spec(), equal=True)
    assert equal["remaining_config"] == [1, 1, 1] and equal["removed"] == []
    assert equal["num_classes"] == 4


def test_bad_input():
    with pytest.raises(UserError, match="--step must be between 1 and 2"):
        ranking(RUN, step=3)
    with pytest.raises(UserError, match="different blocks"):
        kendall_tau({0: 0, 1: 1}, {0: 0, 2: 1})
    with pytest.raises(UserError, match="no pruning steps"):
        step_records(FakeExp("t", []))
    with pytest.raises(UserError, match="at least two"):
        tau_matrix([FakeExp("a", RUN)])


def test_equal_config():
    assert equal_config(27) == (9, 9, 9)
    assert equal_config(28) == (9, 9, 9)
    assert equal_config(1) == (1, 1, 1)


def test_step_rows():
    record = {
        "step": 1,
        "chosen": [2],
        "blocks_removed": 1,
        "val_acc_before": 0.8,
        "val_acc_after": 0.85,
        "test_acc_after": 0.84,
        "params_removed_pct": 3.21,
        "finetune": "final",
        "loops": {"high": {"best_epoch": 3, "epochs": 5}},
        "cost": 1000,
    }
    rows = step_rows({"val_acc": 0.9, "test_acc": 0.89}, [record])
    assert rows[0]["val_after"] == 0.9 and rows[0]["removed"] == 0
    assert rows[1]["blocks"] == "2" and rows[1]["finetune"] == "final 3/5"
