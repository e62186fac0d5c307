"""`squeezr train`: experiment creation, results, checkpoints, resume and one-line errors."""

import json

import pytest

from squeezr import data, dbx
from squeezr.cli import main
from squeezr.train import fit as real_fit

TINY = ["--config", "1,0,1", "--epochs", "2", "--batch-size", "32", "--device", "cpu"]


@pytest.fixture(autouse=True)
def tiny_data(monkeypatch):
    """Any dataset name loads a tiny synthetic set, so these tests take seconds."""
    real = data.load_dataset

    def load(name, data_dir=None, download=True, **kw):
        if name != "synthetic":
            return real(name, data_dir=data_dir, download=download)
        return real("synthetic", synthetic_size=100, synthetic_classes=3, seed=0)

    monkeypatch.setattr(data, "load_dataset", load)


def _train(repo, *extra):
    return main(["train", *TINY, "--dataset", "synthetic", "--repo", str(repo), *extra])


def test_train_creates_an_experiment_with_events_results_and_checkpoints(tmp_path, capsys):
    repo = tmp_path / "repo"
    rc = _train(repo, "--name", "baselines/tiny/0", "--checkpoint-every", "1", "--no-progress")
    out = capsys.readouterr().out
    assert rc == 0
    assert "experiment " in out and "best epoch" in out and "test" in out
    exp = dbx.open("baselines/tiny/0", repo=repo)
    assert exp.kind == "train"
    assert exp.params["train.epochs"] == 2 and exp.params["config"] == [1, 0, 1]
    results = exp.results
    assert set(results) >= {"best_epoch", "best_val_acc", "test_acc", "params", "macs"}
    merged = exp.merged_events()
    for e in (0, 1, 2):
        assert "val_acc" in merged[f"train/epoch/{e}"]
    assert {"train_loss", "train_acc", "test_acc", "lr", "seconds"} <= set(merged["train/epoch/2"])
    for e in (0, 1, 2):
        assert exp.attachment_path(f"checkpoints/epoch-{e:04d}.pt").is_file()
    assert not list(exp.path.glob("resume*.pt"))


def test_json_output_and_resume_of_an_interrupted_run(tmp_path, capsys, monkeypatch):
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
    assert "test_acc" not in exp.results
    assert list(exp.path.glob("resume*.pt"))
    monkeypatch.setattr(squeezr.train, "fit", real_fit)
    capsys.readouterr()
    assert main(["train", "--resume", "--name", "r/0", "--repo", str(repo), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["id"] == exp.id and printed["epochs"] == 2
    exp = dbx.open("r/0", repo=repo)
    epochs = sorted(int(ev["name"].rsplit("/", 1)[1]) for ev in exp.events("train/epoch/"))
    assert epochs == [0, 1, 2]  # epoch 1 was not trained twice
    # Resuming a finished experiment trains nothing and reprints the results.
    assert main(["train", "--resume", "--name", "r/0", "--repo", str(repo), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_acc"] == printed["test_acc"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--arch", "resnet7"], "unknown --arch"),
        (["--config", "1,x,1"], "--config must be three block counts"),
        (["--arch", "resnet20", "--config", "1,1,1"], "disagree"),
        ([], "say which network"),
        (["--config", "1,1,1", "--dataset", "imagenet"], "unknown dataset"),
        (["--config", "1,1,1", "--milestones", "a,b"], "--milestones"),
        (["--config", "1,1,1", "--stochastic-depth", "1.5"], "stochastic_depth"),
        (["--resume"], "--resume needs --name"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    rc = main(["train", "--repo", str(tmp_path / "repo"), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "repo").exists() or not list(
        dbx.Repository.find(tmp_path / "repo").experiments()
    )


def test_missing_cifar_is_a_clear_error(tmp_path, capsys):
    argv = ["train", "--config", "1,1,1", "--dataset", "cifar10", "--no-download"]
    rc = main([*argv, "--data-dir", str(tmp_path / "nothing"), "--repo", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "cifar" in err.lower() and len(err.strip().splitlines()) == 1
