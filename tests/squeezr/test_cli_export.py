"""``squeezr export``: a finished experiment's network as TorchScript, ONNX or a state dict."""

import json

import onnx
import pytest
import torch

from squeezr import dbx
from squeezr.cli import main
from squeezr.models import ResNet, save_model


@pytest.fixture
def repo(tmp_path):
    """One finished experiment (a pruned-shape network attached as model.pt), one unfinished."""
    path = tmp_path / "repo"
    torch.manual_seed(0)
    model = ResNet((1, 2, 1), num_classes=4)
    model.remove_block(1)
    save_model(model, tmp_path / "model.pt")
    with dbx.create("prune/base/oracle", kind="prune", repo=path) as exp:
        exp.attach(tmp_path / "model.pt", name="model.pt")
    with dbx.create("train/unfinished", kind="train", repo=path):
        pass
    return path


def _export(repo, *argv):
    return main(["export", "prune/base/oracle", "--repo", str(repo), *argv])


def test_the_three_formats_load_with_plain_torch_and_onnx(repo, tmp_path, capsys):
    exp = dbx.open("prune/base/oracle", repo=repo)
    model = ResNet.from_spec(torch.load(exp.attachment_path("model.pt"))["spec"])
    model.load_state_dict(torch.load(exp.attachment_path("model.pt"))["state_dict"])
    model.eval()
    x = torch.randn(2, 3, 32, 32)

    assert _export(repo, "--output", str(tmp_path / "net.ts"), "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["id"], info["format"], info["config"]) == (exp.id, "torchscript", [1, 1, 1])
    scripted = torch.jit.load(info["path"])
    assert torch.allclose(scripted(x), model(x), atol=1e-5)

    assert _export(repo, "--format", "onnx", "--output", str(tmp_path)) == 0
    out = capsys.readouterr().out
    written = tmp_path / f"prune-base-oracle-{exp.id[:8]}.onnx"
    assert str(written) in out and "blocks per group 1-1-1" in out
    onnx.checker.check_model(onnx.load(written))

    assert _export(repo, "--format", "state-dict", "-o", str(tmp_path / "sd.pt")) == 0
    state = torch.load(tmp_path / "sd.pt")
    rebuilt = ResNet.from_spec(model.spec())
    rebuilt.load_state_dict(state)
    rebuilt.eval()
    assert torch.allclose(rebuilt(x), model(x))


def test_unfinished_experiments_and_bad_paths_are_one_line_errors(repo, tmp_path, capsys):
    assert main(["export", "train/unfinished", "--repo", str(repo)]) == 2
    assert "has no trained network (model.pt) yet" in capsys.readouterr().err
    assert _export(repo, "-o", str(tmp_path / "missing" / "x.pt")) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        _export(repo, "--format", "tflite")
    assert exited.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
