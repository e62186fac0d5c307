"""The fast path: its maths on CPU (no graph, fp32) and, on a CUDA machine, the real thing."""

import copy
from types import SimpleNamespace as NS

import pytest
import torch

from squeezr.fastpath import FastEpochRunner, sgd_step_
from squeezr.models import ResNet
from squeezr.train import PlainEpochRunner, TrainConfig, fit, make_epoch_runner

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
        model = ResNet((1, 1, 1), num_classes=3)
        opt = torch.optim.SGD(
            model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4
        )
        gens = (torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))
        runners.append(
            cls(model, opt, split, [0.5] * 3, [0.25] * 3, cfg, torch.device("cpu"), *gens, None)
        )
    return runners


def test_fast_runner_step_equals_the_plain_runner_on_cpu():
    """Same data order, no augmentation, full batches: same training up to float rounding."""
    plain, fast = _runner_pair()
    for _ in range(2):
        (lp, ap), (lf, af) = plain.run(), fast.run()
        assert lf == pytest.approx(lp, rel=1e-4)
        assert af == ap
    a, b = plain.model.state_dict(), fast.model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3) for k in a)
    # Momentum lives in torch.optim.SGD's state, so resume states are interchangeable.
    assert all("momentum_buffer" in fast.optimizer.state[p] for p in fast.params)


def test_fast_runner_drops_the_last_partial_batch():
    _, fast = _runner_pair(n=100, batch=32)
    assert fast.steps == 3 and fast.images_per_epoch == 96


def test_cpu_always_uses_the_plain_runner():
    _, fast = _runner_pair()
    runner = make_epoch_runner(
        fast.model,
        fast.optimizer,
        NS(x=fast.x, y=fast.y),
        [0.5] * 3,
        [0.25] * 3,
        TrainConfig(fast=True, device="cpu"),
        torch.device("cpu"),
        torch.Generator(),
        torch.Generator(),
    )
    assert isinstance(runner, PlainEpochRunner)


@pytest.mark.gpu
@cuda
def test_graph_replay_matches_the_eager_fast_step():
    from squeezr.data import load_dataset

    splits = load_dataset("digits")
    cfg = TrainConfig(epochs=1, device="cuda", augment=False)
    device = torch.device("cuda")
    results = []
    torch.manual_seed(0)
    base = ResNet((2, 2, 2), num_classes=splits.num_classes).to(device)
    for graphed in (True, False):
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        runner = FastEpochRunner(
            model,
            opt,
            splits.train,
            splits.mean,
            splits.std,
            cfg,
            device,
            torch.Generator().manual_seed(1),
            torch.Generator(device=device).manual_seed(2),
            None,
        )
        assert (runner.graph is not None) == runner.cuda
        if not graphed:
            runner.graph = None
        results.append((runner.run(), model.state_dict()))
    (loss_g, acc_g), state_g = results[0]
    (loss_e, acc_e), state_e = results[1]
    assert loss_g == pytest.approx(loss_e, rel=0.05)
    assert abs(acc_g - acc_e) < 0.05
    for k in state_g:
        if state_g[k].is_floating_point():
            assert torch.allclose(state_g[k], state_e[k], atol=0.05, rtol=0.05), k


@pytest.mark.gpu
@cuda
def test_fast_path_trains_digits_as_well_as_the_plain_path():
    from squeezr.data import load_dataset

    splits = load_dataset("digits")
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
def test_fast_path_resume_continues_from_the_saved_state(tmp_path):
    from squeezr.data import load_dataset

    splits = load_dataset("digits")
    cfg = TrainConfig(epochs=3, device="cuda", stochastic_depth=0.2)

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
        cfg,
        resume_path=tmp_path / "s.pt",
        progress=False,
        on_epoch_end=lambda e, row: seen.append(e),
    )
    assert seen == [2, 3] and len(result.history) == 4
    assert result.best_val_acc > 0.5
