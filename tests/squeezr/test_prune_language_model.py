"""Pruning a decoder language model end to end: the loop scores layers by the perplexity the
model has without them (the fast oracle through the language-modelling task), fine-tunes,
records perplexities, and leaves a model that reloads and exports."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from squeezr.blocknet import build, load_model
from squeezr.data import load_dataset
from squeezr.networks.hf import DecoderNet
from squeezr.prune import PruneConfig, make_target
from squeezr.prune.experiment import run_experiment

CONFIG = {
    "model_type": "llama",
    "vocab_size": 40,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 32,
}


@pytest.fixture
def token_folder(tmp_path):
    """A learnable stream: one random phrase of 40 ids, repeated with shifts."""
    phrase = np.random.default_rng(0).integers(0, 40, size=40)
    stream = np.concatenate([np.roll(phrase, k) for k in range(40)]).astype("<u2")
    stream.tofile(tmp_path / "train.bin")
    stream[:400].tofile(tmp_path / "val.bin")
    return tmp_path


def test_a_decoder_is_pruned_by_perplexity_and_reloads(tmp_path, token_folder):
    from squeezr.networks.hf import from_config

    net = from_config(CONFIG, seed=0, seq_len=16)
    dataset = {"name": "text", "data_dir": str(token_folder), "seq_len": 16}
    splits = load_dataset("text", data_dir=token_folder, seq_len=16)
    cfg = PruneConfig(
        target=make_target(blocks=2),
        method="oracle",
        schedule="every:1",
        epochs=1,
        lr=0.05,
        milestones=(),
        batch_size=16,
        device="cpu",
    )
    exp, result = run_experiment(
        net, cfg, repo=tmp_path / "repo", dataset=dataset, splits=splits, progress=False
    )
    results = dict(exp.results)
    assert results["blocks_removed"] == 2 and results["config"] == [2]
    for key in ("initial_val_ppl", "final_val_ppl", "initial_test_ppl", "final_test_ppl"):
        assert math.isfinite(results[key]) and results[key] > 1
    assert results["initial_val_ppl"] == pytest.approx(40, rel=0.5)  # a random model: ~vocab
    # each step's saliency is the validation NLL without that layer, for every layer left
    steps = [e["data"] for e in exp.events("prune/step/") if "saliency" in e["data"]]
    assert sorted(map(int, steps[0]["saliency"])) == [0, 1, 2, 3]
    assert min(steps[0]["saliency"].values()) > 0
    pruned = load_model(exp.attachment_path("model.pt"))
    assert isinstance(pruned, DecoderNet) and len(pruned.block_ids()) == 2
    assert pruned.input_shape == (16,)
    ids = splits.test.x[:2]
    with torch.no_grad():
        torch.testing.assert_close(pruned.eval()(ids), result.model.eval()(ids))


def test_model_sources_fit_the_text_data(token_folder):
    net = build("hf:tiny-gpt2", seed=0, seq_len=16)
    splits = load_dataset("text", data_dir=token_folder, seq_len=16)
    assert splits.num_classes <= net.hf_config.vocab_size


def test_distillation_is_refused_for_language_models(token_folder):
    from squeezr.dbx.errors import UserError
    from squeezr.networks.hf import from_config
    from squeezr.prune import plan_run

    net = from_config(CONFIG, seed=0, seq_len=16)
    splits = load_dataset("text", data_dir=token_folder, seq_len=16)
    cfg = PruneConfig(target=make_target(blocks=1), distill=(0.5, 4.0), device="cpu")
    with pytest.raises(UserError, match="--distill"):
        plan_run(net, splits, cfg)
