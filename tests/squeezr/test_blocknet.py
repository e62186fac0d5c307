"""The block-sequence interface: the CIFAR ResNet through it, a tiny language model written
as an adapter in a few lines (identity bypass, generic counting), tasks and errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from blocknet_contract import Data, check_adapter, check_fast_oracle
from torch import nn

from squeezr import saliency
from squeezr.blocknet import (
    BlockNet,
    ResidualScaled,
    adapt,
    build,
    count_macs,
    from_spec,
    load_model,
    save_model,
)
from squeezr.dbx.errors import UserError
from squeezr.models import ResNet
from squeezr.tasks import ImageClassification, LanguageModelling


class MLPBlock(ResidualScaled, nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 2 * width)
        self.down = nn.Linear(2 * width, width)
        self.residual_scale = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.down(F.gelu(self.up(self.norm(h))))
        if self.residual_scale is not None:
            out = out * self.residual_scale
        return h + out


class TinyLM(BlockNet):
    """Token embedding → residual MLP blocks → norm + vocabulary projection."""

    SPEC_FORMAT = "squeezr.test-tiny-lm/1"
    input_shape = (8,)
    input_name = "input_ids"

    def __init__(self, layers: int = 4, vocab: int = 11, width: int = 8) -> None:
        super().__init__()
        self.layers, self.vocab, self.width = layers, vocab, width
        self.tokens = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleDict({str(i): MLPBlock(width) for i in range(layers)})
        self.norm = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.removed: list[int] = []

    def embed(self, x):
        return self.tokens(x)

    def readout(self, h):
        return self.lm_head(self.norm(h))

    def units(self):
        return [(int(k), m) for k, m in self.blocks.items()]

    def block_ids(self):
        return [int(k) for k in self.blocks]

    def block(self, i):
        if str(i) not in self.blocks:
            raise UserError(f"block {i} has been removed")
        return self.blocks[str(i)]

    def remove_block(self, i):
        self.block(i)
        del self.blocks[str(i)]
        self.removed.append(i)

    def spec(self):
        config = {"layers": self.layers, "vocab": self.vocab, "width": self.width}
        return {"format": self.SPEC_FORMAT, "config": config, "removed": list(self.removed)}

    @classmethod
    def from_spec(cls, spec, *, seed=None):
        model = cls(**spec["config"])
        for i in spec["removed"]:
            model.remove_block(i)
        return model

    def example_input(self, input_shape=None, batch=1):
        return torch.zeros(batch, *(input_shape or self.input_shape), dtype=torch.long)


def scrambled_lm(seed=0) -> TinyLM:
    torch.manual_seed(seed)
    model = TinyLM()
    for p in model.parameters():
        p.data.normal_(0, 0.7)
    return model.eval()


def tokens(n=24, length=8, vocab=11, seed=1) -> torch.Tensor:
    return torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(seed))


def test_tiny_lm_adapter_holds_the_contract():
    check_adapter(scrambled_lm(), tokens())


def test_cifar_resnet_holds_the_contract(tiny_model):
    torch.manual_seed(1)
    for m in tiny_model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
    check_adapter(tiny_model, torch.randn(3, 3, 16, 16))


def test_language_model_oracle_scores_token_nll_fast_as_brute_force():
    model, ids = scrambled_lm(), tokens()
    ctx = saliency.SaliencyContext(task=LanguageModelling(), batch_size=7, stack_images=10)
    check_fast_oracle(model, Data(x=ids, y=ids), ctx)
    # The score is the mean token NLL of the pruned network (perplexity = exp(score)).
    scores = saliency.compute("oracle", model, Data(x=ids, y=ids), ctx)
    pruned = TinyLM.from_spec(model.spec())
    pruned.load_state_dict(model.state_dict())
    pruned.remove_block(2)
    with torch.no_grad():
        logits = pruned.eval()(ids)
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1))
    assert scores[2] == pytest.approx(float(nll), rel=1e-6)


@pytest.mark.parametrize(
    "method",
    ["activation-mean", "activation-change", "activation-change-plus-one", "block-gradient"],
)
def test_data_driven_methods_run_on_any_adapter(method):
    model, ids = scrambled_lm(), tokens()
    ctx = saliency.SaliencyContext(task=LanguageModelling())
    scores = saliency.compute(method, model, Data(x=ids, y=ids), ctx)
    assert set(scores) == set(model.block_ids())
    assert all(s == s for s in scores.values())  # no NaN
    assert all(model.block(i).residual_scale is None for i in model.block_ids())


def test_weights_mean_uses_the_blocks_weight_matrices():
    model = scrambled_lm()
    scores = saliency.compute(
        "weights-mean", model, None, saliency.SaliencyContext(mean=[0], std=[1])
    )
    block = model.block(1)
    expected = torch.cat([block.up.weight.abs().flatten(), block.down.weight.abs().flatten()])
    assert scores[1] == pytest.approx(float(expected.mean()))


def test_generic_mac_count_matches_the_analytic_cifar_count(tiny_model):
    tiny_model.remove_block(2)
    analytic = tiny_model.count_macs((3, 32, 32))
    assert BlockNet.count_macs(tiny_model, (3, 32, 32)) == analytic
    assert BlockNet.block_macs(tiny_model, (3, 32, 32)) == tiny_model.block_macs((3, 32, 32))


def test_generic_counts_of_a_language_model():
    model = TinyLM(layers=3, vocab=11, width=8)
    per_token_block = 8 * 16 + 16 * 8
    assert model.block_macs() == {i: 8 * per_token_block for i in range(3)}
    assert count_macs(model) == 3 * 8 * per_token_block + 8 * 8 * 11
    assert model.config == (3,)


def test_save_and_load_any_family(tmp_path):
    model = scrambled_lm()
    model.remove_block(1)
    loaded = load_model(save_model(model, tmp_path / "lm.pt"))
    assert isinstance(loaded, TinyLM) and loaded.block_ids() == [0, 2, 3]
    ids = tokens(n=2)
    torch.testing.assert_close(loaded.eval()(ids), model(ids))


def test_tasks_score_per_sample():
    task = ImageClassification([0.5] * 3, [0.25] * 3)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    sums, counts = task.score(logits, torch.tensor([0, 0, 1]))
    assert sums.tolist() == [0.0, 1.0, 1.0] and counts.tolist() == [1.0, 1.0, 1.0]
    lm = LanguageModelling()
    ids = torch.tensor([[1, 2, -100]])
    sums, counts = lm.score(torch.zeros(1, 3, 4), ids)
    assert counts.tolist() == [1.0]  # padding (-100) is not scored
    assert sums.item() == pytest.approx(torch.log(torch.tensor(4.0)).item())


def test_unsupported_models_get_one_line_naming_the_interface():
    with pytest.raises(
        UserError, match=r"cannot prune a torch.nn.modules.linear.Linear.*units\(\)"
    ):
        adapt(nn.Linear(2, 2))
    with pytest.raises(UserError, match="not a squeezr network spec"):
        from_spec({"format": "squeezr.no-such-family/1"})
    with pytest.raises(UserError, match="unknown model source"):
        build("nosuchfamily:resnet50")


def test_adapt_returns_block_networks_as_they_are(tiny_model):
    assert adapt(tiny_model) is tiny_model
    assert isinstance(from_spec(ResNet((1, 1, 1)).spec()), ResNet)


def test_training_and_the_pruning_loop_run_on_a_language_model():
    from squeezr.data import DataSplits
    from squeezr.prune import PruneConfig, make_target, prune

    def part(n, seed):
        ids = tokens(n=n, seed=seed)
        return Data(x=ids, y=ids)

    splits = DataSplits(
        name="tokens",
        num_classes=11,
        train=part(40, 1),
        val=part(12, 2),
        test=part(12, 3),
        prune=None,
        mean=(),
        std=(),
        task=LanguageModelling(),
    )
    torch.manual_seed(0)
    model = TinyLM()
    cfg = PruneConfig(
        target=make_target(blocks=2),
        method="block-gradient",
        schedule="every:1",
        epochs=1,
        batch_size=8,
        lr=0.01,
        device="cpu",
    )
    result = prune(model, splits, cfg, progress=False)
    assert len(result.model.block_ids()) == 2
    assert 0 <= result.summary["final_val_acc"] <= 1  # next-token accuracy
    assert result.summary["macs"] == count_macs(result.model)
