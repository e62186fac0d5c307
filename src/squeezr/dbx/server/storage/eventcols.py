"""Events stored a second time as columns, so that a query never parses JSON event by event.

Why: a log query over a million events stored as JSON rows spent nearly all its time on
per-event work (fetching a row, parsing its ``data``, building a dict, feeding the row
builder): 55 s for the first query after a start. Every batch of new events is therefore also
written as one *block*: names, times, runs and seqs as arrays, and each ``data`` key as one
column — raw little-endian numbers when every value of the batch is a float (or every one an
int), else a JSON array (``jsonx``: NaN and ±Infinity survive). A query reads an experiment's
blocks (:func:`read_log`) and lays out the rows a pattern matches with array indexing
(:meth:`Log.table`), giving exactly the :class:`~squeezr.dbx.query.table.Table` that
``extract`` gives from the same events; where rows must merge several events (a name logged
twice) it rebuilds the events from the columns and calls ``extract`` itself.

The ``events`` table stays the record (sync and event reads use it); blocks are derived
from it and rebuilt from it by migration 2 for a database written before blocks existed.
Only events that were new are put in a block; a reader still drops a repeated
``(run, seq)``, so two server processes racing on one database cannot duplicate a row.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np
import orjson

from squeezr.dbx import jsonx

__all__ = ["Log", "encode_block", "read_log"]

_INT64 = (-(2**63), 2**63)
# An event as the storage inserts it: (exp_id, run, seq, name, ts, data, data as JSON text)
Row = tuple[str, int, int, str, float, dict[str, Any], str]


def _column(values: list[Any]) -> tuple[str, bytes]:
    """One data key's values as ``(kind, bytes)``: ``<f8``/``<i8`` raw numbers when all are
    floats (or all ints within int64), else ``json``. ``bool`` is not a number here (as in
    ``query.columns.compact``), and a missing value is a ``null`` in a JSON column."""
    kinds = set(map(type, values))
    if kinds == {float}:
        return "<f8", np.array(values, dtype="<f8").tobytes()
    if kinds == {int} and _INT64[0] <= min(values) and max(values) < _INT64[1]:
        return "<i8", np.array(values, dtype="<i8").tobytes()
    return "json", jsonx.encode(values).encode()


def encode_block(rows: Sequence[Row]) -> bytes:
    """The block body of ``rows``: a JSON header line, then the columns' bytes."""
    shapes: dict[tuple[str, ...], int] = {}  # the data keys of an event, in its order
    shape = [shapes.setdefault(tuple(row[5]), len(shapes)) for row in rows]
    datas = [row[5] for row in rows]
    columns = {
        "name": ("json", orjson.dumps([row[3] for row in rows])),
        "ts": ("<f8", np.array([row[4] for row in rows], dtype="<f8").tobytes()),
        "run": ("<i8", np.array([row[1] for row in rows], dtype="<i8").tobytes()),
        "seq": ("<i8", np.array([row[2] for row in rows], dtype="<i8").tobytes()),
        "shape": ("<i4", np.array(shape, dtype="<i4").tobytes()),
    }
    keys = dict.fromkeys(chain.from_iterable(shapes))
    data = {key: _column([d.get(key) for d in datas]) for key in keys}
    spans, parts, offset = [], [], 0
    for group, named in (("", columns), ("data", data)):
        for name, (kind, raw) in named.items():
            spans.append([group, name, kind, offset, offset + len(raw)])
            parts.append(raw)
            offset += len(raw)
    header = {"length": len(rows), "shapes": [list(k) for k in shapes], "spans": spans}
    return json.dumps(header).encode() + b"\n" + b"".join(parts)


def _decode(body: bytes) -> tuple[int, list[list[str]], dict[str, Any], dict[str, Any]]:
    end = body.index(b"\n")
    header = json.loads(body[:end])
    raw = memoryview(body)[end + 1 :]
    fixed: dict[str, Any] = {}
    data: dict[str, Any] = {}
    for group, name, kind, start, stop in header["spans"]:
        piece = raw[start:stop]
        if kind == "json":
            values = orjson.loads(piece) if group == "" else jsonx.loads(bytes(piece))
        else:
            values = np.frombuffer(piece, dtype=kind)
        (data if group else fixed)[name] = values
    return header["length"], header["shapes"], fixed, data


def read_log(bodies: Sequence[bytes]) -> Log:
    """One experiment's log from its blocks (any order): events in log order
    ``(ts, run, seq)``, a repeated ``(run, seq)`` kept once."""
    lengths, names, ts, runs, seqs, shape_ids = [], [], [], [], [], []
    shapes: dict[tuple[str, ...], int] = {}
    pieces: list[dict[str, Any]] = []
    for body in bodies:
        length, block_shapes, fixed, data = _decode(body)
        remap = np.array(
            [shapes.setdefault(tuple(k), len(shapes)) for k in block_shapes] or [0], dtype=np.int32
        )
        lengths.append(length)
        names.extend(fixed["name"])
        ts.append(fixed["ts"])
        runs.append(fixed["run"])
        seqs.append(fixed["seq"])
        shape_ids.append(remap[fixed["shape"]])
        pieces.append(data)
    log = Log(
        names,
        _cat(ts, np.float64),
        _cat(runs, np.int64),
        _cat(seqs, np.int64),
        _cat(shape_ids, np.int32),
        [list(k) for k in shapes],
        _merge(pieces, lengths),
    )
    return log.ordered()


def _cat(arrays: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)


def _merge(pieces: list[dict[str, Any]], lengths: list[int]) -> dict[str, Any]:
    """Each data key's column over all blocks: an array if every block has it as an array of
    one dtype, else a list (None where a block lacks the key)."""
    keys = dict.fromkeys(chain.from_iterable(pieces))
    merged: dict[str, Any] = {}
    for key in keys:
        parts = [piece.get(key) for piece in pieces]
        if all(isinstance(p, np.ndarray) for p in parts) and len({p.dtype for p in parts}) == 1:
            merged[key] = np.concatenate(parts) if len(parts) > 1 else parts[0]
            continue
        values: list[Any] = []
        for part, length in zip(parts, lengths, strict=True):
            if part is None:
                values.extend([None] * length)
            else:
                values.extend(part.tolist() if isinstance(part, np.ndarray) else part)
        merged[key] = values
    return merged


class Log:
    """One experiment's events as columns (see the module's docstring)."""

    def __init__(
        self,
        names: list[str],
        ts: np.ndarray,
        runs: np.ndarray,
        seqs: np.ndarray,
        shape: np.ndarray,
        shapes: list[list[str]],
        data: dict[str, Any],
    ) -> None:
        self.names = names
        self.ts, self.runs, self.seqs = ts, runs, seqs
        self.shape, self.shapes = shape, shapes
        self.data = data
        self.length = len(names)

    def ordered(self) -> Log:
        """This log in ``(ts, run, seq)`` order with repeated events dropped (a copy, unless
        it already is)."""
        n = self.length
        if n < 2:
            return self
        ts, runs, seqs = self.ts, self.runs, self.seqs
        later = (ts[1:] > ts[:-1]) | (
            (ts[1:] == ts[:-1])
            & ((runs[1:] > runs[:-1]) | ((runs[1:] == runs[:-1]) & (seqs[1:] > seqs[:-1])))
        )
        if later.all():
            return self
        order = np.lexsort((seqs, runs, ts))
        keep = np.ones(n, dtype=bool)
        sr, ss = runs[order], seqs[order]
        keep[1:] = (sr[1:] != sr[:-1]) | (ss[1:] != ss[:-1])
        return self.take(order[keep])

    def take(self, rows: np.ndarray) -> Log:
        names = self.names
        data = {
            key: values[rows] if isinstance(values, np.ndarray) else [values[i] for i in rows]
            for key, values in self.data.items()
        }
        return Log(
            [names[i] for i in rows],
            self.ts[rows],
            self.runs[rows],
            self.seqs[rows],
            self.shape[rows],
            self.shapes,
            data,
        )

    def events(self) -> list[dict[str, Any]]:
        """The events as dicts, in log order (what the JSON rows would give)."""
        columns = self.data
        ts, runs, seqs = self.ts.tolist(), self.runs.tolist(), self.seqs.tolist()
        shape = self.shape.tolist()
        lists = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in columns.items()}
        return [
            {
                "name": name,
                "id": f"{runs[i]}-{seqs[i]}",
                "ts": ts[i],
                "run": runs[i],
                "data": {key: lists[key][i] for key in self.shapes[shape[i]]},
            }
            for i, name in enumerate(self.names)
        ]

    def table(self, pattern: Any, mode: str) -> Any:
        """What ``extract(list(enumerate(self.events())), pattern, mode)`` gives, by array
        indexing where every matched name occurs once (no row merges two events)."""
        from squeezr.dbx.query.columns import compact
        from squeezr.dbx.query.table import HIDDEN, Table, extract

        matched = _matching(self.names, pattern)
        if matched is None:
            return extract(list(enumerate(self.events())), pattern, mode)
        rows, names, captured = matched
        everything = len(rows) == self.length
        runs = self.runs if everything else self.runs[rows]
        seqs = self.seqs if everything else self.seqs[rows]
        columns: dict[str, Any] = {
            "_pos": rows,
            "_ts": np.zeros(len(rows), dtype=np.float64),
            "name": names,
            "ts": self.ts if everything else self.ts[rows],
            "run": runs,
            "id": _ids(runs, seqs),
        }
        columns.update(zip(pattern.variables, captured, strict=True))
        used = dict.fromkeys(self.shape[rows].tolist())
        for key in dict.fromkeys(chain.from_iterable(self.shapes[s] for s in used)):
            values = self.data[key]
            if isinstance(values, np.ndarray):
                values = values if everything else values[rows]
            else:
                values = compact(values if everything else [values[i] for i in rows.tolist()])
            columns[f"data.{key}" if key in columns or key in HIDDEN else key] = values
        return Table(columns, len(rows))


# The experiments of a study log the same names in the same order (and the same run and
# seq numbers), so what a pattern makes of a sequence of names, and the id strings of a
# sequence of events, are kept for the next experiment: a first query over a thousand
# such experiments matches each name once, not a thousand times. Bounded by entries, and
# logs longer than MEMO_LOG are not kept (their own work dwarfs the matching).
MEMO_ENTRIES = 64
MEMO_LOG = 200_000
_memo: OrderedDict[Any, Any] = OrderedDict()
_memo_lock = threading.Lock()


def _remembered(key: Any, make: Any, size: int) -> Any:
    if size > MEMO_LOG:
        return make()
    with _memo_lock:
        found = _memo.get(key, _memo)
        if found is not _memo:
            _memo.move_to_end(key)
            return found
    value = make()
    with _memo_lock:
        _memo[key] = value
        while len(_memo) > MEMO_ENTRIES:
            _memo.popitem(last=False)
    return value


def _matching(names: list[str], pattern: Any) -> tuple[np.ndarray, list[str], list[Any]] | None:
    """``(rows, their names, one column per variable)`` of the names ``pattern`` matches,
    or None if none does or a matched name occurs twice (rows then merge events)."""

    def make() -> tuple[np.ndarray, list[str], list[Any]] | None:
        from squeezr.dbx.query.columns import compact

        found = list(map(pattern.match, names))
        if None in found:
            rows = [i for i, captures in enumerate(found) if captures is not None]
            found = [found[i] for i in rows]
            matched = [names[i] for i in rows]
        else:
            rows, matched = list(range(len(names))), names
        if not rows or len(set(matched)) != len(matched):
            return None
        captured = [compact([c[k] for c in found]) for k in range(len(pattern.variables))]
        return np.array(rows, dtype=np.int64), matched, captured

    return _remembered(("match", pattern.text, tuple(names)), make, len(names))


def _ids(runs: np.ndarray, seqs: np.ndarray) -> list[str]:
    """The ids ``<run>-<seq>`` of events."""

    def make() -> list[str]:
        return [f"{r}-{s}" for r, s in zip(runs.tolist(), seqs.tolist(), strict=True)]

    return _remembered(("ids", runs.tobytes(), seqs.tobytes()), make, len(runs))
