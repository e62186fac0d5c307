"""``squeezr prune``'s strategy flags end to end: recorded params, refusals, the total budget
from a real training run's checkpoints and the one-command checkpoint study."""

import json

import pytest
import torch

from squeezr import dbx
from squeezr.cli import main
from squeezr.data import load_dataset
from squeezr.dbx.cli import main as dbx_main
from squeezr.models import ResNet, load_model
from squeezr.train import TrainConfig, fit

DATASET = {"name": "synthetic", "synthetic_size": 120, "synthetic_classes": 4}
FAST = ["--epochs", "1", "--batch-size", "32", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A repository with one real (2-epoch) training run checkpointed every epoch, and the
    weights it started from."""
    repo = tmp_path_factory.mktemp("strategies") / "repo"
    torch.manual_seed(0)
    model = ResNet((1, 1, 2), num_classes=4)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    splits = load_dataset("synthetic", synthetic_size=120, synthetic_classes=4)
    settings = TrainConfig(epochs=2, batch_size=32, checkpoint_every=1, device="cpu")
    with dbx.create("train/tiny", kind="train", params={"dataset": DATASET}, repo=repo) as exp:
        fit(model, splits, settings, exp=exp, progress=False)
    return repo, initial


def prune_cli(repo, *extra):
    return main(["prune", "--from", "train/tiny", "--repo", str(repo), *FAST, *extra])


def test_strategy_flags_are_params_that_dbx_diff_shows(trained, capsys):
    repo, _ = trained
    plain = ["--target-blocks", "2", "--schedule", "every:1", "--method", "weights-mean"]
    assert prune_cli(repo, *plain, "--name", "s/plain") == 0
    flags = ["--phase", "1", "--distill", "0.5,4", "--local", "1,0", "--equalise"]
    assert prune_cli(repo, *plain, *flags, "--name", "s/mixed") == 0
    out = capsys.readouterr().out
    assert "phased out over 1 epoch, at every step; groups equalised; distillation" in out
    params = dbx.open("s/mixed", repo=repo).params["prune"]
    assert (params["phase"], params["distill"], params["local"]) == (1, [0.5, 4.0], [1, 0])
    results = dbx.open("s/mixed", repo=repo).results
    assert results["total_cost"] == results["cost"] + results["teacher_cost"] > results["cost"]
    assert dbx_main(["diff", "s/plain", "s/mixed", "--repo", str(repo)]) in (0, 1)
    diff = capsys.readouterr().out
    for key in ("phase", "distill", "local", "equalise"):
        assert key in diff


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lazy"], "give --phase S too"),
        (["--replace", "2", "--method", "random"], "use --method oracle"),
        (["--distill", "0.5"], "--distill takes two numbers like 0.5,4"),
        (["--local", "a,b"], "--local takes two numbers like 1,1"),
        (["--local", "1,1", "--schedule", "once"], "--schedule once has none"),
        (["--total-budget", "5"], "--checkpoint E"),
        (["--checkpoints", "0,1"], "--total-budget"),
        (["--checkpoints", "0,x", "--total-budget", "4"], "--checkpoints takes epochs"),
        (["--phase-mode", "coin", "--phase", "1"], "--phase-mode must be one of linear"),
    ],
)
def test_meaningless_flags_are_one_line_errors_that_create_nothing(trained, capsys, flags, message):
    repo, _ = trained
    before = sorted(e.name for e in dbx.Repository(repo).experiments())
    assert prune_cli(repo, "--target-blocks", "2", "--schedule", "every:1", *flags) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert sorted(e.name for e in dbx.Repository(repo).experiments()) == before


def test_epoch_0_is_the_initial_weights_and_the_budget_adds_up(trained, capsys):
    repo, initial = trained
    args = ["--target-blocks", "1", "--schedule", "once", "--method", "weights-mean"]
    assert prune_cli(repo, *args, "--checkpoint", "0", "--total-budget", "3", "--name", "b/e0") == 0
    assert "budget 3 = 0 initial + 3 fine-tuning" in capsys.readouterr().out
    exp = dbx.open("b/e0", repo=repo)
    start = load_model(exp.attachment_path("start.pt")).state_dict()
    for name, value in initial.items():
        assert torch.equal(start[name], value), name
    r = exp.results
    assert r["budget_initial_epochs"] + r["budget_finetune_epochs"] == 3 == r["budget_total_epochs"]
    assert r["epochs_run"] == 3


def test_a_checkpoint_study_is_one_command(trained, capsys):
    repo, _ = trained
    args = ["--target-blocks", "1", "--schedule", "once", "--method", "weights-mean"]
    study = ["--checkpoints", "0,1,2", "--total-budget", "3", "--name", "study", "--json"]
    assert prune_cli(repo, *args, *study) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["checkpoint"] for r in rows] == [0, 1, 2]
    assert [r["finetune_epochs"] for r in rows] == [3, 2, 1]
    assert all(r["total_epochs"] == 3 for r in rows)
    assert [r["experiment"] for r in rows] == ["study/epoch-0", "study/epoch-1", "study/epoch-2"]
    assert dbx.open("study/epoch-2", repo=repo).params["source"]["checkpoint"] == 2
