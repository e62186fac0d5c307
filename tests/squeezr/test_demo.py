"""``squeezr demo`` in miniature: train on a slice of digits, prune one block, print the table."""

from squeezr import dbx
from squeezr.cli import main


def test_tiny_demo(tmp_path, capsys):
    repo = tmp_path / "experiments"
    args = ["demo", "--repo", str(repo), "--train-epochs", "1", "--train-images", "64"]
    args += ["--blocks", "1", "--finetune-epochs", "1", "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "val_before" in out and "params_removed_%" in out
    assert "1 blocks removed" in out
    runs = {e.kind: e for e in dbx.Repository.find(repo).experiments()}
    assert set(runs) == {"train", "prune"}
    assert runs["prune"].results["blocks_removed"] == 1
    assert runs["prune"].params["dataset"]["train_images"] == 64


def test_demo_rejects_bad_sizes(tmp_path, capsys):
    assert main(["demo", "--repo", str(tmp_path), "--blocks", "10"]) == 2
    assert "--blocks must be between 1 and 9 for resnet20" in capsys.readouterr().err
    assert main(["demo", "--repo", str(tmp_path), "--schedule", "often"]) == 2
    assert "unknown schedule term" in capsys.readouterr().err
    assert main(["demo", "--repo", str(tmp_path), "--train-images", "0"]) == 2
    assert "train_images must be at least 1" in capsys.readouterr().err
