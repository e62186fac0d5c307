"""The CLI with the transformer families: `squeezr train/prune --from hf:... --dataset text`
and `--from vit:...`, and `squeezr export` of a pruned decoder as a save_pretrained folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from squeezr import dbx  # noqa: E402
from squeezr.blocknet import load_model  # noqa: E402
from squeezr.cli import main  # noqa: E402
from squeezr.networks.hf import DecoderNet  # noqa: E402
from squeezr.networks.vit import VisionTransformer  # noqa: E402

FAST = ["--device", "cpu", "--no-progress", "--json", "--batch-size", "16"]
LLAMA = {
    "model_type": "llama",
    "vocab_size": 64,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 32,
}


@pytest.fixture
def text_folder(tmp_path):
    phrase = np.random.default_rng(0).integers(0, 64, size=48)
    stream = np.concatenate([np.roll(phrase, k) for k in range(70)]).astype("<u2")
    folder = tmp_path / "tokens"
    folder.mkdir()
    stream.tofile(folder / "train.bin")
    stream[:320].tofile(folder / "val.bin")
    return folder


def test_train_prune_export_a_decoder_on_token_files(tmp_path, text_folder, capsys):
    repo = str(tmp_path / "repo")
    transformers.AutoConfig.for_model(**LLAMA).save_pretrained(tmp_path / "cfg")
    data = ["--dataset", "text", "--data-dir", str(text_folder), "--seq-len", "16"]
    argv = ["train", "--from", f"hf:{tmp_path / 'cfg' / 'config.json'}", *data]
    assert main([*argv, "--epochs", "1", "--lr", "0.05", "--repo", repo, *FAST]) == 0
    trained = json.loads(capsys.readouterr().out)
    exp = dbx.open(trained["id"], repo=repo)
    assert exp.name == "baselines/hf-cfg/0"  # the config's folder names the network
    assert exp.params["dataset_options"]["seq_len"] == 16
    model = load_model(exp.attachment_path("model.pt"))
    assert isinstance(model, DecoderNet) and model.input_shape == (16,)

    argv = ["prune", "--from", exp.id, "--target-blocks", "2", "--schedule", "every:1"]
    assert main([*argv, "--epochs", "1", "--lr", "0.01", "--repo", repo, *FAST]) == 0
    pruned = json.loads(capsys.readouterr().out)
    assert pruned["blocks_removed"] == 2
    results = dbx.open(pruned["id"], repo=repo).results
    assert results["final_test_ppl"] > 1 and results["initial_test_ppl"] > 1

    scratch = ["scratch", "--like", pruned["id"], "--epochs", "1", "--device", "cpu"]
    assert main([*scratch, "--repo", repo, "--no-progress"]) == 0  # the pruned shape, anew
    assert "scratch/pruned-shape/2/0" in capsys.readouterr().out

    assert main(["export", pruned["id"], "-o", str(tmp_path / "hf"), "--repo", repo]) == 0
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert reloaded.config.num_hidden_layers == 2
    pruned_net = load_model(dbx.open(pruned["id"], repo=repo).attachment_path("model.pt"))
    ids = torch.randint(64, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, pruned_net.eval()(ids))


def test_prune_a_model_source_directly_and_check_it_against_the_data(tmp_path, text_folder, capsys):
    repo = str(tmp_path / "repo")
    data = ["--dataset", "text", "--data-dir", str(text_folder), "--seq-len", "16"]
    argv = ["prune", "--from", "hf:tiny-gpt2", *data, "--target-blocks", "1", "--schedule", "none"]
    assert main([*argv, "--epochs", "1", "--repo", repo, *FAST]) == 0
    pruned = json.loads(capsys.readouterr().out)
    assert pruned["blocks_removed"] == 1
    assert dbx.open(pruned["id"], repo=repo).name.startswith("prune/hf-tiny-gpt2/oracle")
    too_long = [*argv[:-4], "--seq-len", "300", "--target-blocks", "1"]
    assert main([*too_long, "--epochs", "1", "--repo", repo, *FAST]) == 2
    assert "longer than the 256 positions" in capsys.readouterr().err


def test_train_and_prune_a_vit_named_with_its_shape(tmp_path, capsys):
    repo = str(tmp_path / "repo")
    source = "vit:vit_tiny_patch4_32,depth=3,embed_dim=32,num_heads=2"
    data = ["--dataset", "synthetic", "--train-images", "64"]
    assert main(["train", "--from", source, *data, "--epochs", "1", "--repo", repo, *FAST]) == 0
    trained = json.loads(capsys.readouterr().out)
    model = load_model(dbx.open(trained["id"], repo=repo).attachment_path("model.pt"))
    assert isinstance(model, VisionTransformer) and model.vit_config.num_classes == 10
    argv = ["prune", "--from", trained["id"], "--target-blocks", "1", "--method", "block-gradient"]
    assert main([*argv, "--epochs", "1", "--repo", repo, *FAST]) == 0
    pruned = json.loads(capsys.readouterr().out)
    assert pruned["blocks_removed"] == 1
    scratch = ["scratch", "--like", pruned["id"], "--epochs", "1", "--device", "cpu"]
    assert main([*scratch, "--repo", repo, "--no-progress"]) == 0
    assert "scratch/pruned-shape/2/0" in capsys.readouterr().out
