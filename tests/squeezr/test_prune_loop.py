"""The greedy loop on a tiny ResNet: targets, schedules, accounting and exact resume."""

from types import SimpleNamespace as NS

import pytest
import torch

from squeezr.errors import UserError
from squeezr.models import ResNet, block_params, count_macs, count_params
from squeezr.prune import PruneConfig, load_state, make_target, preset_blocks, prune
from squeezr.prune import loop as loop_module
from squeezr.prune.targets import Target


class Split(NS):
    def __len__(self):
        return len(self.y)


def _split(n, g):
    y = torch.randint(0, 4, (n,), generator=g)
    noise = torch.rand(n, 3, 16, 16, generator=g) * 100
    return Split(x=(noise + y[:, None, None, None] * 45).to(torch.uint8), y=y)


@pytest.fixture(scope="module")
def splits():
    g = torch.Generator().manual_seed(0)
    return NS(
        train=_split(96, g),
        val=_split(48, g),
        prune=_split(48, g),
        test=_split(48, g),
        mean=[0.5] * 3,
        std=[0.25] * 3,
        num_classes=4,
    )


def model(config=(2, 2, 2), seed=0):
    torch.manual_seed(seed)
    return ResNet(config, num_classes=4)


def cfg(**kw):
    base = {
        "target": Target("removed", 3),
        "method": "oracle",
        "schedule": "every:1",
        "epochs": 1,
        "milestones": (),
        "lr": 0.05,
        "batch_size": 32,
        "eval_batch_size": 64,
        "device": "cpu",
    }
    return PruneConfig(**{**base, **kw})


def chosen(result):
    return [s["chosen"] for s in result.steps]


def test_removes_lowest_blocks_and_accounts(splits):
    m = model()
    sizes = block_params(m)
    start_params, start_macs = count_params(m), count_macs(m)
    result = prune(
        m, splits, cfg(schedule="uniform:2", target=Target("removed", 4)), progress=False
    )
    order = [b for step in chosen(result) for b in step]
    assert order == result.model.removed == result.summary["order"]
    assert len(order) == 4 == result.summary["blocks_removed"]
    for step in result.steps:  # the chosen block had the lowest score of its step
        assert min(step["saliency"], key=lambda b: (step["saliency"][b], int(b))) == str(
            step["chosen"][0]
        )
    assert [s["finetune"] for s in result.steps] == [None, "mark", None, "final"]
    params = start_params
    cost = 0
    for step in result.steps:
        params -= sum(sizes[b] for b in step["chosen"])
        assert step["params"] == params
        loop_cost = sum(loop["best_epoch"] * params for loop in step["loops"].values())
        assert step["step_cost"] == loop_cost
        cost += loop_cost
        assert step["cost"] == cost
    assert result.summary["params"] == count_params(result.model) == params
    assert result.summary["macs"] == count_macs(result.model) < start_macs
    assert result.summary["params_removed_pct"] == pytest.approx(100 * (1 - params / start_params))
    assert result.summary["epochs_run"] == 2  # two 1-epoch loops
    assert result.initial["val_acc"] == result.summary["initial_val_acc"]


def test_no_fine_tuning_keeps_accuracy_between_before_and_after(splits):
    result = prune(model(), splits, cfg(schedule="none", method="weights-mean"), progress=False)
    for step in result.steps:
        assert step["loops"] == {}
        assert step["val_acc_after"] == step["val_acc_before"]
        assert step["cost"] == 0


def test_low_high_runs_a_low_loop_every_step(splits):
    result = prune(model(), splits, cfg(schedule="low-high:1", method="random"), progress=False)
    assert [sorted(s["loops"]) for s in result.steps] == [["low"], ["low"], ["high", "low"]]


def test_threshold_decisions_follow_accuracy(splits):
    result = prune(model(), splits, cfg(schedule="threshold:0.02", method="random"), progress=False)
    ref = result.initial["val_acc"]
    for step in result.steps:
        if step["finetune"] != "final":
            expected = "threshold" if ref - step["val_acc_before"] > 0.02 else None
            assert step["finetune"] == expected
        if step["finetune"]:
            ref = step["val_acc_after"]


def test_blocks_per_step_and_recompute_every(splits):
    result = prune(
        model(),
        splits,
        cfg(blocks_per_step=2, target=Target("removed", 5), recompute_every=2, schedule="once"),
        progress=False,
    )
    assert [len(c) for c in chosen(result)] == [2, 2, 1]
    assert [s["saliency_fresh"] for s in result.steps] == [True, False, True]
    first, second = result.steps[0]["saliency"], result.steps[1]["saliency"]
    assert second == {b: s for b, s in first.items() if int(b) not in result.steps[0]["chosen"]}


@pytest.mark.parametrize(
    ("target", "left"),
    [(make_target(left=7), 7), (make_target(size="resnet20"), 9), (make_target(blocks=2), 8)],
)
def test_block_count_targets(splits, target, left):
    m = model((3, 3, 4))  # 10 blocks
    result = prune(m, splits, cfg(target=target, schedule="none", method="random"), progress=False)
    assert len(result.model.block_ids()) == left


def test_budget_targets_stop_once_met(splits):
    m = model()
    budget = count_params(m) - sum(sorted(block_params(m).values())[-1:]) - 1
    result = prune(
        m,
        splits,
        cfg(target=make_target(params=budget), schedule="none", method="random", blocks_per_step=3),
        progress=False,
    )
    assert count_params(result.model) <= budget
    before_last = count_params(result.model) + sum(
        block_params(model())[b] for b in result.steps[-1]["chosen"][-1:]
    )
    assert before_last > budget  # it stopped at the first block that met the budget
    macs = count_macs(model()) // 2
    result = prune(
        model(), splits, cfg(target=make_target(macs=macs), schedule="none"), progress=False
    )
    assert count_macs(result.model) <= macs


def test_resume_after_a_kill_gives_the_same_run(splits, tmp_path, monkeypatch):
    settings = cfg(target=Target("removed", 4), method="block-gradient", schedule="every:1")
    reference = prune(model(), splits, settings, state_path=tmp_path / "a.pt", progress=False)

    calls = {"n": 0}
    real_fit = loop_module.fit

    def dying_fit(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # killed while fine-tuning step 3
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(loop_module, "fit", dying_fit)
    with pytest.raises(KeyboardInterrupt):
        prune(model(), splits, settings, state_path=tmp_path / "b.pt", progress=False)
    assert len(load_state(tmp_path / "b.pt")["steps"]) == 2
    resumed = prune(model(), splits, settings, state_path=tmp_path / "b.pt", progress=False)

    assert chosen(resumed) == chosen(reference)
    for a, b in zip(resumed.steps, reference.steps, strict=True):
        assert {k: v for k, v in a.items() if "seconds" not in k and k != "loops"} == {
            k: v for k, v in b.items() if "seconds" not in k and k != "loops"
        }
    ref_state = reference.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, ref_state[name], rtol=0, atol=0)
    drop = ("seconds",)
    assert {k: v for k, v in resumed.summary.items() if k not in drop} == {
        k: v for k, v in reference.summary.items() if k not in drop
    }


def test_resume_with_other_settings_is_refused(splits, tmp_path):
    prune(
        model(),
        splits,
        cfg(schedule="none", method="random"),
        state_path=tmp_path / "s.pt",
        progress=False,
    )
    with pytest.raises(UserError, match="different pruning settings"):
        prune(model(), splits, cfg(schedule="none"), state_path=tmp_path / "s.pt", progress=False)


def test_pruning_set_selection(splits):
    result = prune(model(), splits, cfg(selection="prune", schedule="none"), progress=False)
    assert len(result.steps) == 3
    no_prune_set = NS(**{**vars(splits), "prune": None})
    with pytest.raises(UserError, match="pruning set"):
        prune(model(), no_prune_set, cfg(selection="prune"), progress=False)


def test_preset_sizes():
    assert preset_blocks("resnet56") == 27
    assert preset_blocks("ResNet-110") == 54
    with pytest.raises(UserError, match="unknown network size"):
        preset_blocks("resnet57")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one pruning target"),
        ({"blocks": 3, "left": 2}, "exactly one pruning target"),
        ({"blocks": -1}, "must not be negative"),
    ],
)
def test_bad_targets(kwargs, message):
    with pytest.raises(UserError, match=message):
        make_target(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": Target("removed", 7)}, "impossible"),
        ({"target": Target("left", 6)}, "impossible"),
        ({"target": Target("params", 10)}, "every block removed"),
        ({"target": Target("params", 10**9), "schedule": "uniform:2"}, "block-count target"),
        ({"method": "magic"}, "unknown saliency method"),
        ({"schedule": "sometimes"}, "unknown schedule term"),
        ({"selection": "test"}, "--selection"),
        ({"blocks_per_step": 0}, "--blocks-per-step"),
    ],
)
def test_bad_settings(splits, kwargs, message):
    with pytest.raises(UserError, match=message):
        prune(model(), splits, cfg(**kwargs), progress=False)
