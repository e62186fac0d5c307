"""Saliency methods against independent reference computations on tiny ResNets."""

import copy
from types import SimpleNamespace as NS

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from squeezr import saliency
from squeezr.dbx.errors import UserError
from squeezr.models import ResNet
from squeezr.saliency import SaliencyContext, bypass, prepare
from squeezr.train import evaluate

MEAN, STD = [0.5, 0.4, 0.45], [0.25, 0.2, 0.3]


class Split(NS):
    def __len__(self):
        return len(self.y)


def make_split(n, seed=0, size=16, classes=4):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    noise = torch.rand(n, 3, size, size, generator=g) * 120
    return Split(x=(noise + y[:, None, None, None] * 40).to(torch.uint8), y=y, mean=MEAN, std=STD)


def scrambled(config, seed=0, classes=4):
    """A random network whose blocks differ a lot (random BN affine and running statistics)."""
    torch.manual_seed(seed)
    model = ResNet(config, num_classes=classes)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.2, 1.5)
            m.bias.data.normal_(0, 0.3)
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def ctx(**kw):
    return SaliencyContext(mean=MEAN, std=STD, **kw)


@pytest.fixture(scope="module")
def data():
    return make_split(96)


@pytest.mark.parametrize(
    ("config", "removed"),
    [
        ((2, 2, 2), []),
        ((2, 2, 2), [2, 5]),
        ((2, 0, 2), []),
    ],  # plain; leftover shortcuts; empty group
)
def test_fast_oracle_equals_brute_force(data, config, removed):
    model = scrambled(config, seed=3)
    for i in removed:
        model.remove_block(i)
    fast = saliency.compute("oracle", model, data, ctx(batch_size=40))  # chunks: 40, 40, 16
    plain = saliency.brute_force_oracle(model, data, ctx())
    assert fast.keys() == set(model.block_ids())
    assert fast == pytest.approx(plain, abs=1e-12)
    assert saliency.lowest(fast, 1) == saliency.lowest(plain, 1)
    assert len(set(fast.values())) > 1  # the comparison is not vacuous


def test_oracle_stack_budget_sets_the_chunk_and_not_the_scores(data):
    model = scrambled((2, 2, 2), seed=3)  # 6 candidates
    stem_calls = []
    hook = model.stem.register_forward_hook(lambda _m, inp, _o: stem_calls.append(len(inp[0])))
    try:
        small = saliency.compute("oracle", model, data, ctx(batch_size=40, stack_images=60))
    finally:
        hook.remove()
    assert stem_calls == [10] * 9 + [6]  # 60 // 6 candidates = 10 images per chunk
    assert small == pytest.approx(saliency.compute("oracle", model, data, ctx()), abs=1e-12)


@pytest.mark.parametrize(
    ("kw", "candidates", "chunk"),
    [
        ({}, 54, 7),  # CPU default budget 384
        ({"device": torch.device("cuda")}, 54, 1000),  # CUDA: 65,536 // 54 > 1,000
        ({"device": torch.device("cuda"), "batch_size": 5000}, 54, 1213),
        ({"stack_images": 10}, 54, 1),  # never below one image
        ({"batch_size": 3}, 2, 3),  # never above batch_size
    ],
)
def test_oracle_chunk(kw, candidates, chunk):
    assert ctx(**kw).oracle_chunk(candidates) == chunk


def test_brute_force_oracle_is_error_of_the_pruned_model(data):
    model = scrambled((2, 2, 2), seed=3)
    scores = saliency.brute_force_oracle(model, data, ctx())
    for i in (0, 2, 5):  # plain and downsampling blocks
        pruned = copy.deepcopy(model)
        pruned.remove_block(i)
        assert scores[i] == pytest.approx(1 - evaluate(pruned, data, mean=MEAN, std=STD))


def test_bypass_matches_removal(data):
    model = scrambled((2, 2, 2))
    x = prepare(data.x[:8], ctx())
    for i in model.block_ids():
        pruned = copy.deepcopy(model)
        pruned.remove_block(i)
        h = model.stem(x)
        for idx, unit in model.units():
            h = bypass(model, i, h) if idx == i else unit(h)
        torch.testing.assert_close(model.head(h), pruned(x))


def test_block_gradient_equals_finite_differences(data):
    model = scrambled((2, 1, 1), seed=1).double()
    c = ctx(dtype=torch.float64, grad_batch_size=len(data))  # the whole set: order-free loss
    scores = saliency.compute("block-gradient", model, data, c)
    x, y = prepare(data.x, c), data.y
    h = 1e-7  # small: a ReLU kink can sit within 1e-6 of m = 1

    def loss(block, scale):
        model.block(block).residual_scale = scale
        try:
            with torch.no_grad():
                return float(F.cross_entropy(model(x), y))
        finally:
            model.block(block).residual_scale = None

    for i in model.block_ids():
        fd = (loss(i, 1 + h) - loss(i, 1 - h)) / (2 * h)
        assert scores[i] == pytest.approx(abs(fd), rel=1e-4)
    assert all(model.block(i).residual_scale is None for i in model.block_ids())


def test_block_gradient_max_negates(data):
    model = scrambled((2, 2, 2))
    grad = saliency.compute("block-gradient", model, data, ctx())
    worst = saliency.compute("block-gradient-max", model, data, ctx())
    assert worst == {i: -s for i, s in grad.items()}


def _block_io(model, data, c):
    """Input and output of every unit over the whole set in one batch, by forward hooks."""
    io = {}
    hooks = [
        unit.register_forward_hook(lambda m, a, out, p=p: io.__setitem__(p, (a[0], out)))
        for p, (_, unit) in enumerate(model.units())
    ]
    with torch.no_grad():
        model(prepare(data.x, c))
    for hook in hooks:
        hook.remove()
    return io


def test_activation_methods_match_hooks(data):
    model = scrambled((2, 2, 2), seed=2)
    model.remove_block(3)  # a leftover unit in the middle
    c = ctx(batch_size=32)
    io = _block_io(model, data, c)
    units = model.units()
    mean = saliency.compute("activation-mean", model, data, c)
    change = saliency.compute("activation-change", model, data, c)
    plus_one = saliency.compute("activation-change-plus-one", model, data, c)
    with torch.no_grad():
        for p, (i, _) in enumerate(units):
            if i not in model.block_ids():
                continue
            inp, out = io[p]
            assert mean[i] == pytest.approx(float(out.abs().mean()), rel=1e-5)
            assert change[i] == pytest.approx(
                float(F.mse_loss(out, bypass(model, i, inp))), rel=1e-5
            )
            nxt = units[p + 1][1] if p + 1 < len(units) else model.head
            ref = F.mse_loss(nxt(out), nxt(bypass(model, i, inp)))
            assert plus_one[i] == pytest.approx(float(ref), rel=1e-5)


def test_activation_change_plus_one_runs_each_unit_once_per_block_it_compares(data):
    """The next unit's output with the block is the forward pass's own next step: it is
    shared, so each unit runs once for the forward pass and once more only for the bypassed
    activation of the block before it."""
    model = scrambled((2, 2, 2))
    calls = {p: 0 for p in range(len(model.units()))}
    hooks = [
        unit.register_forward_hook(lambda *_, p=p: calls.__setitem__(p, calls[p] + 1))
        for p, (_, unit) in enumerate(model.units())
    ]
    try:
        saliency.compute("activation-change-plus-one", model, data, ctx(batch_size=48))
    finally:
        for hook in hooks:
            hook.remove()
    chunks = 2  # 96 images in chunks of 48
    assert calls == {0: chunks, **{p: 2 * chunks for p in range(1, len(model.units()))}}

    model = scrambled((1, 1, 1))
    scores = saliency.compute("weights-mean", model, None, ctx())
    block = model.block(1)  # downsampling: its shortcut conv is excluded
    ref = torch.cat([block.conv1.weight.abs().flatten(), block.conv2.weight.abs().flatten()])
    assert scores[1] == pytest.approx(float(ref.detach().mean()))


def test_random_is_seeded():
    model = scrambled((2, 2, 2))
    a = saliency.compute("random", model, None, ctx(generator=torch.Generator().manual_seed(5)))
    b = saliency.compute("random", model, None, ctx(generator=torch.Generator().manual_seed(5)))
    c = saliency.compute("random", model, None, ctx(generator=torch.Generator().manual_seed(6)))
    assert a == b != c


def test_every_spec_method_is_registered_and_scores_every_block(data):
    expected = {
        "oracle",
        "activation-mean",
        "activation-change",
        "activation-change-plus-one",
        "block-gradient",
        "block-gradient-max",
        "weights-mean",
        "random",
    }
    assert expected <= set(saliency.METHODS)
    model = scrambled((2, 2, 2))
    model.remove_block(0)
    for name in expected:
        assert saliency.compute(name, model, data, ctx()).keys() == set(model.block_ids())


def test_a_new_method_is_one_decorated_function(data):
    @saliency.method("test-depth", needs_data=False)
    def depth(model, data, ctx):
        """Later blocks matter less (test only)."""
        return {i: -i for i in model.block_ids()}

    try:
        scores = saliency.compute("test-depth", scrambled((1, 1, 1)), None, ctx())
        assert saliency.lowest(scores, 2) == [2, 1]
    finally:
        del saliency.METHODS["test-depth"]


def test_lowest_breaks_ties_by_index():
    assert saliency.lowest({4: 0.1, 2: 0.1, 7: 0.0}, 2) == [7, 2]


def test_compute_restores_training_mode(data):
    model = scrambled((1, 1, 1)).train()
    saliency.compute("oracle", model, data, ctx())
    assert model.training


def test_bad_input():
    model = scrambled((1, 1, 1))
    with pytest.raises(UserError, match="unknown saliency method 'magic'"):
        saliency.compute("magic", model, None, ctx())
    with pytest.raises(UserError, match="needs selection data"):
        saliency.compute("oracle", model, make_split(0), ctx())


def test_scoring_runs_without_cudnn_autotuning_and_restores_it(monkeypatch):
    seen = []

    @saliency.method("test-flag", needs_data=False)
    def flag(model, data, ctx):
        """Records the autotuning flag (test only)."""
        seen.append(torch.backends.cudnn.benchmark)
        return {i: 0.0 for i in model.block_ids()}

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    try:
        saliency.compute("test-flag", scrambled((1, 1, 1)), None, ctx())
    finally:
        del saliency.METHODS["test-flag"]
    assert seen == [False]
    assert torch.backends.cudnn.benchmark is True
