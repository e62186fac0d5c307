"""Tokenised text for language models: files of token ids cut into fixed-length sequences.

A folder holds ``train.*`` and ``test.*`` (or ``val.*``, nanoGPT's name for its held-out
part, used as the test set when there is no ``test.*``), each one of

* ``.npy`` — a 1-D integer array (numpy's format carries its dtype);
* ``.bin`` — a flat array of token ids: little-endian uint16 as nanoGPT's ``prepare.py``
  writes, or llm.c's layout (a 256-int32 header with magic 20240520, version 1 = uint16,
  2 = uint32), recognised by its header;
* ``.txt`` — plain text, tokenised on load with a local transformers tokenizer folder.

Each stream is cut into non-overlapping sequences of ``seq_len`` tokens (a tail shorter
than that is dropped). The held-out parts follow spec §6 exactly as for images and never
depend on a seed: validation = the *first* 10% of the training sequences, the optional
pruning set = the *next* 10%, train = the rest. Files are memory-mapped, and ``train_sequences``
keeps only the first N training sequences, so a large corpus costs memory only for what is
used. Sequences are stored as ``int64`` ``(N, seq_len)``; the targets are the same ids (the
output at position t predicts token t + 1; :class:`squeezr.tasks.LanguageModelling`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from squeezr.dbx.errors import UserError

__all__ = ["LLMC_MAGIC", "TEXT_SUFFIXES", "read_tokens", "sequences", "token_file"]

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
