"""The trainer with squeezr's ResNet: stochastic depth, checkpoints, resume of every RNG."""

from pathlib import Path
from types import SimpleNamespace as NS

import pytest
import torch

from squeezr.dbx.errors import UserError
from squeezr.models import ResNet, load_model
from squeezr.train import StochasticDepth, TrainConfig, fit


@pytest.fixture(scope="module")
def splits():
    g = torch.Generator().manual_seed(2)

    def split(n):
        y = torch.randint(0, 3, (n,), generator=g)
        x = torch.rand(n, 3, 32, 32, generator=g) * 80 + y[:, None, None, None] * 60
        return NS(x=x.to(torch.uint8), y=y)

    return NS(train=split(96), val=split(32), test=split(32), mean=[0.5] * 3, std=[0.25] * 3)


def _resnet(seed=0, config=(1, 1, 1)):
    torch.manual_seed(seed)
    return ResNet(config, num_classes=3)


def _cfg(**kw):
    return TrainConfig(**{"epochs": 2, "batch_size": 32, "device": "cpu", **kw})


def test_stochastic_depth_survival_decays_linearly_and_scales_inversely():
    model = _resnet(config=(2, 2, 2))
    sd = StochasticDepth(model, 0.5, torch.device("cpu"), torch.Generator().manual_seed(0))
    expected = [1 - k / 6 * 0.5 for k in range(1, 7)]
    assert sd.survival.tolist() == pytest.approx(expected)
    table = sd.draw(2000)
    assert table.shape == (2000, 6)
    for row in table[:50]:
        sd.use(row)
        scales = torch.stack([model.block(i).residual_scale for i in model.block_ids()])
        assert torch.equal(scales, row)  # the blocks see the drawn row
    on = table > 0
    assert torch.allclose(table[on], (1 / sd.survival).expand_as(table)[on])
    kept = on.float().mean(0)
    assert torch.allclose(kept, sd.survival, atol=0.04)
    sd.reset()
    assert all(model.block(i).residual_scale.item() == 1.0 for i in model.block_ids())
    sd.remove()
    assert all(model.block(i).residual_scale is None for i in model.block_ids())


def test_stochastic_depth_refuses_blocks_already_scaled():
    model = _resnet()
    model.block(0).residual_scale = 0.5
    with pytest.raises(UserError, match="residual_scale"):
        StochasticDepth(model, 0.5, torch.device("cpu"), torch.Generator())


def test_fit_with_stochastic_depth_trains_and_leaves_plain_blocks(splits):
    model = _resnet(config=(2, 2, 2))
    result = fit(model, splits, _cfg(stochastic_depth=0.5), progress=False)
    assert result.history[-1]["train_loss"] > 0
    assert all(model.block(i).residual_scale is None for i in model.block_ids())


def test_checkpoints_every_k_epochs_include_the_initial_weights(splits, tmp_path):
    model = _resnet()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    seen = {}

    def remember(epoch, row):
        seen[epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    fit(
        model,
        splits,
        _cfg(epochs=4, checkpoint_every=2, restore_best=False),
        checkpoint_dir=tmp_path / "ck",
        progress=False,
        on_epoch_end=remember,
    )
    files = sorted(p.name for p in (tmp_path / "ck").glob("epoch-*.pt"))
    assert files == ["epoch-0000.pt", "epoch-0002.pt", "epoch-0004.pt"]
    for epoch, want in ((0, initial), (2, seen[2]), (4, seen[4])):
        got = load_model(tmp_path / "ck" / f"epoch-{epoch:04d}.pt").state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_resume_restores_augmentation_and_stochastic_depth_streams(splits, tmp_path):
    """Interrupt after epoch 1 of 3 (SD + augmentation + noise) and resume: identical result."""
    cfg = _cfg(epochs=3, stochastic_depth=0.3, noise_eta=0.05, milestones=(2,))
    reference = _resnet(4)
    expected = fit(reference, splits, cfg, progress=False)

    def interrupt(epoch, row):
        if epoch == 1:
            raise RuntimeError("killed")

    state = tmp_path / "state.pt"
    with pytest.raises(RuntimeError, match="killed"):
        fit(_resnet(4), splits, cfg, resume_path=state, progress=False, on_epoch_end=interrupt)
    resumed_model = _resnet(99)
    resumed = fit(resumed_model, splits, cfg, resume_path=state, progress=False)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in expected.history]
    want, got = reference.state_dict(), resumed_model.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_resume_state_of_another_shape_is_refused(splits, tmp_path):
    state = tmp_path / "state.pt"

    def interrupt(epoch, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_resnet(), splits, _cfg(), resume_path=state, progress=False, on_epoch_end=interrupt)
    with pytest.raises(UserError, match="different model shape"):
        fit(_resnet(config=(1, 2, 1)), splits, _cfg(), resume_path=state, progress=False)


class RecordingExperiment:
    """The slice of the dbx Experiment API that fit uses, recording every call."""

    def __init__(self, path):
        self.path = path
        self.results = {"mine": 1}
        self.events = []
        self.files = {}

    def log(self, name, **data):
        self.events.append((name, data))

    def attach(self, path, name=None):
        target = self.path / "files" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(path).read_bytes())
        self.files[name] = target
        return {"path": f"files/{name}", "size": target.stat().st_size, "sha256": "x"}


def test_fit_in_an_experiment_with_a_prefix_leaves_results_alone(splits, tmp_path):
    """The pruner's fine-tuning loops: prefixed events and checkpoints, results untouched."""
    exp = RecordingExperiment(tmp_path)
    resume_files = []

    def look(epoch, row):
        resume_files.append(sorted(p.name for p in tmp_path.glob("resume-*.pt")))

    prefix = "prune/step/3/finetune"
    cfg = _cfg(epochs=2, checkpoint_every=2)
    result = fit(_resnet(), splits, cfg, exp=exp, prefix=prefix, progress=False, on_epoch_end=look)
    assert resume_files == [["resume-prune-step-3-finetune.pt"]] * 2
    assert not list(tmp_path.glob("resume-*.pt"))
    assert exp.results == {"mine": 1}
    names = [name for name, _ in exp.events]
    assert names == [
        f"{prefix}/epoch/0",
        f"{prefix}/checkpoint/0",
        f"{prefix}/epoch/1",
        f"{prefix}/epoch/2",
        f"{prefix}/checkpoint/2",
        f"{prefix}/result",
    ]
    assert set(exp.events[2][1]) == {
        "train_loss",
        "train_acc",
        "val_acc",
        "test_acc",
        "lr",
        "seconds",
    }
    final = exp.events[-1][1]
    assert final["best_epoch"] == result.best_epoch and final["params"] > 0 and final["macs"] > 0
    assert sorted(exp.files) == [
        f"checkpoints/{prefix}/epoch-0000.pt",
        f"checkpoints/{prefix}/epoch-0002.pt",
    ]
    assert load_model(exp.files[f"checkpoints/{prefix}/epoch-0002.pt"]).config == (1, 1, 1)


def test_fit_as_training_sets_the_experiment_results(splits, tmp_path):
    exp = RecordingExperiment(tmp_path)
    result = fit(_resnet(), splits, _cfg(epochs=1), exp=exp, progress=False)
    assert exp.results["best_epoch"] == result.best_epoch == 1
    assert exp.results["test_acc"] == result.test_acc == result.history[1]["test_acc"]
    assert exp.results["epochs"] == 1 and exp.results["seconds"] == result.seconds
    assert exp.results["params"] == sum(p.numel() for p in _resnet().parameters())
