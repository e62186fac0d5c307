"""The transformers decoder adapter: layers as units called as unit(h), structural removal,
spec round trips, save_pretrained export that transformers reloads with the same logits.

Tiny random models built from configs: nothing is downloaded (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import copy
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from blocknet_contract import Data, check_adapter  # noqa: E402

from squeezr import saliency  # noqa: E402
from squeezr.blocknet import adapt, build, count_params, from_spec, load_model, save_model  # noqa: E402
from squeezr.dbx.errors import UserError  # noqa: E402
from squeezr.networks import hf  # noqa: E402
from squeezr.tasks import LanguageModelling  # noqa: E402

CONFIGS = {
    "llama": {
        "model_type": "llama",
        "vocab_size": 61,
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
    },
    # layers 2 and 3 attend through a sliding window shorter than the sequences below
    "qwen2": {
        "model_type": "qwen2",
        "vocab_size": 61,
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        "use_sliding_window": True,
        "sliding_window": 4,
        "max_window_layers": 2,
    },
    "gpt2": {
        "model_type": "gpt2",
        "vocab_size": 61,
        "n_embd": 32,
        "n_layer": 4,
        "n_head": 4,
        "n_positions": 64,
        "bos_token_id": 0,
        "eos_token_id": 0,
    },
}


@pytest.fixture(params=list(CONFIGS))
def family(request) -> str:
    return request.param


def tiny(family: str, seq_len: int = 12) -> hf.DecoderNet:
    return hf.from_config(CONFIGS[family], seed=0, seq_len=seq_len).eval()


def token_ids(n: int = 3, length: int = 12) -> torch.Tensor:
    return torch.randint(61, (n, length), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("index", [0, 2, 3])
def test_removing_a_layer_equals_bypassing_it(family, index):
    net = tiny(family)
    ids = token_ids()
    with torch.no_grad():
        h = net.embed(ids)
        for i, unit in net.units():
            h = net.bypass(i, h) if i == index else unit(h)
        expected = net.readout(h)
        before, layer = count_params(net), net.block_params()[index]
        net.remove_block(index)
        torch.testing.assert_close(net(ids), expected)
    assert count_params(net) == before - layer
    assert not any(k.startswith(f"blocks.{index}.") for k in net.state_dict())
    assert net.block_ids() == [i for i in range(4) if i != index]


def test_the_net_computes_what_the_transformers_model_computes(family):
    model = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(**CONFIGS[family])
    ).eval()
    ids = token_ids(length=20)
    with torch.no_grad():
        reference = model(input_ids=ids).logits
        net = hf.from_hf(model)
        torch.testing.assert_close(net(ids), reference)


def test_units_take_stacked_streams_of_any_batch(family):
    """The oracle stacks candidate streams along the batch: a unit must treat each alike."""
    net = tiny(family)
    with torch.no_grad():
        h = net.embed(token_ids(2))
        for _, unit in net.units():
            stacked = unit(torch.cat([h, 0.5 * h, -h]))
            torch.testing.assert_close(stacked[:2], unit(h))
            torch.testing.assert_close(stacked[4:], unit(-h))


def test_residual_scale_zero_is_removal(family):
    net = tiny(family)
    ids = token_ids()
    with torch.no_grad():
        plain = net(ids)
        net.set_residual_scale(1, 1.0)
        torch.testing.assert_close(net(ids), plain)
        net.set_residual_scale(1, 0.0)
        zeroed = net(ids)
        net.set_residual_scale(1, None)
        net.remove_block(1)
        torch.testing.assert_close(net(ids), zeroed)


def test_gradients_reach_embeddings_and_residual_scales(family):
    net = tiny(family).train()
    scale = torch.ones((), requires_grad=True)
    net.set_residual_scale(2, scale)
    loss = net(token_ids()).float().logsumexp(-1).mean()
    loss.backward()
    embedding = net.hf.get_input_embeddings().weight
    assert embedding.grad is not None and scale.grad is not None


def test_pruned_model_saved_with_save_pretrained_reloads_with_the_same_logits(tmp_path, family):
    net = tiny(family)
    net.remove_block(2)
    net.remove_block(0)
    folder = hf.save_pretrained(net, tmp_path / "pruned")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    assert reloaded.config.num_hidden_layers == 2
    ids = token_ids(length=20)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, net(ids))
    assert count_params(reloaded) == count_params(net)
    if family == "qwen2":  # the per-layer list follows the kept layers (1: full, 3: sliding)
        assert reloaded.config.layer_types == ["full_attention", "sliding_attention"]
    # the net itself is unchanged by exporting, and a second export replaces the first
    assert net.block_ids() == [1, 3]
    hf.save_pretrained(net, folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned"]


def test_spec_round_trip_and_model_file(tmp_path, family):
    net = tiny(family, seq_len=16)
    net.remove_block(1)
    rebuilt = from_spec(net.spec())
    assert isinstance(rebuilt, hf.DecoderNet)
    assert rebuilt.block_ids() == [0, 2, 3] and rebuilt.input_shape == (16,)
    loaded = load_model(save_model(net, tmp_path / "net.pt")).eval()
    ids = token_ids()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), net(ids))


def test_macs_count_layers_and_attention(family):
    net = tiny(family, seq_len=10)
    total, per_layer = net.count_macs(), net.block_macs()
    dim, t = 32, 10
    attention = 2 * t * t * dim
    assert all(v > attention for v in per_layer.values())
    assert net.count_macs((20,)) > total
    net.remove_block(3)
    assert net.count_macs() == total - per_layer[3]
    with pytest.raises(UserError, match="sequence length"):
        net.count_macs((3, 32, 32))


def test_deep_copies_are_independent(family):
    net = tiny(family)
    clone = copy.deepcopy(net)
    clone.remove_block(0)
    ids = token_ids()
    with torch.no_grad():
        assert net.block_ids() == [0, 1, 2, 3]
        assert clone(ids).shape == net(ids).shape
    assert clone.blocks["1"].arguments is clone.blocks["2"].arguments
    assert clone.blocks["1"].arguments is not net.blocks["1"].arguments


def test_model_sources(tmp_path):
    net = build("hf:tiny-llama", seed=0, seq_len=32)
    assert isinstance(net, hf.DecoderNet) and net.input_shape == (32,)
    config = transformers.AutoConfig.for_model(**CONFIGS["gpt2"])
    config.save_pretrained(tmp_path / "cfg")
    from_config_file = build(f"hf:{tmp_path / 'cfg' / 'config.json'}", seed=0)
    assert len(from_config_file.block_ids()) == 4
    hf.save_pretrained(from_config_file, tmp_path / "model")
    again = build(f"hf:{tmp_path / 'model'}")
    ids = token_ids()
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(ids), from_config_file.eval()(ids))
    with pytest.raises(UserError, match="never downloads"):
        build("hf:meta-llama/Llama-3-8B")
    with pytest.raises(UserError, match="weights from their folder"):
        build("hf:tiny-llama", weights=tmp_path / "w.pt")


def test_a_transformers_object_is_adapted_and_others_are_refused():
    model = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(**CONFIGS["llama"])
    )
    assert isinstance(adapt(model), hf.DecoderNet)
    gemma2 = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(
            "gemma2",
            vocab_size=61,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
        )
    )
    # Gemma 2 soft-caps its logits after the lm_head: not embed → layers → norm → lm_head.
    with pytest.raises(UserError, match="does not compute embed"):
        hf.from_hf(gemma2)


def lm_data(n: int = 6, length: int = 12) -> Data:
    ids = token_ids(n, length)
    return Data(x=ids, y=ids.clone())


def lm_context(**kwargs) -> saliency.SaliencyContext:
    return saliency.SaliencyContext(task=LanguageModelling(), batch_size=4, **kwargs)


def test_adapter_contract(family):
    check_adapter(tiny(family), token_ids())


def test_fast_oracle_scores_perplexity_as_brute_force_does(family):
    """Mean token NLL per removed layer (perplexity = exp), stacked streams vs plain copies;
    a stack cap of 6 makes chunks of one sequence, so streams are stacked and chunked."""
    net = tiny(family)
    data, ctx = lm_data(), lm_context(stack_images=6)
    fast = saliency.compute("oracle", net, data, ctx)
    plain = saliency.brute_force_oracle(net, data, ctx)
    assert fast.keys() == plain.keys() == {0, 1, 2, 3}
    for i in fast:
        assert fast[i] == pytest.approx(plain[i], rel=1e-6), i
    assert all(s > 0 for s in fast.values())


@pytest.mark.parametrize("method", sorted(saliency.METHODS))
def test_every_saliency_method_scores_every_layer(method):
    net = tiny("llama")
    net.remove_block(1)
    scores = saliency.compute(method, net, lm_data(), lm_context())
    assert set(scores) == {0, 2, 3}
    assert all(torch.isfinite(torch.tensor(s)) for s in scores.values())


def test_squeezr_export_writes_a_save_pretrained_folder(tmp_path, capsys):
    from squeezr import dbx
    from squeezr.cli import main

    net = tiny("qwen2")
    net.remove_block(1)
    save_model(net, tmp_path / "model.pt")
    with dbx.create("prune/tiny/oracle", kind="prune", repo=tmp_path / "repo") as exp:
        exp.attach(tmp_path / "model.pt", name="model.pt")
    argv = ["export", "prune/tiny/oracle", "--repo", str(tmp_path / "repo")]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 0  # hf: the default for decoders
    assert "written as hf" in capsys.readouterr().out
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    ids = token_ids()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, net(ids))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main([*argv, "-o", str(tmp_path / "other")]) == 2
    assert "folder with other files" in capsys.readouterr().err
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_large_outputs_cap_evaluation_batches_and_oracle_stacks(family):
    """A task's max_batch (a language model's logits budget) bounds every batch, and the
    oracle still scores as brute force does."""
    task = LanguageModelling()
    task.max_batch = 3
    ctx = saliency.SaliencyContext(task=task, batch_size=100, stack_images=1000)
    assert ctx.oracle_chunk(4) == 1 and ctx.oracle_chunk(1) == 3
    data = lm_data(n=7)
    assert [len(x) for x, _ in saliency.batches(data, ctx)] == [3, 3, 1]
    net = tiny(family)
    fast = saliency.compute("oracle", net, data, ctx)
    plain = saliency.brute_force_oracle(net, data, lm_context())
    assert fast == pytest.approx(plain, rel=1e-6)
