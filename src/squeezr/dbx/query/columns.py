"""Columns that grow a chunk at a time and stay compact: numbers as numpy arrays.

A million-row column of floats is 8 MB as an array and 32 MB as a list of Python floats, so
the rows a query reads from a log are laid out chunk by chunk (``Column.extend``) and each
chunk of plain numbers is kept as an array at once. Merging events by name can still change
a row of an earlier chunk (``Column.set``); a value that does not fit the chunk's array (text
into numbers, a gap) turns that chunk back into a list, so every value keeps its JSON type.
"""

from __future__ import annotations

from bisect import bisect_right
from contextlib import suppress
from typing import Any

import numpy as np

__all__ = ["Column", "compact"]

_INT64 = (-(2**63), 2**63)


def compact(values: list[Any]) -> Any:
    """A column of plain numbers as a numpy array (cheap to concatenate and cache): int64 if
    all are ints, float64 if ints and floats. Anything else stays the list, so that each value
    keeps its type: booleans (``x == true`` must not match a 1), text, lists, gaps, and ints
    beyond int64."""
    kinds = set(map(type, values))
    if kinds == {int}:
        with suppress(OverflowError):
            return np.array(values, dtype=np.int64)
    elif kinds and kinds <= {int, float}:
        return np.array(values, dtype=np.float64)
    return values


class Column:
    """One column as a list of chunks, each a numpy array (plain numbers) or a list."""

    def __init__(self) -> None:
        self.chunks: list[Any] = []
        self.starts: list[int] = []  # the row each chunk starts at
        self.length = 0

    def extend(self, values: list[Any]) -> None:
        """Append rows."""
        if values:
            self.starts.append(self.length)
            self.chunks.append(compact(values))
            self.length += len(values)

    def pad(self, length: int) -> None:
        """Append missing values (None) up to ``length`` rows."""
        self.extend([None] * (length - self.length))

    def set(self, row: int, value: Any) -> None:
        """Change one row (which exists)."""
        index = bisect_right(self.starts, row) - 1
        chunk, offset = self.chunks[index], row - self.starts[index]
        if isinstance(chunk, np.ndarray):
            kind = type(value)
            if kind is float:  # ints and floats make floats, as in ``compact``
                if chunk.dtype != np.float64:
                    chunk = self.chunks[index] = chunk.astype(np.float64)
                chunk[offset] = value
                return
            if kind is int and _INT64[0] <= value < _INT64[1]:
                chunk[offset] = value
                return
            chunk = self.chunks[index] = chunk.tolist()
        chunk[offset] = value

    def values(self) -> Any:
        """All rows, as ``compact`` would give them for one list of the values; the column
        is emptied (its chunks are released as they are copied)."""
        chunks, self.chunks, self.starts, self.length = self.chunks, [], [], 0
        if chunks and all(isinstance(chunk, np.ndarray) for chunk in chunks):
            return np.concatenate(chunks)
        values: list[Any] = []
        chunks.reverse()
        while chunks:
            chunk = chunks.pop()
            values.extend(chunk.tolist() if isinstance(chunk, np.ndarray) else chunk)
        return compact(values)
