"""The trainer on CPU: schedule, best-epoch restore, exact resume, options and bad input."""

import copy
import random
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch
from torch import nn

from squeezr.dbx.errors import UserError
from squeezr.train import TrainConfig, evaluate, fit, resolve_device


def _split(n, g):
    y = torch.randint(0, 4, (n,), generator=g)
    noise = torch.rand(n, 3, 32, 32, generator=g) * 60
    return NS(x=(noise + y[:, None, None, None] * 50).to(torch.uint8), y=y)


@pytest.fixture(scope="module")
def splits():
    """Four easy classes (brightness levels); 256 training images."""
    g = torch.Generator().manual_seed(1)
    return NS(
        train=_split(256, g),
        val=_split(64, g),
        test=_split(64, g),
        mean=[0.45] * 3,
        std=[0.25] * 3,
        num_classes=4,
    )


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


def _cfg(**kw):
    return TrainConfig(**{"epochs": 3, "batch_size": 64, "device": "cpu", **kw})


def _no_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_default_milestones_are_50_and_75_percent(splits):
    assert TrainConfig(epochs=500).resolved_milestones() == (250, 375)
    assert TrainConfig(epochs=50, milestones=()).resolved_milestones() == ()
    assert TrainConfig(epochs=30, milestones=[10, 20]).milestones == (10, 20)
    result = fit(_model(), splits, _cfg(epochs=4, lr=0.2), progress=False)  # drops after 2, 3
    assert [row["lr"] for row in result.history[1:]] == pytest.approx([0.2, 0.2, 0.02, 0.002])


def test_config_round_trips_and_rejects_bad_values():
    cfg = TrainConfig(epochs=7, milestones=(3,), stochastic_depth=0.5)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig(epochs=np.int64(4), lr=1).lr == 1.0  # numpy ints and int lr are fine
    with pytest.raises(UserError, match="unknown training options"):
        TrainConfig.from_dict({"epochz": 3})
    for bad, message in (
        ({"epochs": -1}, "epochs must be a whole number >= 0"),
        ({"epochs": 2.5}, "epochs must be a whole number"),
        ({"epochs": "3"}, "epochs must be a whole number"),
        ({"lr": 0}, r"lr must be a finite number in \(0, inf\]"),
        ({"lr": float("inf")}, "lr must be a finite number"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"lr": True}, "lr must be a finite number"),
        ({"lr_gamma": 2.0}, "lr_gamma"),
        ({"momentum": 1.0}, r"momentum must be a finite number in \[0, 1\)"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 64.0}, "batch_size"),
        ({"checkpoint_every": -1}, "checkpoint_every"),
        ({"stochastic_depth": 1.0}, "stochastic_depth"),
        ({"noise_eta": float("inf")}, "noise_eta"),
        ({"seed": -1}, "seed"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"device": "cuda:x"}, "unknown device"),
        ({"milestones": (0,)}, "milestone must be a whole number >= 1"),
        ({"milestones": (5, 3)}, "milestones must be increasing"),
        ({"milestones": (3, 3)}, "milestones must be increasing"),
        ({"milestones": (2.5,)}, "milestone"),
        ({"milestones": "10,20"}, "milestones must be a list"),
        ({"momentum": 0.0}, "nesterov needs momentum"),
        ({"augment": "yes"}, "augment must be true or false"),
    ):
        with pytest.raises(UserError, match=message):
            TrainConfig(**bad)
    with pytest.raises(UserError, match="must be a mapping"):
        TrainConfig.from_dict([("epochs", 3)])


def test_resolve_device_accepts_known_devices_and_refuses_the_rest():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in ("cpu", "cuda")
    assert resolve_device("auto") == resolve_device(None)
    for bad in ("tpu", "mps", "cuda:x", "", "cpu cuda"):
        with pytest.raises(UserError, match="unknown device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        for absent in ("cuda", "cuda:0", torch.device("cuda")):
            with pytest.raises(UserError, match="no CUDA GPU"):
                resolve_device(absent)
    else:
        with pytest.raises(UserError, match="does not exist"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_fit_learns_logs_the_schedule_and_restores_the_best_epoch(splits):
    model = _model()
    result = fit(model, splits, _cfg(epochs=4, batch_size=32, milestones=(2, 3)), progress=False)
    assert [row["epoch"] for row in result.history] == [0, 1, 2, 3, 4]
    assert [row["lr"] for row in result.history[1:]] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    best = max(result.history[1:], key=lambda r: r["val_acc"])
    assert result.best_val_acc == best["val_acc"] > 0.5
    assert result.history[result.best_epoch]["val_acc"] == result.best_val_acc
    assert result.epochs_run == 4
    # The model now holds the best epoch's weights, and the results are its fp32 evaluation.
    assert evaluate(model, splits.val, mean=splits.mean, std=splits.std) == result.best_val_acc
    assert result.val_acc == result.best_val_acc
    assert result.test_acc == evaluate(model, splits.test, mean=splits.mean, std=splits.std)
    assert result.test_acc == result.history[result.best_epoch]["test_acc"]


def test_restore_best_false_keeps_the_last_epoch_and_true_the_best(splits):
    def run(restore):
        model = _model()
        seen = {}

        def remember(epoch, row):
            seen[epoch] = [p.detach().clone() for p in model.parameters()]

        cfg = _cfg(epochs=3, lr=0.5, milestones=(), restore_best=restore)
        result = fit(model, splits, cfg, progress=False, on_epoch_end=remember)
        return model, seen, result

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    model, seen, _ = run(restore=False)
    assert same(model.parameters(), seen[3])
    model, seen, result = run(restore=True)
    assert same(model.parameters(), seen[result.best_epoch])
    assert any(not same(seen[result.best_epoch], seen[e]) for e in seen)


def test_interrupted_run_resumes_bit_identically(splits, tmp_path):
    cfg = _cfg(epochs=3, seed=3, milestones=(2,))
    reference = _model(5)
    expected = fit(reference, splits, cfg, progress=False)

    state = tmp_path / "resume.pt"

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_model(5), splits, cfg, resume_path=state, progress=False, on_epoch_end=interrupt)
    assert state.exists()
    # A new process: different model object, scrambled global RNGs.
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    resumed_model = _model(77)
    epochs_seen = []
    resumed = fit(
        resumed_model,
        splits,
        cfg,
        resume_path=state,
        progress=False,
        on_epoch_end=lambda e, row: epochs_seen.append(e),
    )
    assert epochs_seen == [2, 3]
    assert _no_seconds(resumed.history) == _no_seconds(expected.history)
    assert resumed.best_epoch == expected.best_epoch
    assert resumed.epochs_run == expected.epochs_run == 3
    ref_state, got_state = reference.state_dict(), resumed_model.state_dict()
    assert all(torch.equal(ref_state[k], got_state[k]) for k in ref_state)
    assert not state.exists()  # removed once finished


def test_resume_state_is_device_portable(splits, tmp_path):
    """A state written on one device continues on another (``--resume --device ...``).

    The trainer's own generators are CPU generators whatever the device, so their states
    load anywhere; the global CUDA RNG states of a GPU run are skipped where those GPUs
    are absent. Simulated here: a state as a 2-GPU run would write it, resumed on the CPU
    with a different ``device`` setting, continues exactly like an uninterrupted run.
    """
    cfg = _cfg(epochs=3, seed=4, device="cpu", milestones=(2,))
    expected = fit(_model(5), splits, cfg, progress=False)
    state_path = tmp_path / "resume.pt"

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_model(5), splits, cfg, resume_path=state_path, progress=False, on_epoch_end=interrupt)
    state = torch.load(state_path, weights_only=True)
    cpu_state_size = torch.Generator().get_state().numel()
    assert state["rng"]["order"].numel() == state["rng"]["augment"].numel() == cpu_state_size
    state["config"]["device"] = "cuda"
    state["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * 2  # as two GPUs would save
    torch.save(state, state_path)
    resumed = fit(
        _model(9),
        splits,
        TrainConfig(**{**cfg.to_dict(), "device": "auto"}),
        resume_path=state_path,
        progress=False,
    )
    assert _no_seconds(resumed.history) == _no_seconds(expected.history)


def test_resume_state_of_an_older_format_is_refused_clearly(splits, tmp_path):
    state_path = tmp_path / "resume.pt"
    torch.save({"format": 1, "config": {}}, state_path)
    with pytest.raises(UserError, match=r"not a resume state of this squeezr version.*delete"):
        fit(_model(), splits, _cfg(), resume_path=state_path, progress=False)


def test_resume_state_from_other_settings_is_refused(splits, tmp_path):
    state = tmp_path / "resume.pt"

    def interrupt(epoch, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), splits, _cfg(), resume_path=state, progress=False, on_epoch_end=interrupt)
    with pytest.raises(UserError, match=r"different settings.*lr"):
        fit(_model(), splits, _cfg(lr=0.05), resume_path=state, progress=False)
    state.write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read resume state"):
        fit(_model(), splits, _cfg(), resume_path=state, progress=False)


def test_freeze_classifier_keeps_the_linear_layer_and_unfreezes_after(splits):
    model = _model()
    before = model[5].weight.detach().clone()
    conv_before = model[0].weight.detach().clone()
    fit(model, splits, _cfg(epochs=1, freeze_classifier=True), progress=False)
    assert torch.equal(model[5].weight, before)
    assert not torch.equal(model[0].weight, conv_before)
    assert all(p.requires_grad for p in model.parameters())


def test_noise_eta_perturbs_conv_weights_in_proportion_to_their_std(splits):
    model = _model()
    w = model[0].weight.detach().clone()
    # lr so small that the epoch itself moves the weights by nothing measurable
    cfg = _cfg(epochs=1, noise_eta=0.1, lr=1e-12, restore_best=False)
    fit(model, splits, cfg, progress=False)
    delta = model[0].weight.detach() - w
    assert 0.05 < (delta.std() / w.std()).item() < 0.2


def test_a_loop_that_only_hurts_restores_the_weights_from_before_the_noise(splits):
    """Epoch 0 is the loop's start *before* the noise: it is evaluated as it was given, and
    with initial_is_candidate restoring epoch 0 gives back exactly those weights."""
    model = _model()
    fit(model, splits, _cfg(epochs=4, batch_size=32, milestones=(2,)), progress=False)
    start = copy.deepcopy(model.state_dict())
    start_val = evaluate(model, splits.val, mean=splits.mean, std=splits.std)
    cfg = _cfg(epochs=1, noise_eta=10.0, lr=1e-12, initial_is_candidate=True, seed=2)
    result = fit(model, splits, cfg, progress=False)
    assert result.history[0]["val_acc"] == start_val
    assert result.history[1]["val_acc"] < start_val  # the noise hurt and training cannot fix it
    assert result.best_epoch == 0 and result.val_acc == start_val
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())


def test_a_loop_killed_before_its_first_epoch_adds_its_noise_once(splits, tmp_path, monkeypatch):
    import squeezr.train

    cfg = _cfg(epochs=2, noise_eta=0.5, seed=2)
    expected = fit(_model(), splits, cfg, progress=False)

    def killed(ctx):
        raise KeyboardInterrupt

    state = tmp_path / "resume.pt"
    monkeypatch.setattr(squeezr.train, "make_epoch_runner", killed)
    with pytest.raises(KeyboardInterrupt):  # epoch 0 recorded, epoch 1 not started
        fit(_model(), splits, cfg, resume_path=state, progress=False)
    monkeypatch.undo()
    resumed = fit(_model(7), splits, cfg, resume_path=state, progress=False)
    assert _no_seconds(resumed.history) == _no_seconds(expected.history)


def test_zero_epochs_only_evaluates(splits):
    model = _model()
    before = [p.clone() for p in model.parameters()]
    result = fit(model, splits, _cfg(epochs=0), progress=False)
    assert result.best_epoch == 0 and len(result.history) == 1
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_bad_input_is_a_user_error(splits):
    with pytest.raises(UserError, match="checkpoint_every needs"):
        fit(_model(), splits, _cfg(checkpoint_every=1), progress=False)
    with pytest.raises(UserError, match="stochastic depth needs a squeezr ResNet"):
        fit(_model(), splits, _cfg(stochastic_depth=0.5), progress=False)
    with pytest.raises(UserError, match="normalisation"):
        evaluate(_model(), splits.val)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA"):
            fit(_model(), splits, _cfg(device="cuda"), progress=False)
