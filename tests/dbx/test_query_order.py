"""Runs that overlap in time: queries, live queries and ``exp.merged_events()`` agree on
(ts, run, seq) order, not on the order of the run files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx import query
from squeezr.dbx.cli import main


@pytest.fixture
def overlapping(tmp_path: Path) -> tuple[Path, dbx.Experiment]:
    """Run 1 logs v=1, run 2 (an add-on evaluation, started while run 1 still logs) v=2,
    then run 1 v=3: the newest value is 3, though run 2's file comes last."""
    root = tmp_path / "experiments"
    first = dbx.create("m", kind="train", repo=root)
    first.log("m", v=1)
    first.log("step/0", acc=0.1)
    first.flush()
    second = dbx.resume(first.id, repo=root)
    second.log("m", v=2)
    second.log("eval", w=2)
    second.close()
    first.log("m", v=3)
    first.log("step/1", acc=0.3)
    first.close()
    return root, dbx.open(first.id, repo=root)


def test_the_newest_value_wins_by_time_not_by_run_file(
    overlapping: tuple[Path, dbx.Experiment], capsys: pytest.CaptureFixture[str]
) -> None:
    root, exp = overlapping
    assert exp.merged_events()["m"]["v"] == 3
    assert main(["query", "m | select v", "--repo", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"v": 3}]
    assert query.run("m | select v, run", repo=root).to_dict("records") == [{"v": 3, "run": 1}]


def test_raw_first_last_and_joins_follow_time_order(
    overlapping: tuple[Path, dbx.Experiment],
) -> None:
    root, exp = overlapping
    raw = query.run("m | select v, run", repo=root, raw=True)
    assert raw.to_dict("records") == [{"v": 1, "run": 1}, {"v": 2, "run": 2}, {"v": 3, "run": 1}]
    assert [e["data"]["v"] for e in exp.events("m")] == raw["v"].tolist()
    assert query.run("m | last 1 | select v", repo=root, raw=True)["v"].tolist() == [3]
    assert query.run("** | first 3 | select name", repo=root)["name"].tolist()[:3] == [
        "m",
        "step/0",
        "eval",
    ]
    # run 2's eval happened between step 0 and step 1
    joined = query.run("step/:k | after eval | select k, after.w", repo=root)
    assert joined.fillna(-1).to_dict("records") == [{"k": 0, "after.w": 2}, {"k": 1, "after.w": -1}]
    joined = query.run("step/:k | before m | select k, before.v", repo=root, raw=True)
    assert joined.to_dict("records") == [{"k": 0, "before.v": 1}, {"k": 1, "before.v": 3}]
    joined = query.run("eval | before m | after m as next | select before.v, next.v", repo=root)
    assert joined.to_dict("records") == [{"before.v": 2, "next.v": 3}]


def test_live_queries_agree_with_finished_reads(
    overlapping: tuple[Path, dbx.Experiment],
) -> None:
    root, _ = overlapping
    for text, raw in (("m | select v", False), ("m | select v", True), ("** | select name", False)):
        finished = query.run(text, repo=root, raw=raw)
        live = next(query.follow(text, repo=root, raw=raw, stop=lambda: True))
        assert live.equals(finished), text


def test_the_disk_cache_keeps_the_time_order(overlapping: tuple[Path, dbx.Experiment]) -> None:
    root, _ = overlapping
    from squeezr.dbx.query import engine

    for _ in range(2):
        engine._CACHE = engine.TableCache()  # a new process: the second read is from disk
        assert query.run("m | select v", repo=root)["v"].tolist() == [3]
