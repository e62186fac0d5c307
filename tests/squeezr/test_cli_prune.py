"""``squeezr prune``, ``compare`` and ``scratch`` end to end on a tiny network and dbx repo."""

import json

import pytest
import torch

from squeezr import dbx
from squeezr.cli import main
from squeezr.models import ResNet, load_model, save_model
from squeezr.prune import loop as loop_module

DATASET = {"name": "synthetic", "synthetic_size": 120, "synthetic_classes": 4}
FAST = ["--epochs", "1", "--batch-size", "32", "--device", "cpu", "--no-progress"]


@pytest.fixture
def repo(tmp_path):
    """A repository holding one 'trained' (random) network, as squeezr train records it."""
    path = tmp_path / "repo"
    torch.manual_seed(0)
    model = ResNet((1, 1, 2), num_classes=4)
    save_model(model, tmp_path / "start.pt")
    with dbx.create(
        "train/tiny", kind="train", params={"dataset": DATASET, "train": {"epochs": 2}}, repo=path
    ) as exp:
        exp.attach(tmp_path / "start.pt", name="model.pt")
    return path


def prune_cli(repo, *extra):
    return main(["prune", "--from", "train/tiny", "--repo", str(repo), *FAST, *extra])


def test_prune_records_everything(repo, capsys):
    rc = prune_cli(repo, "--target-blocks", "2", "--schedule", "uniform:2", "--name", "p/one")
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "2 blocks removed" in out
    exp = dbx.open("p/one", repo=repo)
    assert exp.kind == "prune"
    assert exp.params["prune"]["schedule"] == "uniform:2"
    assert exp.params["source"]["name"] == "train/tiny"
    results = exp.results
    assert results["blocks_removed"] == 2 and len(results["order"]) == 2
    events = exp.merged_events()
    assert {"prune/initial", "prune/step/1", "prune/step/2"} <= set(events)
    assert "prune/step/1/finetune/epoch/1" in events  # uniform:2 over 2 blocks: both steps
    step2 = events["prune/step/2"]
    assert step2["blocks_removed"] == 2 and step2["finetune"] == "final"
    assert set(step2["saliency"]) == {str(b) for b in range(4)} - {str(results["order"][0])}
    pruned = load_model(exp.attachment_path("model.pt"))
    assert sorted(pruned.removed) == sorted(results["order"])
    assert pruned.config == tuple(results["config"])


def test_prune_from_a_checkpoint_needs_a_dataset(repo, tmp_path, capsys):
    ckpt = tmp_path / "start.pt"
    args = ["prune", "--from", str(ckpt), "--repo", str(repo), "--target-left", "3", *FAST]
    assert main(args) == 2
    assert "pass --dataset" in capsys.readouterr().err
    assert main([*args, "--dataset", "synthetic", "--schedule", "none", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["removed"] for r in rows] == [0, 1]


def test_resume_after_kill_matches_an_uninterrupted_run(repo, monkeypatch, capsys):
    settings = ["--target-blocks", "3", "--schedule", "every:1", "--method", "block-gradient"]
    assert prune_cli(repo, *settings, "--name", "p/whole") == 0
    real_fit, calls = loop_module.fit, {"n": 0}

    def dying_fit(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(loop_module, "fit", dying_fit)
    assert prune_cli(repo, *settings, "--name", "p/killed") == 130
    killed = dbx.open("p/killed", repo=repo)
    assert "order" not in killed.results
    assert main(["prune", "--resume", "p/killed", "--repo", str(repo), "--no-progress"]) == 0
    whole = dbx.open("p/whole", repo=repo).results
    resumed = dbx.open("p/killed", repo=repo).results
    for key in ("order", "final_val_acc", "final_test_acc", "cost", "params", "epochs_used"):
        assert resumed[key] == whole[key], key


def test_compare_and_scratch(repo, capsys):
    for method in ("oracle", "weights-mean"):
        args = ["--target-blocks", "2", "--schedule", "none", "--method", method]
        assert prune_cli(repo, *args, "--name", f"p/{method}") == 0
    capsys.readouterr()
    assert main(["compare", "p/oracle", "p/weights-mean", "--repo", str(repo), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2
    assert rows[0][rows[0]["run"]] == pytest.approx(1.0)
    assert -1 <= rows[0][rows[1]["run"]] <= 1
    assert main(["compare", "p/oracle", "p/oracle", "--step", "9", "--repo", str(repo)]) == 2
    assert "--step must be between 1 and 2" in capsys.readouterr().err

    assert main(["scratch", "--like", "p/oracle", "--repo", str(repo), "--no-progress"]) == 0
    capsys.readouterr()
    shape = dbx.open("p/oracle", repo=repo).results["config"]
    scratch = dbx.open(f"scratch/{'-'.join(map(str, shape))}/0", repo=repo)
    assert list(scratch.params["config"]) == list(shape)
    assert scratch.params["train"]["epochs"] == 2  # the source network's training budget
    assert "test_acc" in scratch.results


def test_bad_sources_and_flags(repo, capsys):
    assert main(["prune", "--from", "nowhere", "--repo", str(repo), "--target-blocks", "1"]) == 2
    assert "neither a checkpoint file nor an experiment" in capsys.readouterr().err
    assert prune_cli(repo, "--target-blocks", "9") == 2
    assert "impossible" in capsys.readouterr().err
    assert prune_cli(repo, "--target-size", "resnet20", "--milestones", "x") == 2
    assert "--milestones" in capsys.readouterr().err
    assert main(["prune", "--repo", str(repo)]) == 2
    assert "--from SOURCE" in capsys.readouterr().err
