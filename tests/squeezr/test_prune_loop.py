"""The greedy loop on a tiny ResNet: targets, schedules, accounting and exact resume."""

from types import SimpleNamespace as NS

import pytest
import torch

from squeezr.dbx.errors import UserError
from squeezr.models import ResNet, block_params, count_macs, count_params
from squeezr.prune import PruneConfig, load_state, make_target, plan_run, preset_blocks, prune
from squeezr.prune import loop as loop_module
from squeezr.prune.targets import Target
from squeezr.train import FitResult


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
    assert [s["finetune"] for s in result.steps] == [None, "scheduled", None, "final"]
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


def _same_run(resumed, reference):
    """Resumed and uninterrupted runs agree on every record, weight and total (not times)."""
    assert chosen(resumed) == chosen(reference)

    def timeless(record):
        out = {k: v for k, v in record.items() if "seconds" not in k and k != "loops"}
        out["loops"] = {
            name: {k: v for k, v in loop.items() if k != "seconds"}
            for name, loop in record.get("loops", {}).items()
        }
        return out

    for a, b in zip(resumed.steps, reference.steps, strict=True):
        assert timeless(a) == timeless(b)
    ref_state = reference.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, ref_state[name], rtol=0, atol=0)
    assert timeless(resumed.summary) == timeless(reference.summary)


def _dying_fit(monkeypatch, when):
    """Replace the loop's ``fit`` by one that raises KeyboardInterrupt once ``when(prefix,
    epoch)`` says so: epoch 0 = before the loop starts, e >= 1 = after epoch e is saved."""
    real_fit = loop_module.fit

    def fit(*args, prefix="", on_epoch_end=None, **kwargs):
        if when(prefix, 0):
            raise KeyboardInterrupt

        def dying(epoch, row):
            if on_epoch_end is not None:  # the loop's own (phasing logs its scales)
                on_epoch_end(epoch, row)
            if when(prefix, epoch):
                raise KeyboardInterrupt

        return real_fit(*args, prefix=prefix, on_epoch_end=dying, **kwargs)

    monkeypatch.setattr(loop_module, "fit", fit)


def _counting_saliency(monkeypatch):
    calls = []
    real = loop_module.saliency.compute

    def compute(name, model, data, ctx):
        calls.append(len(model.block_ids()))
        return real(name, model, data, ctx)

    monkeypatch.setattr(loop_module.saliency, "compute", compute)
    return calls


def test_resume_after_a_kill_gives_the_same_run(splits, tmp_path, monkeypatch):
    settings = cfg(target=Target("removed", 4), method="block-gradient", schedule="every:1")
    reference = prune(model(), splits, settings, state_path=tmp_path / "a.pt", progress=False)

    _dying_fit(monkeypatch, lambda prefix, epoch: prefix == "prune/step/3/finetune")
    with pytest.raises(KeyboardInterrupt):
        prune(model(), splits, settings, state_path=tmp_path / "b.pt", progress=False)
    state = load_state(tmp_path / "b.pt", settings)
    assert len(state["steps"]) == 2
    assert state["pending"]["record"]["step"] == 3  # chosen, removed, not yet fine-tuned
    monkeypatch.undo()
    resumed = prune(model(), splits, settings, state_path=tmp_path / "b.pt", progress=False)
    _same_run(resumed, reference)


def test_a_kill_mid_fine_tuning_keeps_the_chosen_block(splits, tmp_path, monkeypatch):
    """Killed after epoch 1 of step 3's loop: the resume must not score step 3 again (a GPU
    oracle could choose differently) and must continue the loop from its epoch-1 state."""
    settings = cfg(target=Target("removed", 4), schedule="every:1", epochs=2)
    reference = prune(model(), splits, settings, state_path=tmp_path / "a.pt", progress=False)

    _dying_fit(monkeypatch, lambda prefix, epoch: (prefix, epoch) == ("prune/step/3/finetune", 1))
    with pytest.raises(KeyboardInterrupt):
        prune(model(), splits, settings, state_path=tmp_path / "b.pt", progress=False)
    loop_file = tmp_path / "b.prune-step-3-finetune.pt"
    assert loop_file.is_file()
    monkeypatch.undo()
    calls = _counting_saliency(monkeypatch)
    resumed = prune(model(), splits, settings, state_path=tmp_path / "b.pt", progress=False)
    assert calls == [3]  # step 4 only (3 blocks left before it): step 3 was not re-scored
    assert not loop_file.exists()
    _same_run(resumed, reference)


def test_a_kill_in_the_high_loop_does_not_repeat_the_low_loop(splits, tmp_path, monkeypatch):
    settings = cfg(target=Target("removed", 3), schedule="low-high:1+every:2", method="random")
    reference = prune(model(), splits, settings, state_path=tmp_path / "a.pt", progress=False)

    _dying_fit(monkeypatch, lambda prefix, epoch: prefix == "prune/step/2/finetune")
    with pytest.raises(KeyboardInterrupt):
        prune(model(), splits, settings, state_path=tmp_path / "b.pt", progress=False)
    monkeypatch.undo()
    prefixes = []
    real_fit = loop_module.fit

    def recording_fit(*args, prefix="", **kwargs):
        prefixes.append(prefix)
        return real_fit(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(loop_module, "fit", recording_fit)
    resumed = prune(model(), splits, settings, state_path=tmp_path / "b.pt", progress=False)
    assert prefixes == [
        "prune/step/2/finetune",
        "prune/step/3/finetune/low",
        "prune/step/3/finetune",
    ]
    _same_run(resumed, reference)


def test_low_and_high_loops_of_a_step_get_their_own_seeds(splits, monkeypatch):
    seeds = {}
    real_fit = loop_module.fit

    def recording_fit(model, splits, train_cfg, *args, prefix="", **kwargs):
        seeds[prefix] = train_cfg.seed
        return real_fit(model, splits, train_cfg, *args, prefix=prefix, **kwargs)

    monkeypatch.setattr(loop_module, "fit", recording_fit)
    prune(model(), splits, cfg(schedule="low-high:1", method="random"), progress=False)
    assert set(seeds) == {
        "prune/step/1/finetune/low",
        "prune/step/2/finetune/low",
        "prune/step/3/finetune/low",
        "prune/step/3/finetune",
    }
    assert len(set(seeds.values())) == 4


def test_fine_tuning_uses_the_configured_training_settings(splits, monkeypatch):
    used = []

    def recording_fit(model, splits, train_cfg, **kwargs):
        used.append(train_cfg)
        return FitResult(best_epoch=0, best_val_acc=0.0, test_acc=0.0, epochs_run=0, seconds=0.0)

    monkeypatch.setattr(loop_module, "fit", recording_fit)
    settings = cfg(
        schedule="once", noise=0.5, freeze_classifier=True, lr=0.001, milestones=(), epochs=3
    )
    prune(model(), splits, settings, progress=False)
    (train_cfg,) = used
    assert train_cfg == settings.train_config(3, seed=train_cfg.seed)
    assert (train_cfg.noise_eta, train_cfg.freeze_classifier) == (0.5, True)
    assert (train_cfg.lr, train_cfg.milestones, train_cfg.epochs) == (0.001, (), 3)
    assert train_cfg.restore_best and train_cfg.initial_is_candidate


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
        ({"target": Target("removed", 0)}, "impossible"),
        ({"target": Target("left", 6)}, "impossible"),
        ({"target": Target("left", 7)}, "impossible"),
        ({"target": Target("params", 10)}, "every block removed"),
        ({"target": Target("params", 10**9)}, "already has"),
        ({"target": Target("macs", 10**12)}, "already has"),
        ({"target": Target("params", 170_000), "schedule": "uniform:2"}, "block-count target"),
        ({"method": "magic"}, "unknown saliency method"),
        ({"schedule": "sometimes"}, "unknown schedule term"),
        ({"selection": "test"}, "--selection"),
        ({"blocks_per_step": 0}, "--blocks-per-step"),
        ({"eval_batch_size": 0}, "eval_batch_size"),
        ({"lr": -1.0}, "fine-tuning setting: lr"),
        ({"lr": float("nan")}, "fine-tuning setting: lr"),
        ({"batch_size": 0}, "fine-tuning setting: batch_size"),
        ({"milestones": (0,)}, "fine-tuning setting: .*milestone"),
        ({"noise": float("nan")}, "fine-tuning setting: noise"),
        ({"noise": -0.1}, "fine-tuning setting: noise"),
        ({"epochs": 0}, "--epochs"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_settings_fail_before_any_compute(splits, monkeypatch, kwargs, message):
    def no_compute(*args, **kwargs):
        raise AssertionError("compute was spent before the settings were checked")

    monkeypatch.setattr(loop_module, "fit", no_compute)
    monkeypatch.setattr(loop_module, "evaluate", no_compute)
    monkeypatch.setattr(loop_module.saliency, "compute", no_compute)
    m = model()
    assert count_params(m) > 170_000 > count_params(m) - sum(block_params(m).values())
    with pytest.raises(UserError, match=message):
        prune(m, splits, cfg(**kwargs), progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_a_gpu_is_a_user_error(splits):
    with pytest.raises(UserError, match="no CUDA GPU"):
        prune(model(), splits, cfg(device="cuda"), progress=False)


def test_plan_describes_the_run(splits):
    plan = plan_run(model(), splits, cfg(schedule="uniform:2+threshold:0.05"))
    assert plan.total == 3 and plan.loops_after() == [1, 3]
    text = plan.describe()
    assert "remove 3 blocks" in text and "after 1, 3 blocks removed" in text
    assert "more than 0.05" in text
    budget = plan_run(model(), splits, cfg(target=Target("params", 170_000), schedule="every:2"))
    assert budget.total is None and budget.loops_after() is None
    assert "until params <= 170,000" in budget.describe()


def test_schedule_none_does_not_check_fine_tuning_settings(splits):
    settings = cfg(schedule="none", epochs=0, lr=-1.0, method="weights-mean")
    assert len(prune(model(), splits, settings, progress=False).steps) == 3


def test_a_huge_seed_works_for_every_loop(splits):
    """Loop seeds are derived from --seed and the step; they stay in torch's seed range."""
    settings = cfg(
        seed=2**62 - 1, schedule="low-high:1", method="random", target=Target("removed", 2)
    )
    result = prune(model(), splits, settings, progress=False)
    assert [sorted(s["loops"]) for s in result.steps] == [["low"], ["high", "low"]]


@pytest.mark.parametrize(
    "settings", [{"seed": 2**62}, {"seed": -1}, {"seed": 2**64, "schedule": "none"}]
)
def test_a_seed_out_of_range_fails_before_any_compute(splits, monkeypatch, settings):
    monkeypatch.setattr(loop_module.saliency, "compute", None)  # would fail if reached
    with pytest.raises(UserError, match="seed"):
        prune(model(), splits, cfg(**settings), progress=False)


def test_accuracy_after_fine_tuning_is_the_loops_own_final_evaluation(splits, monkeypatch):
    """fit ends with an fp32 evaluation of the weights it returns: the loop records that
    instead of evaluating the same weights again."""
    evaluations, fitted = [], []
    real_evaluate, real_fit = loop_module.evaluate, loop_module.fit

    def counting_evaluate(*args, **kwargs):
        evaluations.append(1)
        return real_evaluate(*args, **kwargs)

    def recording_fit(*args, **kwargs):
        fitted.append(real_fit(*args, **kwargs))
        return fitted[-1]

    monkeypatch.setattr(loop_module, "evaluate", counting_evaluate)
    monkeypatch.setattr(loop_module, "fit", recording_fit)
    settings = cfg(schedule="low-high:1+every:2", method="random", target=Target("removed", 3))
    result = prune(model(), splits, settings, progress=False)
    assert len(evaluations) == 2 + 2 * 3  # val and test: of the start, after each removal
    assert [sorted(s["loops"]) for s in result.steps] == [["low"], ["high", "low"], ["high", "low"]]
    for step, last_loop in zip(result.steps, [fitted[0], fitted[2], fitted[4]], strict=True):
        assert step["val_acc_after"] == last_loop.val_acc
        assert step["test_acc_after"] == last_loop.test_acc
