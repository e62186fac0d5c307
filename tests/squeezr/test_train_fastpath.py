"""The fast path: its maths and capture fallback on CPU (no graph, fp32) and, on a CUDA
machine, the real thing (graph replay vs eager, resume across devices, scoped side effects)."""

import copy
from types import SimpleNamespace as NS

import pytest
import torch

from squeezr.dbx.errors import UserError
from squeezr.fastpath import FastEpochRunner, sgd_step_
from squeezr.models import ResNet
from squeezr.train import (
    EpochContext,
    PlainEpochRunner,
    TrainConfig,
    evaluate,
    fit,
    make_epoch_runner,
)

CPU = torch.device("cpu")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_step_matches_torch_sgd(nesterov):
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(5, 3, generator=g), torch.randn(7, generator=g)]
    ours = [p.clone() for p in params]
    theirs = [p.clone().requires_grad_() for p in params]
    opt = torch.optim.SGD(theirs, lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=1e-3)
    bufs = [torch.zeros_like(p) for p in params]
    for step in range(4):
        grads = [torch.randn(p.shape, generator=g) for p in params]
        lr = 0.1 / (step + 1)
        for group in opt.param_groups:
            group["lr"] = lr
        for t, grad in zip(theirs, grads, strict=True):
            t.grad = grad.clone()
        opt.step()
        sgd_step_(
            ours,
            [gr.clone() for gr in grads],
            bufs,
            torch.tensor(lr),
            momentum=0.9,
            nesterov=nesterov,
            weight_decay=1e-3,
        )
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b.detach(), atol=1e-6)


def _context(model, split, cfg, device=CPU, lr=0.1):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
    return EpochContext(
        model=model,
        optimizer=opt,
        split=split,
        mean=[0.5] * 3,
        std=[0.25] * 3,
        cfg=cfg,
        device=device,
        order_gen=torch.Generator().manual_seed(1),
        aug_gen=torch.Generator().manual_seed(2),
    )


def _runner_pair(n=96, batch=32):
    g = torch.Generator().manual_seed(0)
    split = NS(
        y=torch.randint(0, 3, (n,), generator=g),
        x=torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
    )
    cfg = TrainConfig(epochs=2, batch_size=batch, augment=False, device="cpu")
    runners = []
    for cls in (PlainEpochRunner, FastEpochRunner):
        torch.manual_seed(0)
        runners.append(cls(_context(ResNet((1, 1, 1), num_classes=3), split, cfg)))
    return runners


def _same_state(runner, before) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, runner._state_tensors(), strict=True))


def test_fast_runner_step_equals_the_plain_runner_on_cpu():
    """Same data order, no augmentation, full batches: same training up to float rounding."""
    plain, fast = _runner_pair()
    for _ in range(2):
        (lp, ap), (lf, af) = plain.run(), fast.run()
        assert lf == pytest.approx(lp, rel=1e-4)
        assert af == ap
    a, b = plain.ctx.model.state_dict(), fast.model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3) for k in a)
    # Momentum lives in torch.optim.SGD's state, so resume states are interchangeable.
    assert all("momentum_buffer" in fast.optimizer.state[p] for p in fast.params)


def test_fast_runner_drops_the_last_partial_batch():
    _, fast = _runner_pair(n=100, batch=32)
    assert fast.steps == 3 and fast.images_per_epoch == 96


def test_cpu_always_uses_the_plain_runner():
    _, fast = _runner_pair()
    cfg = TrainConfig(fast=True, device="cpu", batch_size=32)
    runner = make_epoch_runner(_context(fast.model, NS(x=fast.x, y=fast.y), cfg))
    assert isinstance(runner, PlainEpochRunner)


@pytest.mark.parametrize("error", [RuntimeError, ValueError])
def test_failed_capture_restores_the_state_and_falls_back_to_eager(error):
    plain, fast = _runner_pair()
    before = [t.detach().clone() for t in fast._state_tensors()]

    def broken_capture():
        for _ in range(3):
            fast._step()  # the warm-up changes weights, BN statistics and momentum
        raise error("operation not permitted when stream is capturing\nCUDA kernel errors ...")

    with pytest.warns(UserWarning, match=r"capture failed \(operation not permitted when stream"):
        graph = fast._try_capture(broken_capture)
    assert graph is None
    assert _same_state(fast, before)
    # The eager fallback then trains exactly like the plain runner from the same start.
    (lp, ap), (lf, af) = plain.run(), fast.run()
    assert lf == pytest.approx(lp, rel=1e-4) and af == ap


def test_successful_capture_also_undoes_the_warm_up():
    _, fast = _runner_pair()
    before = [t.detach().clone() for t in fast._state_tensors()]
    graph = object()

    def capture():
        fast._step()
        return graph

    assert fast._try_capture(capture) is graph
    assert _same_state(fast, before)


def test_a_gpu_broken_by_the_capture_is_a_clear_error(monkeypatch):
    _, fast = _runner_pair()
    fast.cuda = True  # pretend, so that the runner synchronises the device after capture

    def broken_device(device=None):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch.cuda, "synchronize", broken_device)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: "default stream")
    monkeypatch.setattr(torch.cuda, "set_stream", lambda stream: None)

    def failing_capture():
        raise RuntimeError("capture failed")

    expected_error = pytest.raises(UserError, match=r"illegal memory access.*--no-fast")
    with pytest.warns(UserWarning, match="capture failed"), expected_error:
        fast._try_capture(failing_capture)


def test_a_failed_capture_puts_the_current_stream_back(monkeypatch):
    """torch.cuda.graph ends a capture before it switches back from its side stream; when
    that fails, the runner itself must make the stream it started on current again."""
    _, fast = _runner_pair()
    fast.cuda = True  # pretend: the stream handling is what is tested
    streams = {"current": "default stream"}
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: streams["current"])
    monkeypatch.setattr(torch.cuda, "set_stream", lambda s: streams.__setitem__("current", s))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)

    def capture_failing_on_the_side_stream():
        torch.cuda.set_stream("capture stream")
        raise RuntimeError("capture_end failed")

    with pytest.warns(UserWarning, match="capture failed"):
        assert fast._try_capture(capture_failing_on_the_side_stream) is None
    assert streams["current"] == "default stream"


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_close_gives_the_model_back_in_its_own_memory_format(memory_format):
    """The pruner keeps its model channels_last on CUDA; a fine-tuning loop must not undo it."""
    g = torch.Generator().manual_seed(0)
    split = NS(
        y=torch.randint(0, 3, (64,), generator=g),
        x=torch.randint(0, 256, (64, 3, 32, 32), generator=g, dtype=torch.uint8),
    )
    model = ResNet((1, 1, 1), num_classes=3).to(memory_format=memory_format)
    cfg = TrainConfig(batch_size=32, device="cpu")
    runner = FastEpochRunner(_context(model, split, cfg))
    runner.cuda = True  # pretend: close() undoes what the runner changes on a GPU
    model.to(memory_format=torch.channels_last)  # as the runner does on a GPU
    runner.close()
    assert all(
        p.is_contiguous(memory_format=memory_format) for p in model.parameters() if p.dim() == 4
    )


def _digits():
    from squeezr.data import load_dataset

    return load_dataset("digits")


def _train_fast(base, splits, cfg, *, graphed: bool, follow_schedule: bool = True):
    """Two epochs of the fast runner on a copy of ``base``; returns (state, lrs used)."""
    device = torch.device("cuda")
    model = copy.deepcopy(base).to(device)
    ctx = _context(model, splits.train, cfg, device, lr=cfg.lr)
    ctx.mean, ctx.std = splits.mean, splits.std
    sched = torch.optim.lr_scheduler.MultiStepLR(ctx.optimizer, [1], 0.1)
    runner = FastEpochRunner(ctx)
    assert runner.graph is not None
    if not graphed:
        runner.graph = None
    lrs = []
    for _ in range(2):
        lrs.append(ctx.optimizer.param_groups[0]["lr"])
        runner.run()
        if follow_schedule:
            sched.step()
    runner.close()
    return {k: v.detach().float().cpu() for k, v in model.state_dict().items()}, lrs


@pytest.mark.gpu
@cuda
def test_graph_replay_matches_eager_over_two_epochs_with_a_milestone():
    """Tight check that the graph replays the real step, learning-rate change included: a
    graph that kept the first epoch's lr would be far outside the tolerance (checked too)."""
    splits = _digits()
    cfg = TrainConfig(epochs=2, lr=0.1, milestones=(1,), device="cuda", seed=0)
    torch.manual_seed(0)
    base = ResNet((2, 2, 2), num_classes=splits.num_classes)
    init = {k: v.float() for k, v in base.state_dict().items()}
    deterministic = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True
    try:
        graphed, lrs = _train_fast(base, splits, cfg, graphed=True)
        eager, eager_lrs = _train_fast(base, splits, cfg, graphed=False)
        stale, _ = _train_fast(base, splits, cfg, graphed=True, follow_schedule=False)
    finally:
        torch.backends.cudnn.deterministic = deterministic
    assert lrs == eager_lrs == pytest.approx([0.1, 0.01])
    weights = [k for k in init if k.endswith("weight")]
    for k in weights:
        moved = (eager[k] - init[k]).norm()
        assert (graphed[k] - eager[k]).norm() <= 1e-3 * moved + 1e-6, k
    stale_gap = sum((stale[k] - eager[k]).norm() for k in weights)
    total_moved = sum((eager[k] - init[k]).norm() for k in weights)
    assert stale_gap > 0.05 * total_moved  # the tolerance above really detects a stale lr


@pytest.mark.gpu
@cuda
def test_fast_path_trains_digits_as_well_as_the_plain_path():
    splits = _digits()
    accuracies = {}
    for fast in (True, False):
        torch.manual_seed(0)
        model = ResNet((3, 3, 3), num_classes=splits.num_classes)
        cfg = TrainConfig(epochs=15, device="cuda", fast=fast, seed=0)
        accuracies[fast] = fit(model, splits, cfg, progress=False).test_acc
    assert accuracies[False] > 0.85
    assert accuracies[True] > accuracies[False] - 0.05


@pytest.mark.gpu
@cuda
def test_fast_fit_restores_global_settings_and_reports_an_fp32_evaluation():
    splits = _digits()
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        torch.manual_seed(0)
        model = ResNet((2, 2, 2), num_classes=splits.num_classes)
        result = fit(model, splits, TrainConfig(epochs=2, device="cuda"), progress=False)
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = benchmark
    assert all(p.is_contiguous() for p in model.parameters())
    test = evaluate(model, splits.test, mean=splits.mean, std=splits.std)  # fp32
    val = evaluate(model, splits.val, mean=splits.mean, std=splits.std)
    assert result.test_acc == test and result.val_acc == val == result.best_val_acc


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize(("first", "then"), [("cuda", "cpu"), ("cpu", "cuda")])
def test_fast_path_resume_continues_on_another_device(tmp_path, first, then):
    splits = _digits()
    cfg = TrainConfig(epochs=3, device=first, stochastic_depth=0.2)

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    torch.manual_seed(0)
    model = ResNet((2, 2, 2), num_classes=splits.num_classes)
    with pytest.raises(KeyboardInterrupt):
        fit(model, splits, cfg, resume_path=tmp_path / "s.pt", on_epoch_end=interrupt)
    seen = []
    result = fit(
        ResNet((2, 2, 2), num_classes=splits.num_classes),
        splits,
        TrainConfig(**{**cfg.to_dict(), "device": then}),
        resume_path=tmp_path / "s.pt",
        progress=False,
        on_epoch_end=lambda e, row: seen.append(e),
    )
    assert seen == [2, 3] and len(result.history) == 4
    assert result.best_val_acc > 0.5
