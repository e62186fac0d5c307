"""The chapter-4 strategies (spec §7) on a tiny ResNet: phasing, equalisation, replacement,
distillation, local training and the total budget — what each must guarantee, the
combinations the plan refuses, and exact resume for each."""

import copy

import pytest
import torch
import torch.nn.functional as F
from test_prune_loop import NS, _dying_fit, _same_run, _split, cfg, model

from squeezr.dbx.errors import UserError
from squeezr.models import BasicBlock, ResNet, block_params, count_params
from squeezr.prune import PruneConfig, load_state, plan_run, prune
from squeezr.prune import loop as loop_module
from squeezr.prune.distill import Teacher, distill_loss
from squeezr.prune.freezing import neighbours
from squeezr.prune.phasing import PhaseScales, phase_out
from squeezr.prune.replace import window_oracle, windows
from squeezr.prune.targets import Target
from squeezr.saliency import SaliencyContext
from squeezr.train import TrainConfig, fit


@pytest.fixture(scope="module")
def splits():
    """The tiny 16x16, 4-class splits of test_prune_loop."""
    g = torch.Generator().manual_seed(0)
    parts = {name: _split(n, g) for name, n in (("train", 96), ("val", 48), ("prune", 48))}
    return NS(**parts, test=_split(48, g), mean=[0.5] * 3, std=[0.25] * 3, num_classes=4)


def _inputs(n=8, seed=1):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _branch_state(block: BasicBlock) -> dict[str, torch.Tensor]:
    """Parameters and BN statistics of a block's residual branch (what removal deletes)."""
    return {
        f"{n}.{k}": v.detach().clone()
        for n, m in (("conv1", block.conv1), ("bn1", block.bn1), ("conv2", block.conv2))
        for k, v in m.state_dict().items()
        if k != "num_batches_tracked"
    } | {
        f"bn2.{k}": v.detach().clone() for k, v in block.bn2.state_dict().items() if "num" not in k
    }


# -- phasing ------------------------------------------------------------------------------


@pytest.mark.parametrize("block", [1, 2])  # a plain block and a downsampling one
def test_phasing_scales_freezes_and_ends_as_the_removal(splits, block):
    net = model()
    aside = {block: net.block(block)}
    weights = _branch_state(aside[block])
    net.remove_block(block)
    without = copy.deepcopy(net).eval()
    x = _inputs()
    seen = {}

    def train(scales):
        settings = TrainConfig(epochs=4, lr=0.05, batch_size=32, device="cpu", restore_best=False)
        result = fit(
            net, splits, settings, progress=False, scales=scales, on_epoch_start=scales.start_epoch
        )
        net.eval()
        seen["at_zero"] = net(x)  # scales as evaluated after the last epoch: γ_S = 0
        seen["without"] = without(x)
        return result

    phase_out(net, aside, [block], train, epochs=4)
    assert block not in net.block_ids() and block in net.removed
    for name, value in _branch_state(aside[block]).items():
        assert torch.equal(value, weights[name]), name  # frozen: not one bit changed
    # γ = 0: the network computes exactly what it computes without the block (its
    # shortcut, shared with the removed network's shortcut unit, trained alike).
    without.load_state_dict(net.state_dict())
    torch.testing.assert_close(seen["at_zero"], without.eval()(x), rtol=0, atol=0)


def test_linear_scales_are_exactly_one_minus_e_over_s():
    net = model()
    blocks = [net.block(0), net.block(3)]
    scales = PhaseScales(blocks, 5)
    for epoch in range(1, 6):
        scales.start_epoch(epoch)
        rows = scales.draw(3)
        gamma = torch.tensor(1 - epoch / 5)  # exactly, in the model's dtype
        assert torch.equal(rows, gamma.expand(3, 2))
        scales.use(rows[0])
        assert torch.equal(blocks[1].residual_scale, gamma)
        scales.reset()  # evaluation after the epoch: the same scale
        assert torch.equal(blocks[0].residual_scale, gamma)
    assert float(blocks[0].residual_scale) == 0.0


@pytest.mark.parametrize("sample", ["epoch", "batch"])
def test_bernoulli_masks(sample):
    net = model()
    blocks = [net.block(i) for i in net.block_ids()]
    scales = PhaseScales(blocks, 4, mode="bernoulli", sample=sample, seed=3)
    again = PhaseScales(blocks, 4, mode="bernoulli", sample=sample, seed=3)
    for epoch in range(1, 5):
        scales.start_epoch(epoch)
        again.start_epoch(epoch)
        rows = scales.draw(200)
        assert torch.equal(rows, again.draw(200))  # seeded by (seed, epoch): resumable
        assert set(rows.unique().tolist()) <= {0.0, 1.0}
        if sample == "epoch":
            assert torch.equal(rows, rows[:1].expand_as(rows))
        keep = 1 - epoch / 4
        if epoch == 4:
            assert not rows.any()
        elif sample == "batch":  # independent per block and batch, kept with 1 - e/S
            assert abs(rows.mean().item() - keep) < 0.1
            assert not torch.equal(rows[:, 0], rows[:, 1])


def test_phased_pruning_in_the_loop_records_its_scales(splits, tmp_path):
    from squeezr import dbx

    settings = cfg(phase=2, epochs=3, schedule="every:2", target=Target("removed", 2))
    with dbx.create("p", kind="prune", repo=tmp_path / "repo") as exp:
        result = prune(model(), splits, settings, exp=exp, progress=False)
    events = exp.merged_events()
    step1, step2 = result.steps
    assert step1["loops"]["phase"]["phased"] == step1["chosen"]
    assert "high" not in step1["loops"] and step2["loops"]["high"]["epochs"] == 1  # 3 - 2
    assert [events[f"prune/step/1/phase/scale/{e}"]["gamma"] for e in (1, 2)] == [0.5, 0.0]
    assert step1["loops"]["phase"]["cost"] == 2 * count_params(model())  # block back in
    assert result.summary["epochs_run"] == 2 + 2 + 1


def test_lazy_phasing_waits_for_the_scheduled_loop(splits):
    settings = cfg(phase=1, lazy=True, schedule="every:2", target=Target("removed", 4))
    result = prune(model(), splits, settings, progress=False)
    s1, s2, s3, s4 = result.steps
    assert s1["loops"] == {} and s3["loops"] == {}
    assert s2["loops"]["phase"]["phased"] == s1["chosen"] + s2["chosen"]
    assert s4["loops"]["phase"]["phased"] == s3["chosen"] + s4["chosen"]
    assert s2["loops"]["high"]["epochs"] == 0  # --epochs 1, all spent on the phase
    assert sorted(result.model.removed) == sorted(result.summary["order"])
    assert len(result.model.block_ids()) == 2


# -- equalisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "method", "counts"),
    [
        ((2, 2, 2), "random", [(1, 2, 2), (1, 1, 2), (1, 1, 1), (0, 1, 1), (0, 0, 1), (0, 0, 0)]),
        (
            (3, 3, 3),
            "weights-mean",
            [(2, 3, 3), (2, 2, 3), (2, 2, 2), (1, 2, 2), (1, 1, 2), (1, 1, 1)],
        ),
        ((3, 3, 3), "oracle", [(2, 3, 3), (2, 2, 3), (2, 2, 2), (1, 2, 2), (1, 1, 2), (1, 1, 1)]),
        (
            (2, 4, 3),
            "activation-change",
            [(2, 3, 3), (2, 2, 3), (2, 2, 2), (1, 2, 2), (1, 1, 2), (1, 1, 1)],
        ),
    ],
)
def test_equalisation_keeps_the_groups_level(splits, start, method, counts):
    settings = cfg(equalise=True, method=method, schedule="none", target=Target("removed", 6))
    result = prune(model(start), splits, settings, progress=False)
    assert [tuple(s["config"]) for s in result.steps] == counts
    for s in result.steps:
        assert all(ResNet(start).group_of(b) == s["group"] for b in s["chosen"])
    equal_start = len(set(start)) == 1
    if equal_start:
        for s in result.steps[2::3]:
            assert len(set(s["config"])) == 1


# -- replacement --------------------------------------------------------------------------


@pytest.mark.parametrize("config", [(2, 2, 2), (3, 1, 4), (4, 0, 3), (1, 1, 1)])
@pytest.mark.parametrize("k", [2, 3])
def test_windows_never_cross_a_group_border(config, k):
    net = ResNet(config, num_classes=4)
    net.remove_block(min(net.block_ids()))
    found = windows(net, k)
    for first, window in found.items():
        assert window[0] == first and len(window) == k
        assert len({net.group_of(b) for b in window}) == 1
        ids = net.block_ids()
        assert ids[ids.index(first) : ids.index(first) + k] == window
    for group in range(3):
        have = sum(1 for b in net.block_ids() if net.group_of(b) == group)
        assert sum(1 for w in found.values() if net.group_of(w[0]) == group) == max(0, have - k + 1)


@pytest.mark.parametrize("window", [[0, 1], [2, 3], [4, 5]])
def test_zero_replacement_is_the_exact_bypass_and_counts_exactly(window):
    net = model((2, 2, 3)).eval()
    bypassed = copy.deepcopy(net)
    for b in window:
        bypassed.remove_block(b)
    before, sizes = count_params(net), block_params(net)
    fresh = net.replace_blocks(window, zero=True)
    x = _inputs()
    torch.testing.assert_close(net(x), bypassed(x), rtol=0, atol=0)
    residual = sum(p.numel() for m in fresh.removable_modules() for p in m.parameters())
    assert count_params(net) == before - sum(sizes[b] for b in window) + residual
    rebuilt = ResNet.from_spec(net.spec())  # the spec replays the replacement
    rebuilt.load_state_dict(net.state_dict())
    torch.testing.assert_close(rebuilt.eval()(x), net(x), rtol=0, atol=0)


def test_window_oracle_scores_the_bypassed_windows(splits):
    net = model((2, 2, 3))
    ctx = SaliencyContext(splits.mean, splits.std, batch_size=20)
    scores = window_oracle(net, splits.val, ctx, 2)
    assert set(scores) == set(windows(net, 2))
    for first, window in windows(net, 2).items():
        bypassed = copy.deepcopy(net)
        for b in window:
            bypassed.remove_block(b)
        from squeezr.train import evaluate

        acc = evaluate(bypassed, splits.val, mean=splits.mean, std=splits.std)
        assert scores[first] == pytest.approx(1 - acc, abs=1e-12)


def test_replacement_in_the_loop_accounts_exactly(splits):
    settings = cfg(replace=2, replace_init="zero", schedule="none", target=Target("removed", 2))
    net = model((2, 2, 2))
    start = count_params(net)
    result = prune(net, splits, settings, progress=False)
    params = start
    shadow = model((2, 2, 2))
    for step in result.steps:
        window = step["replaced"]
        assert step["chosen"] == window[1:] and step["new_block"] == window[0]
        assert step["val_acc_before"] >= 0
        sizes = block_params(shadow)
        fresh = shadow.replace_blocks(window, zero=True)
        added = sum(p.numel() for m in fresh.removable_modules() for p in m.parameters())
        params = params - sum(sizes[b] for b in window) + added
        assert step["params"] == params
    assert result.summary["blocks_removed"] == 2 == 6 - len(result.model.block_ids())


# -- distillation -------------------------------------------------------------------------


def test_distillation_loss_equals_a_hand_computation():
    student = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    teacher = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    y = torch.tensor([1, 2])
    alpha, t = 0.3, 2.0

    def softmax(row):
        e = [pow(2.718281828459045, v) for v in row]
        return [v / sum(e) for v in e]

    ce = (
        sum(
            -torch.log(torch.tensor(softmax(s.tolist())[c]))
            for s, c in zip(student, y, strict=True)
        )
        / 2
    )
    kl = 0.0
    for s, q in zip(student / t, teacher / t, strict=True):
        p_t, p_s = softmax(q.tolist()), softmax(s.tolist())
        kl += sum(
            a * (torch.log(torch.tensor(a)) - torch.log(torch.tensor(b)))
            for a, b in zip(p_t, p_s, strict=True)
        )
    expected = alpha * ce + (1 - alpha) * t**2 * kl / 2
    got = distill_loss(student, teacher, y, alpha, t)
    assert got.item() == pytest.approx(float(expected), rel=1e-6)
    assert distill_loss(student, teacher, y, 1.0, t) == pytest.approx(F.cross_entropy(student, y))


@pytest.mark.parametrize("augment", [True, False])
def test_teacher_is_never_updated_and_runs_only_as_needed(splits, augment):
    source = model()
    teacher = Teacher(
        source,
        0.5,
        4.0,
        torch.device("cpu"),
        cache=not augment,
        split=splits.train,
        mean=splits.mean,
        std=splits.std,
    )
    frozen = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    student = copy.deepcopy(source)
    student.remove_block(0)
    settings = TrainConfig(epochs=2, lr=0.05, batch_size=32, device="cpu", augment=augment)
    fit(student, splits, settings, progress=False, loss=teacher.loss)
    for k, v in teacher.model.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    assert not teacher.model.training
    n = len(splits.train.y)
    # once per training batch (never for validation); cached without augmentation
    assert teacher.images == (2 * n if augment else n)
    assert teacher.forward_images(2, n, first=True) == teacher.images


def test_a_teacher_needs_the_datas_task_only_to_cache_its_outputs(splits):
    """Without a cache the trainer hands the teacher prepared inputs: no task needed (the
    overhead benchmark builds one so); a cache prepares stored images itself."""
    source = model()
    teacher = Teacher(source, 0.5, 4.0, torch.device("cpu"))
    student = copy.deepcopy(source)
    settings = TrainConfig(epochs=1, lr=0.05, batch_size=32, device="cpu")
    fit(student, splits, settings, progress=False, loss=teacher.loss)
    assert teacher.images == len(splits.train.y)
    with pytest.raises(UserError, match="caches its outputs needs the data's task"):
        Teacher(source, 0.5, 4.0, torch.device("cpu"), cache=True, split=splits.train)


def test_distillation_in_the_loop_counts_the_teachers_cost(splits):
    settings = cfg(distill=(0.5, 4.0), schedule="every:1", target=Target("removed", 2))
    result = prune(model(), splits, settings, progress=False)
    s = result.summary
    n = len(splits.train.y)
    assert (
        s["teacher_epochs"]
        == 2.0
        == sum(st["loops"]["high"]["teacher_epochs"] for st in result.steps)
    )
    assert s["teacher_cost"] == 2.0 * count_params(model())
    assert s["total_cost"] == s["cost"] + s["teacher_cost"]
    assert n > 0


# -- local training -----------------------------------------------------------------------


def test_local_training_changes_only_the_named_neighbours(splits, monkeypatch):
    snapshots = {}
    real_fit = loop_module.fit

    def recording_fit(net, *args, prefix="", on_epoch_end=None, **kwargs):
        before = {k: v.clone() for k, v in net.state_dict().items()}

        def after_epoch(epoch, row):  # before fit restores the best epoch (maybe epoch 0)
            snapshots[prefix] = (before, {k: v.clone() for k, v in net.state_dict().items()})

        return real_fit(net, *args, prefix=prefix, on_epoch_end=after_epoch, **kwargs)

    monkeypatch.setattr(loop_module, "fit", recording_fit)
    settings = cfg(local=(1, 1), schedule="every:1", target=Target("removed", 2), lr=0.1)
    result = prune(model(), splits, settings, progress=False)
    first = result.steps[0]
    trained = first["loops"]["high"]["trained_blocks"]
    removed = first["chosen"][0]
    shadow = model()
    shadow.remove_block(removed)
    assert trained == neighbours(shadow, {removed}, 1, 1) and 1 <= len(trained) <= 2
    before, after = snapshots["prune/step/1/finetune"]
    changed = {k for k in before if "num_batches" not in k and not torch.equal(before[k], after[k])}
    assert changed  # the loop did train
    assert all(k.split(".")[1] in {str(b) for b in trained} for k in changed), changed
    assert (
        result.steps[1]["finetune"] == "final"
        and "trained_blocks" not in result.steps[1]["loops"]["high"]
    )


def test_neighbours_cross_groups_and_skip_the_removed():
    net = ResNet((2, 2, 2))
    for b in (2, 3):
        net.remove_block(b)
    assert neighbours(net, {3}, 2, 1) == [0, 1, 4]
    assert neighbours(net, {0}, 1, 2) == [1, 4]
    assert neighbours(net, {5}, 0, 3) == []


# -- total budget / checkpoints -----------------------------------------------------------


def test_total_budget_split_adds_up(splits):
    settings = cfg(
        total_budget=7, initial_epochs=2, schedule="uniform:2", target=Target("removed", 2)
    )
    plan = plan_run(model(), splits, settings)
    assert plan.budget_epochs == {1: 2, 2: 3}
    assert "budget 7 = 2 initial + 5 fine-tuning" in plan.describe()
    result = prune(model(), splits, settings, progress=False)
    s = result.summary
    assert [st["loops"]["high"]["epochs"] for st in result.steps] == [2, 3]
    assert s["budget_initial_epochs"] + s["budget_finetune_epochs"] == 7 == s["budget_total_epochs"]


# -- combinations the plan refuses --------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lazy": True}, "give --phase S too"),
        ({"phase_mode": "bernoulli"}, "give --phase S too"),
        ({"phase": 2, "phase_sample": "batch"}, "--phase-mode bernoulli"),
        ({"phase": 1, "schedule": "low-high:1"}, "drop low-high"),
        ({"phase": 1, "lazy": True, "schedule": "none"}, "has none"),
        ({"phase": 3, "epochs": 2}, "must not exceed --epochs 2"),
        ({"replace": 2, "method": "random"}, "use --method oracle"),
        ({"replace": 2, "phase": 1}, "choose one"),
        ({"replace": 3, "target": Target("removed", 3)}, "not a multiple of 2"),
        ({"replace": 4}, "no group of the starting model"),
        ({"replace": 2, "blocks_per_step": 2, "target": Target("removed", 2)}, "one window"),
        ({"distill": (0.5, 4.0), "schedule": "none"}, "fine-tunes nothing"),
        ({"local": (1, 1), "schedule": "once"}, "--schedule once has none"),
        ({"local": (1, 1), "schedule": "none"}, "--schedule none has none"),
        ({"total_budget": 10}, "--checkpoint E"),
        ({"initial_epochs": 3}, "give one"),
        (
            {"total_budget": 10, "initial_epochs": 1, "schedule": "threshold:0.1"},
            "known in advance",
        ),
        ({"total_budget": 3, "initial_epochs": 2}, "too few"),
        ({"phase": -1}, "--phase must be"),
        ({"replace": 1}, "at least 2 blocks"),
        ({"replace_init": "ones"}, "--init must be"),
        ({"distill": (1.5, 4.0)}, "--distill"),
        ({"local": (0, 0)}, "--local"),
        ({"phase": 1, "phase_mode": "coin"}, "--phase-mode must"),
    ],
)
def test_meaningless_combinations_are_refused_in_one_line(splits, kwargs, message):
    with pytest.raises(UserError, match=message) as info:
        plan_run(model(), splits, cfg(**kwargs))
    assert "\n" not in str(info.value)


# -- resume -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "dies_in"),
    [
        ({"phase": 2, "epochs": 3, "schedule": "every:2"}, ("prune/step/2/phase", 1)),
        (
            {"phase": 1, "lazy": True, "local": (1, 0), "schedule": "every:2"},
            ("prune/step/2/finetune", 1),
        ),
        (
            {"phase": 2, "phase_mode": "bernoulli", "phase_sample": "batch"},
            ("prune/step/2/phase", 1),
        ),
        (
            {"replace": 2, "equalise": True, "target": Target("removed", 2)},
            ("prune/step/2/finetune", 0),
        ),
        ({"distill": (0.3, 2.0), "augment": False, "epochs": 2}, ("prune/step/2/finetune", 1)),
    ],
)
def test_every_strategy_resumes_to_the_same_outcome(
    splits, tmp_path, monkeypatch, settings, dies_in
):
    base = {"target": Target("removed", 3), "schedule": "every:1", "epochs": 2, **settings}
    settings = cfg(**base)
    reference = prune(model(), splits, settings, state_path=tmp_path / "a.pt", progress=False)
    _dying_fit(monkeypatch, lambda prefix, epoch: (prefix, epoch) == dies_in)
    with pytest.raises(KeyboardInterrupt):
        prune(model(), splits, settings, state_path=tmp_path / "b.pt", progress=False)
    assert load_state(tmp_path / "b.pt", settings) is not None
    monkeypatch.undo()
    resumed = prune(model(), splits, settings, state_path=tmp_path / "b.pt", progress=False)
    _same_run(resumed, reference)


def test_strategy_settings_round_trip_through_the_record():
    settings = cfg(phase=2, lazy=True, distill=(0.5, 4.0), local=(1, 2), equalise=True)
    params = settings.params()
    assert params["distill"] == [0.5, 4.0] and params["local"] == [1, 2]
    assert PruneConfig.from_params(params) == settings


def test_a_replacement_step_counts_as_k_minus_1_blocks_in_the_plan(splits):
    settings = cfg(
        replace=3,
        schedule="uniform:2",
        target=Target("removed", 4),
        total_budget=9,
        initial_epochs=3,
    )
    plan = plan_run(model((3, 3, 3)), splits, settings)
    assert plan.loops_after() == [2, 4] and plan.budget_epochs == {2: 3, 4: 3}
    assert "remove 4 blocks (2 per step)" in plan.describe()
