"""The tokenised text dataset: token files as common tools write them (nanoGPT's flat uint16
.bin, llm.c's headered .bin, numpy's .npy, text with a local tokenizer), cut into sequences
with the deterministic held-out parts of spec §6."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from squeezr.data import load_dataset
from squeezr.dbx.errors import UserError
from squeezr.prune.records import dataset_record, open_splits
from squeezr.tasks import LanguageModelling, task_of
from squeezr.textdata import LLMC_MAGIC, load_text_dataset, read_tokens


def write_llmc(path, tokens: np.ndarray, version: int) -> None:
    header = np.zeros(256, dtype="<i4")
    header[:3] = (LLMC_MAGIC, version, len(tokens))
    dtype = "<u2" if version == 1 else "<u4"
    path.write_bytes(header.tobytes() + tokens.astype(dtype).tobytes())


@pytest.fixture
def nanogpt_folder(tmp_path):
    """nanoGPT's layout: train.bin and val.bin of little-endian uint16 ids."""
    np.arange(2000, dtype="<u2").tofile(tmp_path / "train.bin")  # 250 sequences of 8
    (np.arange(100, dtype="<u2") + 7).tofile(tmp_path / "val.bin")
    return tmp_path


def test_nanogpt_files_cut_into_sequences_with_spec_held_out_parts(nanogpt_folder):
    splits = load_text_dataset(nanogpt_folder, seq_len=8, pruning_set=True)
    assert isinstance(splits.task, LanguageModelling) and task_of(splits) is splits.task
    # 250 sequences: val = first 25, prune = next 25, train = the other 200 (in order)
    assert (len(splits.val), len(splits.prune), len(splits.train)) == (25, 25, 200)
    assert splits.val.x[0].tolist() == list(range(8))
    assert splits.prune.x[0, 0] == 25 * 8 and splits.train.x[0, 0] == 50 * 8
    assert splits.train.x.dtype == torch.int64 and splits.train.x.shape == (200, 8)
    assert torch.equal(splits.train.y, splits.train.x)
    # the test set is val.bin (nanoGPT's held-out part): 12 whole sequences, tail dropped
    assert splits.test.x.shape == (12, 8) and splits.test.x[0, 0] == 7
    assert splits.num_classes == 2000  # the vocabulary the data needs
    again = load_text_dataset(nanogpt_folder, seq_len=8, pruning_set=True)
    assert torch.equal(again.train.x, splits.train.x)


def test_train_sequences_limit_the_training_part_only(nanogpt_folder):
    splits = load_text_dataset(nanogpt_folder, seq_len=8, train_sequences=10)
    assert (len(splits.val), len(splits.train)) == (25, 10)
    assert splits.train.x[0, 0] == 25 * 8


@pytest.mark.parametrize("version", [1, 2])
def test_llmc_headered_files(tmp_path, version):
    tokens = np.arange(300) * (1000 if version == 2 else 1)
    write_llmc(tmp_path / "train.bin", tokens, version)
    assert read_tokens(tmp_path / "train.bin").tolist() == tokens.tolist()
    (tmp_path / "train.bin").write_bytes((tmp_path / "train.bin").read_bytes()[:-2])
    with pytest.raises(UserError, match="truncated"):
        read_tokens(tmp_path / "train.bin")


def test_npy_files_and_test_beats_val(tmp_path):
    np.save(tmp_path / "train.npy", np.arange(400, dtype=np.int32) % 70_000)
    np.save(tmp_path / "test.npy", np.full(40, 3, dtype=np.uint32))
    np.arange(40, dtype="<u2").tofile(tmp_path / "val.bin")
    splits = load_text_dataset(tmp_path, seq_len=10)
    assert splits.test.x.unique().tolist() == [3]
    np.save(tmp_path / "train.npy", np.zeros((20, 20), dtype=np.int64))
    with pytest.raises(UserError, match="1-D integer array"):
        load_text_dataset(tmp_path, seq_len=10)


def test_text_tokenised_with_the_tokenizer_in_the_folder(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    words = [f"w{i}" for i in range(50)]
    vocab = {w: i for i, w in enumerate(["[UNK]", *words])}
    model = tokenizers.models.WordLevel(vocab, unk_token="[UNK]")
    raw = tokenizers.Tokenizer(model)
    raw.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=raw).save_pretrained(tmp_path)
    (tmp_path / "train.txt").write_text(" ".join(words * 4))
    (tmp_path / "test.txt").write_text(" ".join(words[:10]))
    splits = load_text_dataset(tmp_path, seq_len=10)
    assert splits.val.x[0].tolist() == list(range(1, 11))
    assert len(splits.val) + len(splits.train) == 20


def test_through_load_dataset_and_the_dataset_record(nanogpt_folder):
    record = dataset_record({"name": "Text", "data_dir": str(nanogpt_folder), "seq_len": 8})
    assert record["name"] == "text" and record["seq_len"] == 8
    splits = open_splits(record, selection="prune")
    assert splits.prune is not None and splits.train.x.shape[1] == 8
    with pytest.raises(UserError, match="needs --data-dir"):
        load_dataset("text")
    with pytest.raises(UserError, match="option of the text dataset"):
        load_dataset("digits", seq_len=8)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"train.bin": b"\x00" * 40}, "needs train"),
        ({"train.bin": b"\x00" * 41, "val.bin": b"\x00" * 40}, "odd size"),
        ({"train.bin": b"\x00" * 40, "val.bin": b"\x00" * 40}, "too few tokens"),
        ({"train.bin": b"", "train.npy": b"", "val.bin": b""}, "keep one train file"),
        ({"train.npy": b"not numpy", "val.bin": b"\x00" * 40}, "not a token file"),
    ],
)
def test_bad_folders_are_one_line_errors(tmp_path, files, message):
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(UserError, match=message):
        load_text_dataset(tmp_path, seq_len=4)


def test_missing_folder_and_bad_sequence_length(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_text_dataset(tmp_path / "nowhere")
    with pytest.raises(UserError, match="at least 2"):
        load_text_dataset(tmp_path, seq_len=1)


def test_a_language_model_is_fitted_to_the_data(nanogpt_folder):
    pytest.importorskip("transformers")
    from squeezr.networks.hf import from_config
    from squeezr.textdata import LOGITS_BUDGET, fit_language_model

    config = {"model_type": "gpt2", "vocab_size": 3000, "n_embd": 16, "n_layer": 2, "n_head": 2}
    net = from_config({**config, "n_positions": 64, "bos_token_id": 0, "eos_token_id": 0})
    splits = load_text_dataset(nanogpt_folder, seq_len=8)
    fit_language_model(net, splits)
    assert net.input_shape == (8,)
    assert splits.task.max_batch == LOGITS_BUDGET // (8 * 3000)  # sequences whose logits fit
    small = from_config({**config, "vocab_size": 1000, "n_positions": 64})
    with pytest.raises(UserError, match="token ids up to 1999"):
        fit_language_model(small, splits)
