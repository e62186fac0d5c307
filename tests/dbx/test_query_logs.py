"""Reading log files: prefilter, torn lines, NaN, run concatenation, cache, following."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from squeezr.dbx import expr
from squeezr.dbx.errors import UserError
from squeezr.dbx.query import engine, table
from squeezr.dbx.query.engine import Engine, Source
from squeezr.dbx.query.language import parse
from squeezr.dbx.query.logs import Tail, numbered, read_matching
from squeezr.dbx.query.pattern import Pattern


def event_line(name: str, index: int = 0, **data: object) -> str:
    """One complete log line, as the logger writes it."""
    return json.dumps(
        {"name": name, "id": f"1-{index}", "ts": float(index), "run": 1, "data": data}
    )


def write_log(path: Path, events: list[dict], tail: str = "") -> None:
    lines = [
        json.dumps({"id": f"e{i}", "ts": float(i), "run": 1, **e}) for i, e in enumerate(events)
    ]
    path.write_text("".join(line + "\n" for line in lines) + tail)


class FakeExperiment(SimpleNamespace):
    """What a query needs of an experiment handle: its folder and ``value(path)``."""

    def value(self, path: str) -> object:
        record = {"id": self.id, "name": self.name, "kind": "prune", "params": self.params}
        return expr.dig(record, path.removeprefix("exp."))


def experiment(folder: Path, name: str = "exp", **params: object) -> FakeExperiment:
    folder.mkdir(parents=True, exist_ok=True)
    return FakeExperiment(path=folder, id=folder.name, name=name, params=params)


def test_prefilter_torn_line_and_nan(tmp_path: Path) -> None:
    log = tmp_path / "log-1.jsonl"
    write_log(
        log,
        [
            {"name": "train/step/1", "data": {"loss": {"$numberDouble": "NaN"}}},
            {"name": "eval/1", "data": {"acc": 0.5}},
            {"name": "train/step/2", "data": {"loss": 1.0}},
        ],
        tail='{"name": "train/step/3", "da',
    )
    with pytest.warns(UserWarning, match="unfinished last line"):
        found, lines = read_matching(log, "train/step")
    assert lines == 3
    assert [position for position, _ in found] == [0, 2]
    assert math.isnan(found[0][1]["data"]["loss"])


def test_corrupt_last_line_is_skipped_but_earlier_corruption_is_an_error(tmp_path: Path) -> None:
    log = tmp_path / "log-1.jsonl"
    log.write_text(f"{event_line('a')}\n\n{event_line('b')}\nnot json\n")
    with pytest.warns(UserWarning, match="corrupt last line 4"):
        found, lines = read_matching(log, "")
    assert lines == 4
    assert [(line, event["name"]) for line, event in found] == [(0, "a"), (2, "b")]
    log.write_text(f"{event_line('a')}\nnot json\n{event_line('b')}\n")
    with pytest.raises(UserError, match="line 2 is corrupt"):
        read_matching(log, "")


def test_a_line_holding_two_events_is_corrupt_not_two_events(tmp_path: Path) -> None:
    log = tmp_path / "log-1.jsonl"
    a = event_line("a")
    log.write_text(f"{a}\n{a}, {a}\n{a}\n")
    with pytest.raises(UserError, match=r"log-1\.jsonl line 2 is corrupt"):
        read_matching(log, "a")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"foo": "s/2"}', "name must be a non-empty string"),
        ('["s/2"]', "not a JSON object"),
        ('{"name": "s/2", "id": "1-1", "ts": 1.0, "run": 1, "data": [1]}', "data must be"),
    ],
)
def test_a_line_that_is_json_but_not_an_event_is_an_error_naming_file_and_line(
    tmp_path: Path, line: str, problem: str
) -> None:
    exp = experiment(tmp_path / "x")
    log = exp.path / "log-1.jsonl"
    log.write_text(f"{event_line('s/1', v=1)}\n{line}\n{event_line('s/3', 2, v=3)}\n")
    message = rf"{log} line 2 is corrupt \(not a valid event: {problem}.*\); repair or remove"
    with pytest.raises(UserError, match=message):
        Engine([Source(experiment=exp)]).run(parse("s/:k"))
    tail = Tail(log)
    with pytest.raises(UserError, match=message):  # a live listener reads it the same way
        tail.read_new()
    log.write_text(f"{event_line('s/1', v=1)}\n{line}\n")  # as the last line: a crash's damage
    with pytest.warns(UserWarning, match="corrupt last line 2") as warned:
        table = Engine([Source(experiment=exp)]).run(parse("s/:k"))
    assert len(warned) == 1
    assert table.to_dict("records") == [{"name": "s/1", "k": 1, "v": 1}]


@pytest.mark.parametrize(
    ("tail", "warning"),
    [
        ('{"name": "a", "da\n', "skipping a corrupt last line 2"),
        ('{"name": "a", "da', "skipping an unfinished last line (torn write)"),
    ],
)
def test_a_damaged_last_line_warns_once(tmp_path: Path, tail: str, warning: str) -> None:
    exp = experiment(tmp_path / "x")
    log = exp.path / "log-1.jsonl"
    log.write_text(f"{event_line('a', v=1)}\n{tail}")
    with pytest.warns(UserWarning) as warned:
        table = Engine([Source(experiment=exp)], merge=False).run(parse("a | select v"))
    assert [str(w.message) for w in warned] == [f"{log}: {warning}"]
    assert table["v"].tolist() == [1]


def test_files_that_only_look_like_logs_are_not_read(tmp_path: Path) -> None:
    exp = experiment(tmp_path / "x")
    write_log(exp.path / "log-1.jsonl", [{"name": "s/1", "data": {"v": 1}}])
    write_log(exp.path / "log-1.bak.jsonl", [{"name": "s/1", "data": {"v": 99}}])
    write_log(exp.path / "log-2.jsonl", [{"name": "s/2", "data": {"v": 2}}])
    table = Engine([Source(experiment=exp)], merge=False).run(parse("s/:k | select k, v"))
    assert table.to_dict("records") == [{"k": 1, "v": 1}, {"k": 2, "v": 2}]


def test_runs_are_concatenated_and_merged(tmp_path: Path) -> None:
    exp = experiment(tmp_path / "x")
    write_log(exp.path / "log-1.jsonl", [{"name": "eval/test", "data": {"acc": 0.5, "loss": 2}}])
    write_log(exp.path / "log-2.jsonl", [{"name": "eval/test", "run": 2, "data": {"acc": 0.7}}])
    table = Engine([Source(experiment=exp)]).run(parse("eval/test | select acc, loss, run"))
    assert table.to_dict("records") == [{"acc": 0.7, "loss": 2, "run": 2}]


def test_disk_cache_is_used_invalidated_and_safe_to_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = experiment(tmp_path / "repo" / "x")
    write_log(exp.path / "log-1.jsonl", [{"name": "s/1", "data": {"v": 5, "tag": "a"}}])
    cache = tmp_path / "repo" / ".dbx" / "cache" / "query"
    query = parse("s/:k | select k, v, tag")

    def run() -> list[dict]:
        engine._CACHE = engine.TableCache()  # a fresh process: only the disk cache remains
        return Engine([Source(experiment=exp)], cache_dir=cache).run(query).to_dict("records")

    assert run() == [{"k": 1, "v": 5, "tag": "a"}]
    (cached,) = cache.iterdir()
    with monkeypatch.context() as patch:  # answered from the cache, without reading the log
        patch.setattr(table, "Matching", lambda *a: pytest.fail("log was read"))
        assert run() == [{"k": 1, "v": 5, "tag": "a"}]
    write_log(
        exp.path / "log-1.jsonl",
        [{"name": "s/1", "data": {"v": 5}}, {"name": "s/2", "data": {"v": 6, "tag": "b"}}],
    )
    assert [row["v"] for row in run()] == [5, 6]  # the log changed: re-read
    cached.unlink()
    assert [row["v"] for row in run()] == [5, 6]
    for damaged in cache.iterdir():
        damaged.write_bytes(b"garbage")
    assert [row["v"] for row in run()] == [5, 6]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_cache_file_is_ignored_and_rewritten(tmp_path: Path, damage: str) -> None:
    """The cache is derived data: damage (a full disk, a stray edit) costs a re-read, never
    an error or a wrong answer."""
    exp = experiment(tmp_path / "repo" / "x")
    events = [{"name": f"s/{k}", "data": {"v": k, "tag": "ab"[k % 2]}} for k in range(4)]
    write_log(exp.path / "log-1.jsonl", events)
    cache = tmp_path / "repo" / ".dbx" / "cache" / "query"
    query = parse("s/:k | select k, v, tag")

    def run() -> list[dict]:
        engine._CACHE = engine.TableCache()
        return Engine([Source(experiment=exp)], cache_dir=cache).run(query).to_dict("records")

    expected = run()
    (cached,) = cache.iterdir()
    good = cached.read_bytes()
    if damage == "truncate":
        cached.write_bytes(good[:-3])
    else:  # same length, one value changed inside a JSON column
        at = good.rindex(b'"b"')
        cached.write_bytes(good[:at] + b'"c"' + good[at + 3 :])
    assert run() == expected
    assert cached.read_bytes() == good  # rewritten


def test_a_failed_cache_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = experiment(tmp_path / "repo" / "x")
    write_log(exp.path / "log-1.jsonl", [{"name": "s/1", "data": {"v": 5}}])
    cache = tmp_path / "repo" / ".dbx" / "cache" / "query"
    real_write = Path.write_bytes

    def disk_full(self: Path, data: bytes) -> int:
        real_write(self, data[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    engine._CACHE = engine.TableCache()
    table = Engine([Source(experiment=exp)], cache_dir=cache).run(parse("s/:k | select v"))
    assert table["v"].tolist() == [5]  # the cache is best effort
    assert list(cache.iterdir()) == []


def test_the_memory_cache_is_bounded_by_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table, "MEMORY_ROWS", 1000)
    cache = table.TableCache()
    big = table.Table({"v": np.arange(600)}, 600)
    for index in range(3):
        cache.remember(("big", str(index), "merged"), [], big)
    assert list(cache._memory) == [("big", "2", "merged")]  # two of 600 rows do not fit
    small = table.Table({"v": np.arange(5)}, 5)
    for index in range(50):  # each entry also costs its overhead, so empty ones are bounded too
        cache.remember(("small", str(index), "merged"), [], small)
    assert len(cache._memory) == 1000 // (5 + table.ENTRY_ROWS)
    assert cache.rows <= 1000


def test_cross_experiment_columns_and_group(tmp_path: Path) -> None:
    sources = []
    for seed in range(3):
        exp = experiment(tmp_path / f"e{seed}", name=f"prune/m{seed}", seed=seed)
        write_log(
            exp.path / "log-1.jsonl",
            [
                {"name": f"prune/step/{k}", "data": {"test_acc": 0.9 - k / 10 + seed / 100}}
                for k in range(3)
            ],
        )
        sources.append(Source(experiment=exp))
    engine = Engine(sources)
    table = engine.run(parse("prune/step/:k | where params.seed > 0"))
    assert list(table.columns)[:2] == ["exp.id", "exp.name"]
    assert table["exp.name"].tolist() == ["prune/m1"] * 3 + ["prune/m2"] * 3
    grouped = engine.run(
        parse("prune/step/:k | group k: mean(1 - test_acc) as err, se(1 - test_acc) as se, count()")
    )
    assert grouped["err"].round(3).tolist() == [0.09, 0.19, 0.29]
    assert grouped["count"].tolist() == [3, 3, 3]
    assert grouped["se"].iloc[0] == pytest.approx(0.01 / math.sqrt(3))
    per_exp = engine.run(parse("prune/step/:k | last 1 | select exp.name, params.seed, k"))
    assert per_exp.to_dict("records")[0] == {  # exp.id stays: it tells the experiments apart
        "exp.id": "e0",
        "exp.name": "prune/m0",
        "params.seed": 0,
        "k": 2,
    }


def test_tail_waits_for_the_end_of_a_torn_line(tmp_path: Path) -> None:
    log = tmp_path / "log-1.jsonl"
    tail = Tail(log)
    assert tail.read_new() == []
    second = event_line("b", 2, v=1)
    log.write_text(f"{event_line('a')}\n\n{second[:20]}")
    assert [(line, e["name"]) for line, e in tail.read_new()] == [(0, "a")]
    with log.open("a") as handle:
        handle.write(second[20:] + "\n")
    assert tail.read_new() == [(2, json.loads(second))]  # line numbers count blanks
    assert tail.read_new() == []


def test_modes_merge_keep_or_amend_events() -> None:
    events = numbered(
        [
            {"name": "a", "run": 1, "data": {"v": 1}},
            {"name": "b", "run": 1, "data": {}},
            {"name": "a", "run": 1, "data": {"v": 2}},
            {"name": "a", "run": 2, "data": {"w": 3}},
        ]
    )
    pattern = Pattern("a")

    def rows(mode: str) -> list[tuple]:
        found = table.extract(events, pattern, mode)
        columns = [found.column(name) for name in ("_pos", "run", "v", "w")]
        return [tuple(np.asarray(c, dtype=object)[i] for c in columns) for i in range(found.length)]

    assert rows(table.MERGED) == [(0, 2, 2, 3)]  # first position, newest run and data
    assert rows(table.RAW) == [(0, 1, 1, None), (2, 1, 2, None), (3, 2, None, 3)]
    assert rows(table.OCCURRENCES) == [(0, 1, 1, None), (2, 2, 2, 3)]  # run 2 amends the latest


def test_the_disk_cache_keeps_modes_apart(tmp_path: Path) -> None:
    exp = experiment(tmp_path / "repo" / "x")
    write_log(exp.path / "log-1.jsonl", [{"name": "s", "data": {"v": v}} for v in (1, 2)])
    cache = tmp_path / "repo" / ".dbx" / "cache" / "query"
    for merge, expected in ((True, [2]), (False, [1, 2]), (True, [2])):
        engine._CACHE = engine.TableCache()
        found = Engine([Source(experiment=exp)], merge=merge, cache_dir=cache).run(parse("s"))
        assert found["v"].tolist() == expected
    assert len(list(cache.iterdir())) == 2
