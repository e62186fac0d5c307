"""The CLI with another network family and dataset: `squeezr train/prune --from
torchvision:NAME --weights FILE --dataset imagefolder`, and `squeezr export` of the result."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from test_imagefolder import make_folder

from squeezr import dbx
from squeezr.blocknet import load_model
from squeezr.cli import main
from squeezr.networks.torchvision import build

DATA = ["--dataset", "imagefolder", "--resolution", "32", "--device", "cpu"]


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZR_DATA", str(tmp_path / "cache"))
    images = make_folder(tmp_path / "images", train_per_class=10, val_per_class=2)
    torch.manual_seed(0)
    weights = tmp_path / "resnet18-f37072fd.pth"
    torch.save(build("resnet18").state_dict(), weights)  # a torchvision-style weights file
    return tmp_path, images, weights


def test_train_prune_export_a_torchvision_resnet_on_an_image_folder(setup, capsys):
    tmp, images, weights = setup
    repo = str(tmp / "repo")
    argv = ["train", "--from", "torchvision:resnet18", "--weights", str(weights)]
    argv += ["--data-dir", str(images), *DATA, "--epochs", "1", "--batch-size", "16"]
    assert main([*argv, "--repo", repo, "--no-progress", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    exp = dbx.open(trained["id"], repo=repo)
    assert exp.name == "baselines/torchvision-resnet18/0"
    assert exp.params["model"]["source"] == "torchvision:resnet18"
    assert exp.params["dataset_options"]["resolution"] == 32
    model = load_model(exp.attachment_path("model.pt"))
    assert model.fc.out_features == 3  # the weights' 1,000-class classifier was replaced
    argv = [
        "prune",
        "--from",
        exp.id,
        "--target-blocks",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "16",
    ]
    assert main([*argv, "--device", "cpu", "--repo", repo, "--no-progress", "--json"]) == 0
    pruned = json.loads(capsys.readouterr().out)
    assert pruned["blocks_removed"] == 2 and len(pruned["steps"]) == 3  # step 0 + two
    assert (
        main(["export", pruned["id"], "--format", "all", "-o", str(tmp), "--repo", repo, "--json"])
        == 0
    )
    info = json.loads(capsys.readouterr().out)
    assert sorted(info["written"]) == ["module", "onnx", "state-dict", "torchscript"]
    net = load_model(dbx.open(pruned["id"], repo=repo).attachment_path("model.pt")).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(torch.jit.load(info["written"]["torchscript"])(x), net(x))
    module = torch.load(info["written"]["module"], weights_only=False)
    torch.testing.assert_close(module(x), net(x))
    state = torch.load(info["written"]["state-dict"])
    assert set(state) == set(net.state_dict()) and "fc.weight" in state
    onnx.checker.check_model(onnx.load(info["written"]["onnx"]))


def test_prune_a_model_source_directly(setup, capsys):
    tmp, images, weights = setup
    head = build("resnet18", num_classes=3)
    three = tmp / "resnet18-3.pth"
    torch.save(head.state_dict(), three)
    argv = [
        "prune",
        "--from",
        "torchvision:resnet18",
        "--weights",
        str(three),
        "--data-dir",
        str(images),
    ]
    argv += [*DATA, "--target-blocks", "1", "--schedule", "none", "--repo", str(tmp / "repo")]
    assert main([*argv, "--no-progress", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == "prune/torchvision-resnet18/oracle/none" and out["blocks_removed"] == 1
    # 1,000 outputs for 3 classes: one line saying what to do.
    argv[argv.index(str(three))] = str(weights)
    assert main([*argv, "--no-progress"]) == 2
    assert "has 1000 outputs but dataset 'imagefolder' has 3 classes" in capsys.readouterr().err


def test_model_source_errors_are_one_line(setup, capsys):
    tmp, _, weights = setup
    for argv, message in [
        (["train", "--from", "keras:resnet50"], "is not a model source"),
        (["train", "--arch", "resnet20", "--weights", str(weights)], "--weights goes with --from"),
        (
            [
                "prune",
                "--from",
                "torchvision:resnet51",
                "--dataset",
                "digits",
                "--target-blocks",
                "1",
            ],
            "unknown torchvision ResNet",
        ),
    ]:
        assert main([*argv, "--repo", str(tmp / "repo")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
