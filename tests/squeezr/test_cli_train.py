"""`squeezr train`: experiment creation, results, model.pt, resume, hand-off to `squeezr prune`,
and one-line errors that leave no experiment behind."""

import json
from pathlib import Path

import pytest
import torch

from squeezr import data, dbx
from squeezr.cli import main
from squeezr.models import load_model
from squeezr.prune import records
from squeezr.train import evaluate
from squeezr.train import fit as real_fit

TINY = ["--config", "1,0,1", "--epochs", "2", "--batch-size", "32", "--device", "cpu"]


@pytest.fixture
def tiny_data(monkeypatch):
    """``synthetic`` loads a tiny set (100 images, 3 classes), so these tests take seconds.

    Returns the keyword arguments of every load, to see what the CLI asked for.
    """
    real = data.load_dataset
    calls = []

    def load(name, data_dir=None, download=True, **kw):
        calls.append({"name": name, "data_dir": data_dir, **kw})
        if name != "synthetic":
            return real(name, data_dir=data_dir, download=download, **kw)
        return real("synthetic", synthetic_size=100, synthetic_classes=3, seed=0, **kw)

    monkeypatch.setattr(data, "load_dataset", load)
    monkeypatch.setattr(records, "load_dataset", load)
    return calls


def _train(repo, *extra):
    return main(["train", *TINY, "--dataset", "synthetic", "--repo", str(repo), *extra])


def _experiments(repo: Path) -> list:
    return list(dbx.Repository.find(repo).experiments()) if repo.exists() else []


def test_train_creates_an_experiment_with_events_results_checkpoints_and_model(
    tmp_path, capsys, tiny_data
):
    repo = tmp_path / "repo"
    rc = _train(repo, "--name", "baselines/tiny/0", "--checkpoint-every", "1", "--no-progress")
    out = capsys.readouterr().out
    assert rc == 0
    assert "experiment " in out and "best epoch" in out and "model.pt" in out
    exp = dbx.open("baselines/tiny/0", repo=repo)
    assert exp.kind == "train"
    params = exp.params
    assert params["train.epochs"] == 2 and params["config"] == [1, 0, 1]
    assert params["dataset"] == "synthetic" and params["pruning_set"] is False
    assert params["arch"] == "resnet-1-0-1"
    results = exp.results
    assert set(results) >= {"best_epoch", "best_val_acc", "val_acc", "test_acc", "params", "macs"}
    merged = exp.merged_events()
    for e in (0, 1, 2):
        assert "val_acc" in merged[f"train/epoch/{e}"]
    assert {"train_loss", "train_acc", "test_acc", "lr", "seconds"} <= set(merged["train/epoch/2"])
    for e in (0, 1, 2):
        assert exp.attachment_path(f"checkpoints/epoch-{e:04d}.pt").is_file()
    assert not list(exp.path.glob("resume*.pt"))
    # model.pt holds the restored best-validation weights: its accuracy is the result.
    model = load_model(exp.attachment_path("model.pt"))
    assert model.config == (1, 0, 1)
    splits = data.load_dataset("synthetic")
    norm = {"mean": splits.mean, "std": splits.std}
    assert evaluate(model, splits.val, **norm) == results["val_acc"] == results["best_val_acc"]
    assert evaluate(model, splits.test, **norm) == results["test_acc"]
    best = torch.load(exp.attachment_path(f"checkpoints/epoch-{results['best_epoch']:04d}.pt"))
    assert all(torch.equal(best["state_dict"][k], v) for k, v in model.state_dict().items())


def test_a_trained_experiment_can_be_pruned_with_squeezr_prune_from(tmp_path, capsys):
    """The main documented workflow: `squeezr train` then `squeezr prune --from` it, with the
    pruning set held out in training and used for block selection."""
    repo = str(tmp_path / "repo")
    args = ["train", "--config", "1,1,1", "--dataset", "digits", "--epochs", "1"]
    args += ["--batch-size", "64", "--device", "cpu", "--pruning-set", "--train-images", "256"]
    assert main([*args, "--repo", repo, "--name", "base", "--no-progress"]) == 0
    trained = dbx.open("base", repo=repo)
    assert trained.params["pruning_set"] is True and trained.params["train_images"] == 256
    prune = ["prune", "--from", "base", "--repo", repo, "--target-blocks", "1", "--epochs", "1"]
    prune += ["--selection", "prune", "--batch-size", "64", "--device", "cpu", "--no-progress"]
    capsys.readouterr()
    assert main([*prune, "--name", "pruned"]) == 0, capsys.readouterr().err
    pruned = dbx.open("pruned", repo=repo)
    assert pruned.params["source"]["id"] == trained.id
    assert pruned.results["blocks_removed"] == 1
    assert len(load_model(pruned.attachment_path("model.pt")).block_ids()) == 2


def test_pruning_set_and_data_dir_are_recorded_for_resume_and_pruning(
    tmp_path, monkeypatch, tiny_data
):
    monkeypatch.chdir(tmp_path)
    assert _train("repo", "--name", "p/0", "--pruning-set", "--data-dir", "data/../d") == 0
    exp = dbx.open("p/0", repo=tmp_path / "repo")
    assert exp.params["pruning_set"] is True
    assert exp.params["data_dir"] == str(tmp_path / "d")  # absolute: resumable from anywhere
    assert tiny_data[-1]["pruning_set"] is True  # the pruning set was held out of training


def test_json_output_and_resume_of_an_interrupted_run(tmp_path, capsys, monkeypatch, tiny_data):
    import squeezr.train

    def interrupted_fit(*args, **kwargs):
        def stop(epoch, row):
            if epoch == 1:
                raise KeyboardInterrupt

        return real_fit(*args, on_epoch_end=stop, **kwargs)

    repo = tmp_path / "repo"
    monkeypatch.setattr(squeezr.train, "fit", interrupted_fit)
    assert _train(repo, "--name", "r/0", "--no-progress") == 130
    exp = dbx.open("r/0", repo=repo)
    hint = f"continue it with: squeezr train --resume {exp.id} --repo {repo}\n"
    assert hint in capsys.readouterr().err
    assert "test_acc" not in exp.results and "model.pt" not in exp.attachments
    assert list(exp.path.glob("resume*.pt"))
    monkeypatch.setattr(squeezr.train, "fit", real_fit)
    capsys.readouterr()
    # A bad device on resume is refused before a new run starts.
    resume = ["train", "--resume", "r/0", "--repo", str(repo)]
    assert main([*resume, "--device", "tpu"]) == 2
    assert len(dbx.open("r/0", repo=repo).runs()) == 1
    capsys.readouterr()
    # Only --device may change: cpu -> auto.
    assert main([*resume, "--device", "auto", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "squeezr: resuming at epoch 2 of 2" in err
    printed = json.loads(out)
    assert printed["id"] == exp.id and printed["epochs"] == 2
    exp = dbx.open("r/0", repo=repo)
    epochs = sorted(int(ev["name"].rsplit("/", 1)[1]) for ev in exp.events("train/epoch/"))
    assert epochs == [0, 1, 2]  # epoch 1 was not trained twice
    assert exp.attachment_path("model.pt").is_file()
    # Resuming a finished experiment trains nothing and reprints the results.
    assert main([*resume, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["test_acc"] == printed["test_acc"] and "already finished" in err
    assert len(dbx.open("r/0", repo=repo).runs()) == 2  # no new run, as for pruning


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--arch", "resnet7"], "unknown ResNet preset 'resnet7'"),
        (["--config", "1,x,1"], "--config must be three block counts"),
        (["--arch", "resnet20", "--config", "1,1,1"], "disagree"),
        ([], "say which network"),
        (["--config", "1,1,1", "--dataset", "imagenet"], "unknown dataset"),
        (["--config", "1,1,1", "--milestones", "a,b"], "--milestones"),
        (["--config", "1,1,1", "--milestones", "20,10"], "milestones must be increasing"),
        (["--config", "1,1,1", "--stochastic-depth", "1.5"], "stochastic_depth"),
        (["--config", "1,1,1", "--lr", "inf"], "lr must be a finite number"),
        (["--config", "1,1,1", "--batch-size", "0"], "batch_size"),
        (["--config", "1,1,1", "--device", "tpu"], "unknown device 'tpu'"),
        (["--config", "1,1,1", "--train-images", "0"], "train_images must be at least 1"),
        (["--config", "1,1,1", "--name", "a//b"], "empty part"),
        (["--resume"], "--resume needs the experiment"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, tiny_data, argv, message):
    rc = main(["train", "--repo", str(tmp_path / "repo"), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "repo").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_fails_before_any_experiment_exists(tmp_path, capsys, tiny_data):
    assert _train(tmp_path / "repo", "--device", "cuda") == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "repo").exists()


def test_missing_cifar_is_a_clear_error_and_leaves_nothing(tmp_path, capsys):
    argv = ["train", "--config", "1,1,1", "--dataset", "cifar10", "--no-download"]
    rc = main([*argv, "--data-dir", str(tmp_path / "nothing"), "--repo", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "cifar" in err.lower() and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists() and not (tmp_path / "nothing").exists()


def test_preset_names_are_recorded_normalised(tmp_path, tiny_data):
    repo = tmp_path / "repo"
    args = ["--epochs", "0", "--device", "cpu", "--dataset", "synthetic", "--no-progress"]
    for arch, config in (("ResNet-20", []), ("resnet_20", ["--config", "3,3,3"])):
        assert main(["train", "--arch", arch, *config, *args, "--repo", str(repo)]) == 0
    assert sorted(e.params["arch"] for e in _experiments(repo)) == ["resnet20", "resnet20"]
