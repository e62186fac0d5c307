"""Tokenised text for language models: files of token ids cut into fixed-length sequences.

A folder holds ``train.*`` and ``test.*`` (or ``val.*``, nanoGPT's name for its held-out
part, used as the test set when there is no ``test.*``), each one of

* ``.npy`` — a 1-D integer array (numpy's format carries its dtype);
* ``.bin`` — a flat array of token ids: little-endian uint16 as nanoGPT's ``prepare.py``
  writes, or llm.c's layout (a 256-int32 header with magic 20240520, version 1 = uint16,
  2 = uint32), recognised by its header;
* ``.txt`` — plain text, tokenised on load with the transformers tokenizer whose files
  (``tokenizer.json``, ``tokenizer_config.json``, … copied from the model's folder) lie in
  the same folder.

Each stream is cut into non-overlapping sequences of ``seq_len`` tokens (a tail shorter
than that is dropped). The held-out parts follow spec §6 exactly as for images and never
depend on a seed: validation = the *first* 10% of the training sequences, the optional
pruning set = the *next* 10%, train = the rest. Files are memory-mapped, and ``train_sequences``
keeps only the first N training sequences, so a large corpus costs memory only for what is
used. Sequences are stored as ``int64`` ``(N, seq_len)``; the targets are the same ids (the
output at position t predicts token t + 1; :class:`squeezr.tasks.LanguageModelling`).
``num_classes`` of the splits is the vocabulary the data needs (its largest id + 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from squeezr.data import HELD_OUT_DIVISOR, DataSplits
from squeezr.dbx.errors import UserError

__all__ = [
    "LLMC_MAGIC",
    "TEXT_SUFFIXES",
    "TokenSplit",
    "fit_language_model",
    "load_text_dataset",
    "read_tokens",
    "sequences",
    "token_file",
]

LLMC_MAGIC = 20240520
"""First int32 of an llm.c token file (its header is 256 int32: magic, version, count, …)."""
_LLMC_DTYPES = {1: np.uint16, 2: np.uint32}
TEXT_SUFFIXES = (".npy", ".bin", ".txt")


def token_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` with one of :data:`TEXT_SUFFIXES`; None when there is none, a
    UserError when there are several."""
    found = [folder / f"{stem}{s}" for s in TEXT_SUFFIXES if (folder / f"{stem}{s}").is_file()]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise UserError(f"{folder}: both {names}; keep one {stem} file")
    return found[0] if found else None


def _llmc_header(path: Path) -> tuple[np.dtype, int] | None:
    """(dtype, token count) of an llm.c token file, None for a headerless one."""
    size = path.stat().st_size
    if size < 1024:
        return None
    header = np.fromfile(path, dtype="<i4", count=3)
    if int(header[0]) != LLMC_MAGIC or int(header[1]) not in _LLMC_DTYPES:
        return None
    dtype = np.dtype(_LLMC_DTYPES[int(header[1])]).newbyteorder("<")
    count = int(header[2])
    if size != 1024 + count * dtype.itemsize:
        raise UserError(
            f"{path}: llm.c header says {count} tokens, but the file holds "
            f"{(size - 1024) // dtype.itemsize}; the file is truncated or damaged"
        )
    return dtype, count


def read_tokens(path: str | os.PathLike[str], tokenizer: Any = None) -> np.ndarray:
    """The token ids of one file as a 1-D integer array (memory-mapped for .npy/.bin);
    ``tokenizer`` (a transformers tokenizer or the path of its local folder) reads ``.txt``."""
    path = Path(path)
    suffix = path.suffix
    try:
        if suffix == ".npy":
            tokens = np.load(path, mmap_mode="r", allow_pickle=False)
            if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
                raise UserError(
                    f"{path}: expected a 1-D integer array of token ids, got "
                    f"{tokens.dtype} {tokens.shape}"
                )
        elif suffix == ".bin":
            header = _llmc_header(path)
            if header is None:
                if path.stat().st_size % 2:
                    raise UserError(f"{path}: odd size; a flat .bin holds uint16 token ids")
                tokens = np.memmap(path, dtype="<u2", mode="r")
            else:
                tokens = np.memmap(path, dtype=header[0], mode="r", offset=1024, shape=(header[1],))
        elif suffix == ".txt":
            tokens = _tokenise(path, tokenizer)
        else:
            raise UserError(f"{path}: token files end in {', '.join(TEXT_SUFFIXES)}")
    except ValueError as exc:  # numpy: not an .npy file, or one that needs pickle
        raise UserError(f"{path}: not a token file ({exc})".splitlines()[0]) from None
    if len(tokens) and int(tokens.min()) < 0:
        raise UserError(f"{path}: negative token ids; token ids start at 0")
    return tokens


def _tokenise(path: Path, tokenizer: Any) -> np.ndarray:
    if tokenizer is None:
        raise UserError(
            f"{path} is text; tokenising it needs a tokenizer folder (a transformers model "
            "folder with tokenizer files)"
        )
    if isinstance(tokenizer, str | os.PathLike):
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise UserError(
                "tokenising .txt needs transformers: pip install 'squeezr[hf]'"
            ) from None
        folder = Path(tokenizer).expanduser()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise UserError(f"{folder}: no usable tokenizer ({exc})".splitlines()[0]) from None
    ids = tokenizer(path.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    return np.asarray(ids, dtype=np.int64)


def sequences(tokens: np.ndarray, seq_len: int, start: int = 0, stop: int | None = None) -> Tensor:
    """Sequences ``start:stop`` of ``tokens`` cut into non-overlapping ``seq_len`` windows,
    as ``int64 (N, seq_len)`` (only those are read from a memory-mapped file)."""
    count = len(tokens) // seq_len
    stop = count if stop is None else min(stop, count)
    start = min(start, stop)
    window = np.asarray(tokens[start * seq_len : stop * seq_len], dtype=np.int64)
    return torch.from_numpy(window.reshape(stop - start, seq_len))


DEFAULT_SEQ_LEN = 256


@dataclass(frozen=True)
class TokenSplit:
    """Token sequences ``x`` (int64, N×T) and their targets ``y`` (the same ids: the output
    at position t predicts token t + 1)."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])


def _tokenizer_of(folder: Path) -> Path | None:
    """The data folder itself when it holds tokenizer files (copied from the model's folder)."""
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
    return folder if any((folder / n).is_file() for n in names) else None


def load_text_dataset(
    data_dir: str | os.PathLike[str],
    *,
    seq_len: int = DEFAULT_SEQ_LEN,
    pruning_set: bool = False,
    train_sequences: int | None = None,
) -> DataSplits:
    """The token files of ``data_dir`` as a language-modelling dataset (see the module
    docstring): train/val/(prune) cut from ``train.*``, test from ``test.*`` or ``val.*``.
    ``.txt`` files are tokenised with the tokenizer files in ``data_dir`` itself."""
    from squeezr.tasks import LanguageModelling

    folder = Path(data_dir).expanduser()
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise UserError(f"seq_len must be an integer of at least 2 tokens, got {seq_len!r}")
    if not folder.is_dir():
        raise UserError(f"text dataset folder {folder} not found; pass --data-dir DIR")
    train_file = token_file(folder, "train")
    test_file = token_file(folder, "test") or token_file(folder, "val")
    if train_file is None or test_file is None:
        raise UserError(
            f"{folder} needs train.* and test.* (or val.*) token files "
            f"({', '.join(TEXT_SUFFIXES)}), e.g. nanoGPT's train.bin and val.bin"
        )
    tokenizer = _tokenizer_of(folder)
    train_tokens = read_tokens(train_file, tokenizer)
    n = len(train_tokens) // seq_len
    n_val = n // HELD_OUT_DIVISOR
    n_held = 2 * n_val if pruning_set else n_val
    test = sequences(read_tokens(test_file, tokenizer), seq_len)
    if n_val == 0 or n_held >= n or len(test) == 0:
        raise UserError(
            f"{folder}: too few tokens for sequences of {seq_len} ({n} training sequences, "
            f"{len(test)} test); it needs 10 training sequences per held-out part and one "
            "test sequence; use a shorter --seq-len or more text"
        )
    stop = n if train_sequences is None else min(n, n_held + int(train_sequences))
    parts = {
        "val": sequences(train_tokens, seq_len, 0, n_val),
        "prune": sequences(train_tokens, seq_len, n_val, n_held) if pruning_set else None,
        "train": sequences(train_tokens, seq_len, n_held, stop),
        "test": test,
    }
    vocabulary = 1 + max(int(t.max()) for t in parts.values() if t is not None and t.numel())
    split = {k: TokenSplit(v, v) if v is not None else None for k, v in parts.items()}
    return DataSplits(
        name="text",
        num_classes=vocabulary,
        train=split["train"],
        val=split["val"],
        test=split["test"],
        prune=split["prune"],
        mean=(),
        std=(),
        task=LanguageModelling(),
    )


LOGITS_BUDGET = 1 << 28
"""Logits held at once when evaluating a language model (1 GiB in fp32): sequences per
evaluation batch and per oracle stack are cut to fit (:attr:`squeezr.tasks.Task.max_batch`)."""


def fit_language_model(model: Any, splits: DataSplits) -> None:
    """Make a language model ready for ``splits``: its ``input_shape`` (what MACs are counted
    for, and recorded in its spec) becomes the dataset's sequence length, a vocabulary
    smaller than the data's token ids is a UserError (an embedding lookup would fail later),
    and the task evaluates at most :data:`LOGITS_BUDGET` logits at once (a 150k-token
    vocabulary at 512 tokens per sequence: 3 sequences per batch)."""
    from squeezr.blocknet import output_size

    length = int(splits.val.x.shape[1])
    model.input_shape = (length,)
    vocabulary = output_size(model)
    if vocabulary < splits.num_classes:
        raise UserError(
            f"the model's vocabulary has {vocabulary} tokens but the text data has token ids up "
            f"to {splits.num_classes - 1}; tokenise the text with the model's tokenizer"
        )
    splits.task.max_batch = max(1, LOGITS_BUDGET // (length * vocabulary))
