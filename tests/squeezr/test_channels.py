"""``--then channels:RATIO``: channel pruning after the block stage (squeezr.prune.channels).

A tiny CIFAR ResNet on synthetic data: the parameter count drops to what the narrowed shape
holds, forward shapes hold, MACs follow the actual layer shapes, the stage's steps are
accounted and recorded, a channel-pruned network saves, loads, exports and resumes, and bad
settings or a missing extra are one-line errors.
"""

import json
import subprocess
import sys
from types import SimpleNamespace as NS

import onnx
import pytest
import torch
from test_prune_loop import _dying_fit, _same_run, _split, cfg, model

from squeezr import dbx
from squeezr.cli import main
from squeezr.dbx.errors import UserError
from squeezr.models import (
    ResNet,
    count_macs,
    count_params,
    export_onnx,
    export_torchscript,
    load_model,
    save_model,
)
from squeezr.prune import load_state, plan_run, prune
from squeezr.prune.channels import (
    ChannelPlan,
    channel_groups,
    check_plan,
    parse,
    prune_channels,
    removed_count,
)
from squeezr.prune.experiment import resume_point
from squeezr.prune.targets import Target
from squeezr.widths import changed_widths, layer_widths

EXAMPLE = torch.zeros(1, 3, 16, 16)


@pytest.fixture(scope="module")
def splits():
    """The loop tests' tiny 4-class set of 16x16 images."""
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


def resnet_params(config, widths, classes=4):
    """Parameters of an unpruned CIFAR ResNet with stage widths ``widths``, by hand."""
    total = 3 * widths[0] * 9 + 2 * widths[0]
    cin = widths[0]
    for group, (count, width) in enumerate(zip(config, widths, strict=True)):
        for j in range(count):
            c = cin if j == 0 else width
            total += c * width * 9 + width * width * 9 + 4 * width
            if c != width or (j == 0 and group > 0):
                total += c * width + 2 * width
        cin = width
    return total + widths[-1] * classes + classes


def macs_by_hooks(net, shape=(3, 32, 32)):
    """MACs measured on the running network (output elements x inputs per output)."""
    total = [0]

    def hook(module, inputs, out):
        if isinstance(module, torch.nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] ** 2
            total[0] += out.numel() * per_output
        elif isinstance(module, torch.nn.Linear):
            total[0] += out.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    net.eval()
    net(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return total[0]


def narrowed(ratio=0.25, removed=(), importance="l2"):
    net = model()
    for b in removed:
        net.remove_block(b)
    start = layer_widths(net)
    groups = channel_groups(net, EXAMPLE)
    keep = {k: w - removed_count(w, ratio) for k, w in groups.items()}
    widths = prune_channels(
        net, EXAMPLE, keep, importance, generator=torch.Generator().manual_seed(0)
    )
    net.record_widths(changed_widths(start, net))
    return net, widths


# -- settings ---------------------------------------------------------------------------------


def test_the_stage_string_and_its_defaults():
    assert parse("channels:0.3") == ChannelPlan(0.3, 3, "l2")
    assert parse("Channels:0.05").steps == 1  # one step per started tenth
    assert parse("channels:0.5,steps=2,importance=taylor") == ChannelPlan(0.5, 2, "taylor")
    assert parse("channels:0.5, importance=random").text == (
        "channels:0.5,steps=5,importance=random"
    )
    assert parse("channels:0.25").fraction(2) == pytest.approx(0.1667, abs=1e-4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("channels:0", "between 0 and 1"),
        ("channels:1", "between 0 and 1"),
        ("channels:1.5", "between 0 and 1"),
        ("channels:-0.2", "between 0 and 1"),
        ("channels:nan", "between 0 and 1"),
        ("channels:half", "between 0 and 1"),
        ("channels:", "between 0 and 1"),
        ("channels:0.3,steps=0", "steps must be a whole number"),
        ("channels:0.3,steps=x", "steps must be a whole number"),
        ("channels:0.3,importance=hessian", "unknown importance 'hessian'"),
        ("channels:0.3,speed=2", "unknown option 'speed=2'"),
        ("filters:0.3", "the stage after block pruning is channels:RATIO"),
    ],
)
def test_bad_stage_strings_are_one_line_errors(text, message):
    with pytest.raises(UserError, match=message) as info:
        parse(text)
    assert "\n" not in str(info.value)


def test_ratios_that_empty_a_layer_or_remove_nothing_are_refused_before_any_compute(splits):
    with pytest.raises(UserError, match="a group of 16 channels would keep none"):
        plan_run(model(), splits, cfg(then="channels:0.97"))
    with pytest.raises(UserError, match="the first step removes no channel"):
        plan_run(model(), splits, cfg(then="channels:0.05,steps=10"))
    with pytest.raises(UserError, match="--total-budget"):
        plan_run(model(), splits, cfg(then="channels:0.3", total_budget=4, initial_epochs=1))
    assert "then remove 30% of the channels in 3 steps (l2)" in (
        plan_run(model(), splits, cfg(then="channels:0.3")).describe()
    )


def test_a_missing_extra_is_a_one_line_error_naming_it(splits, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # import fails
    with pytest.raises(UserError, match=r"pip install 'squeezr\[channels\]'") as info:
        plan_run(model(), splits, cfg(then="channels:0.3"))
    assert "\n" not in str(info.value)
    plan_run(model(), splits, cfg())  # the core runs without it


def test_the_core_imports_without_torch_pruning():
    code = (
        "import sys; sys.modules['torch_pruning'] = None; "
        "import squeezr.prune, squeezr.prune.channels, squeezr.cli.prune, squeezr.models; "
        "from squeezr.cli import main; sys.exit(main(['prune', '--help']) if False else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the pruning step -------------------------------------------------------------------------


def test_every_coupled_group_loses_the_ratio_and_the_parameters_really_go():
    net, widths = narrowed(0.25)
    # the residual stream of each stage and every block's inner width: 16/32/64 -> 12/24/48
    assert sorted(set(widths.values())) == [12, 24, 48]
    assert count_params(net) == resnet_params((2, 2, 2), (12, 24, 48))
    assert count_params(model()) == resnet_params((2, 2, 2), (16, 32, 64))
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    assert count_macs(net) == macs_by_hooks(net)
    assert sum(t.numel() for t in net.state_dict().values() if t.dim() > 0) < sum(
        t.numel() for t in model().state_dict().values() if t.dim() > 0
    )


def test_shortcut_units_left_by_the_block_stage_are_narrowed_with_their_stage():
    net, widths = narrowed(0.5, removed=(2, 4))  # both downsampling blocks: shortcut units
    assert widths == {
        "stem.0": 8,
        "blocks.0.conv1": 8,
        "blocks.1.conv1": 8,
        "blocks.2.shortcut.0": 16,
        "blocks.3.conv1": 16,
        "blocks.4.shortcut.0": 32,
        "blocks.5.conv1": 32,
    }
    assert net.blocks["2"].shortcut[0].weight.shape == (16, 8, 1, 1)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    assert count_macs(net) == macs_by_hooks(net)


def test_the_least_important_channels_go():
    net = model()
    with torch.no_grad():
        net.blocks["0"].conv1.weight[5].zero_()  # channel 5 of block 0's inner width: no weight
        net.blocks["0"].bn1.weight[5] = 0
    before = net.blocks["0"].conv1.weight.clone()
    prune_channels(net, EXAMPLE, {"blocks.0.conv1": 15}, "l2")
    kept = [c for c in range(16) if c != 5]
    torch.testing.assert_close(net.blocks["0"].conv1.weight, before[kept])


@pytest.mark.parametrize("importance", ["l1", "bn-scale", "taylor", "random"])
def test_every_importance_narrows_to_the_same_shape(importance):
    net = model()
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 4, (8,), generator=g))
    groups = channel_groups(net, EXAMPLE)
    keep = {k: w // 2 for k, w in groups.items()}
    widths = prune_channels(net, EXAMPLE, keep, importance, batch=batch, generator=g)
    assert widths == keep
    assert count_params(net) == resnet_params((2, 2, 2), (8, 16, 32))
    assert all(p.grad is None for p in net.parameters())


def test_save_load_and_export_rebuild_the_narrowed_network(tmp_path):
    net, _ = narrowed(0.25, removed=(2,))
    net.eval()
    x = torch.randn(3, 3, 32, 32)
    save_model(net, tmp_path / "net.pt")
    loaded = load_model(tmp_path / "net.pt").eval()
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)
    assert count_params(loaded) == count_params(net)
    assert json.loads(json.dumps(net.spec())) == net.spec()  # JSON-able, as recorded
    fresh = ResNet.from_spec(net.spec(), seed=1)  # the narrowed shape from scratch
    assert [p.shape for p in fresh.parameters()] == [p.shape for p in net.parameters()]
    scripted = torch.jit.load(export_torchscript(net, tmp_path / "net.ts"))
    torch.testing.assert_close(scripted(x), net(x), rtol=1e-5, atol=1e-5)
    onnx.checker.check_model(onnx.load(export_onnx(net, tmp_path / "net.onnx")))


def test_a_spec_for_another_network_is_refused():
    net, _ = narrowed(0.25)
    spec = net.spec()
    spec["operations"][-1][1]["blocks.9.conv1"] = [8, 8, 1]
    with pytest.raises(UserError, match="does not have"):
        ResNet.from_spec(spec)
    spec = narrowed(0.25)[0].spec()
    spec["operations"][-1][1]["stem.0"] = [99, 3, 1]
    with pytest.raises(UserError, match="does not fit"):
        ResNet.from_spec(spec)


# -- in the loop ------------------------------------------------------------------------------


def test_the_stage_runs_after_the_blocks_under_the_schedule_and_accounting(splits):
    settings = cfg(target=Target("removed", 2), schedule="every:1", then="channels:0.25,steps=2")
    result = prune(model(), splits, settings, progress=False)
    assert len(result.steps) == 2 and len(result.channel_steps) == 2
    after_blocks = result.steps[-1]["params"]
    first, last = result.channel_steps
    assert [s["finetune"] for s in result.channel_steps] == ["scheduled", "final"]
    assert first["fraction"] == 0.125 and last["channels_removed_pct"] == 25.0
    assert after_blocks > first["params"] > last["params"] == count_params(result.model)
    assert last["macs"] == count_macs(result.model) == macs_by_hooks(result.model)
    for record, params in ((first, first["params"]), (last, last["params"])):
        loop = record["loops"]["high"]
        assert loop["cost"] == loop["best_epoch"] * params  # booked at the narrowed size
    assert last["cost"] == result.steps[-1]["cost"] + first["step_cost"] + last["step_cost"]
    s = result.summary
    assert s["blocks_removed"] == 2 and s["channel_steps"] == 2
    assert s["final_val_acc"] == last["val_acc_after"] and s["cost"] == last["cost"]
    assert s["params"] == last["params"] and s["then"] == "channels:0.25,steps=2,importance=l2"


def test_a_run_killed_in_the_channel_stage_resumes_to_the_same_end(splits, tmp_path, monkeypatch):
    settings = cfg(
        target=Target("removed", 2),
        schedule="every:1",
        epochs=2,
        then="channels:0.25,steps=2,importance=taylor",
    )
    reference = prune(model(), splits, settings, state_path=tmp_path / "a.pt", progress=False)

    def dies(prefix, epoch):
        return (prefix, epoch) == ("prune/channels/step/2/finetune", 1)

    _dying_fit(monkeypatch, dies)
    with pytest.raises(KeyboardInterrupt):
        prune(model(), splits, settings, state_path=tmp_path / "b.pt", progress=False)
    state = load_state(tmp_path / "b.pt", settings)
    assert len(state["channels"]["steps"]) == 1
    assert state["channels"]["pending"]["record"]["step"] == 2  # narrowed, fine-tuning
    monkeypatch.undo()
    resumed = prune(model(), splits, settings, state_path=tmp_path / "b.pt", progress=False)
    _same_run(resumed, reference)
    for a, b in zip(resumed.channel_steps, reference.channel_steps, strict=True):
        assert {k: v for k, v in a.items() if "seconds" not in k and k != "loops"} == {
            k: v for k, v in b.items() if "seconds" not in k and k != "loops"
        }


# -- command line and records -----------------------------------------------------------------


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "repo"
    torch.manual_seed(0)
    save_model(ResNet((1, 1, 2), num_classes=4), tmp_path / "start.pt")
    dataset = {"name": "synthetic", "synthetic_size": 120, "synthetic_classes": 4}
    with dbx.create(
        "train/tiny", kind="train", params={"dataset": dataset, "train": {"epochs": 2}}, repo=path
    ) as exp:
        exp.attach(tmp_path / "start.pt", name="model.pt")
    return path


def _prune(repo, *extra):
    fast = ["--epochs", "1", "--batch-size", "32", "--device", "cpu", "--no-progress"]
    return main(["prune", "--from", "train/tiny", "--repo", str(repo), *fast, *extra])


def test_the_command_records_the_stage_and_its_model_exports(repo, tmp_path, capsys):
    flags = ["--target-blocks", "1", "--schedule", "every:1", "--then", "channels:0.5,steps=2"]
    assert _prune(repo, *flags) == 0
    out = capsys.readouterr().out
    assert "then remove 50% of the channels in 2 steps (l2)" in out
    assert "-25.0% channels" in out and "-50.0% channels" in out  # rows c1, c2
    assert "1 block and 50.0% of the channels removed" in out
    exp = dbx.open("prune/train/tiny/oracle/every-1/channels-0.5", repo=repo)
    assert exp.params["prune"]["then"] == "channels:0.5,steps=2,importance=l2"
    events = exp.merged_events()
    assert {"prune/step/1", "prune/channels/start", "prune/channels/step/2"} <= set(events)
    assert "prune/channels/step/1/finetune/epoch/1" in events
    start = events["prune/channels/start"]
    assert start["groups"][0] == "stem.0" and start["widths"][0] == 16
    assert events["prune/channels/step/2"]["widths"] == [w // 2 for w in start["widths"]]
    assert exp.results["channel_widths"] == events["prune/channels/step/2"]["widths"]
    pruned = load_model(exp.attachment_path("model.pt"))
    assert count_params(pruned) == exp.results["params"] < events["prune/step/1"]["params"]
    assert main(["export", exp.id, "--repo", str(repo), "-o", str(tmp_path / "p.ts")]) == 0
    assert "written as torchscript" in capsys.readouterr().out
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(torch.jit.load(tmp_path / "p.ts")(x), pruned.eval()(x))


@pytest.mark.parametrize(
    ("then", "message"),
    [
        ("channels:1.5", "RATIO is the fraction of channels to remove, between 0 and 1"),
        ("channels:0", "between 0 and 1"),
        ("width:0.5", "the stage after block pruning is channels:RATIO"),
    ],
)
def test_bad_values_on_the_command_line_create_nothing(repo, capsys, then, message):
    assert _prune(repo, "--target-blocks", "1", "--then", then) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert [e.name for e in dbx.Repository(repo).experiments()] == ["train/tiny"]


def test_the_command_without_the_extra_is_a_one_line_error(repo, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_pruning", None)
    assert _prune(repo, "--target-blocks", "1", "--then", "channels:0.3") == 2
    err = capsys.readouterr().err
    assert "pip install 'squeezr[channels]'" in err and err.count("\n") == 1


def test_a_resumed_run_says_where_in_the_channel_stage_it_continues(tmp_path):
    exp = NS(path=tmp_path)
    stage = {"start_layers": {}, "steps": [{}], "pending": None}
    state = {"steps": [{}], "pending": None, "channels": stage}
    assert resume_point(exp, state) == "resuming at channel step 2 (the block steps are done)"
    stage["pending"] = {"record": {"step": 2}}
    assert resume_point(exp, state) == (
        "resuming at channel step 2 (channels cut), before its fine-tuning"
    )
    torch.save({"epoch": 3}, tmp_path / "prune-state.prune-channels-step-2-finetune.pt")
    assert resume_point(exp, state) == (
        "resuming at channel step 2 (channels cut), fine-tuning epoch 4"
    )


def test_a_family_that_cannot_record_narrowed_layers_is_refused_in_one_line():
    from test_blocknet import TinyLM  # a block network without squeezr.widths.RecordsWidths

    with pytest.raises(UserError, match="TinyLM networks cannot record") as info:
        check_plan(parse("channels:0.3"), TinyLM())
    assert "\n" not in str(info.value)


def test_distillation_keeps_its_teacher_through_the_channel_stage(splits):
    settings = cfg(
        target=Target("removed", 1),
        schedule="once",
        distill=(0.5, 4.0),
        then="channels:0.5,steps=2,importance=random",
    )
    result = prune(model(), splits, settings, progress=False)
    first, last = result.channel_steps
    assert "high" not in first["loops"] and last["finetune"] == "final"  # once: the end only
    assert last["loops"]["high"]["teacher_epochs"] > 0
    ops = [op[0] for op in result.model.spec()["operations"]]
    assert ops.count("channels") == 1  # cumulative widths, recorded once
