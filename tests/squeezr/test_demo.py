"""``squeezr demo`` in miniature: train on a slice of digits, prune one block, print the table."""

import json

from squeezr import dbx
from squeezr.cli import main


def test_tiny_demo_records_a_train_run_like_squeezr_train_and_a_prune_run(tmp_path, capsys):
    repo = tmp_path / "experiments"
    args = ["demo", "--repo", str(repo), "--train-epochs", "1", "--train-images", "64"]
    args += ["--blocks", "1", "--finetune-epochs", "1", "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for column in ("block", "val_before", "val_after", "test_after", "params_removed_%", "cost"):
        assert column in out
    assert (
        "1 block removed" in out and "for 1 epoch ..." in out and "dbx query 'prune/step/:k" in out
    )
    runs = {e.kind: e for e in dbx.Repository.find(repo).experiments()}
    assert set(runs) == {"train", "prune"}
    train, pruned = runs["train"], runs["prune"]
    # The same params layout as `squeezr train` (one code path), with model.pt attached.
    assert set(train.params) == {
        "arch",
        "config",
        "dataset",
        "data_dir",
        "pruning_set",
        "train_images",
        "train",
    }
    assert train.params["dataset"] == "digits" and train.params["train_images"] == 64
    assert train.params["train.epochs"] == 1 and train.params["train.batch_size"] == 32
    assert "model.pt" in train.attachments
    assert pruned.results["blocks_removed"] == 1
    assert pruned.params["dataset"]["train_images"] == 64
    assert pruned.params["source"]["id"] == train.id


def test_demo_json_rows_start_with_the_trained_network(tmp_path, capsys):
    args = ["demo", "--repo", str(tmp_path), "--train-epochs", "1", "--train-images", "32"]
    args += ["--blocks", "1", "--finetune-epochs", "1", "--device", "cpu", "--no-progress"]
    assert main([*args, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["removed"] for r in rows] == [0, 1]
    assert rows[0]["params_removed_%"] == 0.0 and rows[1]["params_removed_%"] > 0
    # the last step always fine-tunes: 1 epoch run, 0 or 1 kept (0 if the start was best)
    assert rows[1]["finetune"] in ("final 0/1", "final 1/1") and rows[1]["cost"] >= 0


def test_demo_rejects_bad_settings_before_training(tmp_path, capsys):
    cases = [
        (["--blocks", "10"], "impossible for a model with 9 blocks; remove between 1 and 9"),
        (["--blocks", "0"], "impossible for a model with 9 blocks"),
        (["--schedule", "often"], "unknown schedule term"),
        (["--train-images", "0"], "train_images must be at least 1"),
        (["--finetune-lr", "inf"], "lr must be a finite number"),
        (["--device", "tpu"], "unknown device"),
        (["--batch-size", "0"], "batch_size"),
    ]
    for extra, message in cases:
        assert main(["demo", "--repo", str(tmp_path / "r"), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
