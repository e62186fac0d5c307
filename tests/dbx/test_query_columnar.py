"""The columnar copy of a log (``.log-<N>.cols``) and the query path that reads it.

The copy is derived: whatever happens to it (missing, stale, torn, corrupt, someone else's,
a crash while it was written), a query must give exactly what parsing the log gives. Tables
are compared column by column, value and type, against ``table._read`` (the JSON path).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from squeezr import dbx
from squeezr.dbx import jsonx, logcopy, query
from squeezr.dbx.logger import LogWriter
from squeezr.dbx.query import columnar, engine
from squeezr.dbx.query.pattern import compile_pattern
from squeezr.dbx.query.table import MERGED, OCCURRENCES, RAW, Table, TableCache, _read
from squeezr.dbx.store import log_paths

PATTERNS = ["a/:k", "**", "b/", "c/:i", "a/1", "x/:p/:q", "nothing"]
_VALUES: list[Any] = [1, 2.5, -7, "s", True, False, None, [1, "x"], {"q": 1}, math.nan, 10**20]


def _assert_same(got: Table, want: Table) -> None:
    assert got.names == want.names
    assert got.length == want.length
    for name in want.names:
        a, b = got.column(name), want.column(name)
        assert type(a) is type(b), name
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype, name
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
        else:
            assert len(a) == len(b), name
            for x, y in zip(a, b, strict=True):
                assert type(x) is type(y), name
                assert x == y or (x != x and y != y), name


def _log_events(exp: dbx.Experiment, rng: random.Random, count: int) -> None:
    for i in range(count):
        name = rng.choice(["a/1", "a/2", "b/x/3", f"a/{i % 40}", f"c/{i}", "a/1.5", "x/1/2"])
        keys = rng.sample(["v", "w", "z", "name", "ts", "_pos", "run", "k"], rng.randint(0, 3))
        exp.log(
            name, **{key: rng.choice([*_VALUES, rng.random(), rng.randint(0, 9)]) for key in keys}
        )
        if i % 200 == 199:
            exp.flush()  # (a segment at least every 200 events)


def _check(folder: Path, *, copied: bool | None = True, patterns: int = len(PATTERNS)) -> None:
    """The first ``patterns`` patterns, both modes: the columnar table equals the parsed
    one (``copied``: the copy must serve the query / must not / either)."""
    files = log_paths(folder)
    for text in PATTERNS[:patterns]:
        for mode in (MERGED, RAW):
            pattern = compile_pattern(text)
            got = columnar.table(files, pattern, mode)
            if copied is not None:
                assert (got is not None) == copied, (text, mode)
            want = _read(files, pattern, mode)
            _assert_same(TableCache().table(folder, pattern, mode, None), want)
            if got is not None:
                _assert_same(got, want)


@pytest.fixture
def logged(repo: dbx.Repository) -> Path:
    """An experiment with two runs that overlap in time and odd values of every JSON type."""
    rng = random.Random(11)
    first = dbx.create("t/mixed", repo=repo)
    _log_events(first, rng, 1500)
    first.flush()
    second = dbx.resume(first.id, repo=repo)
    _log_events(second, rng, 700)
    second.close()
    _log_events(first, rng, 900)
    first.close()
    return Path(first.path)


def test_the_writer_keeps_a_copy_and_queries_read_it(logged: Path) -> None:
    for log in log_paths(logged):
        covered = list(logcopy.segments(log))
        assert covered and covered[-1].end == log.stat().st_size
    _check(logged)


@pytest.mark.parametrize("seed", range(4))
def test_random_logs_give_the_parsed_answer(repo: dbx.Repository, seed: int) -> None:
    rng = random.Random(seed)
    exp = dbx.create("t/random", repo=repo)
    _log_events(exp, rng, rng.randint(0, 2500))
    exp.close()
    _check(Path(exp.path))


def test_before_after_targets_are_parsed(logged: Path) -> None:
    assert columnar.table(log_paths(logged), compile_pattern("a/:k"), OCCURRENCES) is None


def test_missing_copy(logged: Path) -> None:
    for log in log_paths(logged):
        logcopy.copy_path(log).unlink()
    _check(logged, copied=False)


def test_stale_copy_reads_the_lines_after_it(logged: Path) -> None:
    """Lines appended by another tool after the copy ends are parsed; so is a torn one."""
    log = log_paths(logged)[0]
    with log.open("ab") as handle:
        handle.write(b'{"name":"a/1","id":"1-x","ts":1.0,"run":1,"data":{"v":99,"new":"n"}}\n')
        handle.write(b'{"name":"c/77","id":"1-y","ts":9e9,"run":1,"data":{"w":1}}\n{"na')
    with pytest.warns(UserWarning, match="unfinished last line"):
        _check(logged)
        table = columnar.table(log_paths(logged), compile_pattern("a/1"), RAW)
    assert table is not None and 99 in list(table.column("v"))  # (its ts puts it first)


@pytest.mark.slow
def test_torn_copy_at_any_length(logged: Path) -> None:
    """A crash while a segment is written leaves a prefix of the copy: at every segment
    boundary, and inside segments, the answer is the log's."""
    copy = logcopy.copy_path(log_paths(logged)[0])
    whole = copy.read_bytes()
    rng = random.Random(3)
    lengths = {0, 1, len(whole) - 1, *rng.sample(range(len(whole)), 3)}
    starts, at = [], 0
    while at < len(whole):  # each segment: a header line, then "size" bytes
        starts.append(at)
        end = whole.index(b"\n", at)
        at = end + 1 + json.loads(whole[at:end])["size"]
    assert len(starts) > 10
    starts = rng.sample(starts, 4)
    lengths |= {*starts, *(start + 1 for start in starts), *(start + 200 for start in starts)}
    for length in sorted(lengths):
        copy.write_bytes(whole[:length])
        _check(logged, copied=None, patterns=2)


@pytest.mark.slow
def test_corrupt_copy(logged: Path) -> None:
    copy = logcopy.copy_path(log_paths(logged)[0])
    whole = copy.read_bytes()
    rng = random.Random(5)
    for at in [*rng.sample(range(len(whole)), 5), len(whole) - 1]:
        damaged = bytearray(whole)
        damaged[at] ^= 0x55
        copy.write_bytes(bytes(damaged))
        _check(logged, copied=None, patterns=2)
    copy.write_bytes(b"\x00" * 4096 + whole)  # zeros, as a power loss can leave
    _check(logged, copied=False)


def test_a_changed_log_is_not_answered_from_its_copy(logged: Path) -> None:
    """The copy checks the log's bytes: a line edited (same length, still valid JSON) after
    the copy was written is read from the log."""
    log = log_paths(logged)[0]
    raw = log.read_bytes()
    at = raw.index(b'"name":"a/1"')
    log.write_bytes(raw[:at] + b'"name":"a/3"' + raw[at + len(b'"name":"a/1"') :])
    _check(logged, copied=None)
    table = columnar.table(log_paths(logged), compile_pattern("a/3"), RAW)
    assert table is None or table.length >= 1


def test_another_logs_copy_is_not_used(repo: dbx.Repository, logged: Path) -> None:
    other = dbx.create("t/other", repo=repo)
    _log_events(other, random.Random(9), 800)
    other.close()
    mine = log_paths(logged)[0]
    logcopy.copy_path(mine).write_bytes(logcopy.copy_path(log_paths(other.path)[0]).read_bytes())
    _check(logged, copied=None)


def test_a_copy_the_writer_cannot_write_leaves_the_log_whole(
    repo: dbx.Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def failing(*args: Any) -> bytes:
        calls.append(1)
        if len(calls) > 1:
            raise OSError("no space left on device")
        return real(*args)

    real = logcopy._frame
    monkeypatch.setattr(logcopy, "_frame", failing)
    exp = dbx.create("t/full", repo=repo)
    for step in range(5):
        exp.log(f"a/{step}", v=step)
        exp.flush()  # one batch each
    exp.close()
    log = log_paths(exp.path)[0]
    assert len(log.read_bytes().splitlines()) == 5
    assert len(list(logcopy.segments(log))) == 1
    _check(Path(exp.path), copied=False)  # covers less than half: the log is parsed


def test_query_answers_match_with_and_without_the_copy(logged: Path) -> None:
    """End to end (fresh in-memory caches): the same result tables."""
    queries = [
        "a/:k | group k: count()",
        "a/:k | select k, v, w",
        "** | select name, ts, run, id",
        "c/:i | where exists(w) | last 5",
        "a/1 | after c/:i as later | select v, later.i, later.w",
    ]

    def answers() -> list[Any]:
        engine._CACHE = TableCache()
        exp = dbx.open(logged.name, repo=logged.parents[2])
        return [query.run(text, experiments=[exp], cache=False) for text in queries]

    with_copy = answers()
    for log in log_paths(logged):
        logcopy.copy_path(log).unlink()
    for got, want in zip(with_copy, answers(), strict=True):
        assert got.equals(want)
        assert list(got.dtypes) == list(want.dtypes)


_CHILD = """
import sys
from squeezr import dbx
exp = dbx.create("t/killed", repo=sys.argv[1])
print(exp.path, flush=True)
step = 0
while True:
    exp.log(f"a/{step % 50}", v=step, w=step * 0.5)
    step += 1
    if step % 97 == 0:
        exp.flush()
"""


@pytest.mark.parametrize("delay", [0.3, 0.7])
def test_killed_while_logging(repo: dbx.Repository, delay: float) -> None:
    """SIGKILL at an arbitrary point of the writer's batches: log and copy may end anywhere
    (a torn line, a torn segment, a batch without its segment); answers stay the log's."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(repo.path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.stdout is not None
    folder = Path(child.stdout.readline().strip())
    log = folder / "log-1.jsonl"
    deadline = time.monotonic() + 60
    while (not log.exists() or log.stat().st_size < 20_000) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the torn last line, if any
        _check(folder, copied=None)


def test_a_copy_of_integer_times_is_not_used(repo: dbx.Repository) -> None:
    """A copy another writer built by the format from a log whose ``ts`` are integers (or
    mixed): the columns cannot keep them exactly as parsing gives them, so the log is read."""
    exp = dbx.create("t/ints", repo=repo)
    exp.close()
    log = Path(exp.path) / "log-1.jsonl"
    for times in ([1, 2, 3], [1, 2.5, 3]):
        events = [
            {"name": f"a/{i}", "id": f"1-{i}", "ts": ts, "run": 1, "data": {"v": i}}
            for i, ts in enumerate(times)
        ]
        raw = b"".join(json.dumps(event).encode() + b"\n" for event in events)
        log.write_bytes(raw)
        logcopy.copy_path(log).write_bytes(logcopy.encode_segment(events, raw, 0, 0))
        assert len(list(logcopy.segments(log))) == 1
        _check(Path(exp.path), copied=False)


@pytest.mark.parametrize(
    "header",
    [b"[]", b"{}", b"[" * 100_000, b'{"dbxcols": 1, "start": 0, "size": -1}', b"\xff\xfe"],
)
def test_a_garbage_header_ends_the_copy(logged: Path, header: bytes) -> None:
    log = log_paths(logged)[0]
    logcopy.copy_path(log).write_bytes(header + b"\n" + logcopy.copy_path(log).read_bytes())
    assert list(logcopy.segments(log)) == []
    _check(logged, copied=False, patterns=1)


@pytest.mark.parametrize("text", ["a/:k", "a/**", "**", "*/:x/:y", "ep*ch/:e", "a/1", ":n"])
def test_match_all_is_match_for_each_name(text: str) -> None:
    names = ["a/1", "a/007", "a/x/2", "a/-3", "a/1.5", "a/٣", "a/²", "a/" + "9" * 30, "b"]
    names += ["epoch/4", "ech/5", "a/line\nbreak", "x/1/2", "a/ü"]
    pattern = compile_pattern(text)
    for chosen in (names, [name for name in names if "\n" not in name], []):
        hit, columns = pattern.match_all(chosen)
        want = [(name, pattern.match(name)) for name in chosen]
        assert hit.tolist() == [found is not None for _, found in want]
        listed = [c.tolist() if isinstance(c, np.ndarray) else c for c in columns]
        got = [tuple(column[i] for column in listed) for i in range(int(hit.sum()))]
        expected = [found for _, found in want if found is not None]
        assert got == expected
        assert [tuple(map(type, row)) for row in got] == [tuple(map(type, r)) for r in expected]


class _Float(float):
    pass


class _Name(str):
    pass


_ODD: list[Any] = [
    *_VALUES,
    'é\u2028"\\',
    (1, 2),
    math.inf,
    -0.0,
    2**63,
    -(2**63),
    10**30,
    np.float32(1.5),
    np.int64(3),
    _Float(0.25),
    object(),  # stored as its text
]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_writer_lays_out_what_parsing_its_lines_gives(tmp_path: Path, seed: int) -> None:
    """The writer builds each segment from the values it encoded, not from its lines: the
    copy must be byte for byte what parsing the lines back and laying them out gives, for
    values of every type (plain or not, stored as text), odd keys and names, mixed batches."""
    rng = random.Random(seed)
    log = tmp_path / "log-4.jsonl"
    writer = LogWriter(log, 4, interval=60, batch=rng.choice([1, 7, 50]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(400):
            plain = rng.random() < 0.7
            keys: list[Any] = rng.sample(["v", "w", "loss", "step"], rng.randint(0, 3))
            if not plain and rng.random() < 0.2:
                keys.append(rng.choice([1, True, _Name("n")]))
            pool = [1, 2.5, -3, "s", None, True, math.nan] if plain else _ODD
            name = rng.choice(["a/1", "b", "c/2"])
            if not plain and rng.random() < 0.1:
                name = _Name(name)
            writer.log(name, {key: rng.choice(pool) for key in keys})
            if rng.random() < 0.02:
                writer.flush()
    writer.close()
    raw = log.read_bytes()
    covered = list(logcopy.segments(log))
    assert covered[-1].end == len(raw)
    want = b""
    for segment in covered:
        lines = raw[segment.start : segment.end].splitlines(keepends=True)
        events = [jsonx.loads(line) for line in lines]
        want += logcopy.encode_segment(events, b"".join(lines), segment.start, segment.line)
    assert logcopy.copy_path(log).read_bytes() == want
