import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from squeezr import dbx
from squeezr.dbx.logger import LogWriter
from squeezr.errors import UserError


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_flush_makes_events_durable_with_sequential_ids(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "log-3.jsonl", 3, interval=60)
    for i in range(5):
        writer.log("step", {"i": i})
    assert writer.flush(timeout=10)
    events = _lines(tmp_path / "log-3.jsonl")
    assert [e["id"] for e in events] == ["3-1", "3-2", "3-3", "3-4", "3-5"]
    assert [e["data"]["i"] for e in events] == list(range(5))
    assert all(e["run"] == 3 and e["name"] == "step" for e in events)
    writer.close()
    writer.close()


def test_writer_flushes_in_the_background(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "log-1.jsonl", 1, interval=0.05)
    writer.log("a", {})
    deadline = time.monotonic() + 5
    while not (tmp_path / "log-1.jsonl").read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(_lines(tmp_path / "log-1.jsonl")) == 1
    writer.close()


def test_full_batches_wake_the_writer(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "log-1.jsonl", 1, interval=60, batch=10)
    for i in range(10):
        writer.log("a", {"i": i})
    deadline = time.monotonic() + 5
    while len(_lines(tmp_path / "log-1.jsonl")) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(_lines(tmp_path / "log-1.jsonl")) == 10
    writer.close()


def test_log_returns_quickly(repo: dbx.Repository) -> None:
    with dbx.create("speed", repo=repo) as exp:
        count = 20000
        start = time.perf_counter()
        for i in range(count):
            exp.log("train/step", loss=0.5, step=i)
        per_call = (time.perf_counter() - start) / count
    assert len(exp.events()) == count
    # Target is ~1-2 us; the bound is loose because the test machine is shared.
    assert per_call < 50e-6


def test_values_json_cannot_hold_are_converted(repo: dbx.Repository) -> None:
    with dbx.create("a", repo=repo) as exp:
        exp.log("np", acc=np.float32(0.25), hist=np.arange(3), bad=math.inf)
        with pytest.warns(UserWarning, match="stored as text"):
            exp.log("odd", thing=object(), fine=1)
            exp.flush()
    np_event, odd = exp.events()
    assert np_event["data"] == {"acc": 0.25, "hist": [0, 1, 2], "bad": math.inf}
    assert odd["data"]["fine"] == 1 and odd["data"]["thing"].startswith("<object object")


def test_events_merge_across_runs(repo: dbx.Repository) -> None:
    with dbx.create("a", repo=repo) as exp:
        exp.log("eval", acc=0.5, loss=1.0)
        exp.log("train/epoch/1", {"loss": 2.0})
    with dbx.resume(exp.id, repo=repo) as later:
        assert later.run == 2
        later.log("eval", acc=0.75, extra=True)
    reader = dbx.open(exp.id, repo=repo)
    events = reader.events()
    assert [(e["name"], e["id"], e["run"]) for e in events] == [
        ("eval", "1-1", 1),
        ("train/epoch/1", "1-2", 1),
        ("eval", "2-1", 2),
    ]
    assert [e["name"] for e in reader.events(prefix="train/")] == ["train/epoch/1"]
    assert reader.merged_events() == {
        "eval": {"acc": 0.75, "loss": 1.0, "extra": True},
        "train/epoch/1": {"loss": 2.0},
    }


def test_logging_needs_an_open_run(repo: dbx.Repository) -> None:
    exp = dbx.create("a", repo=repo)
    exp.close()
    with pytest.raises(UserError, match="read-only or closed"):
        exp.log("x", a=1)
    with pytest.raises(UserError, match="read-only or closed"):
        dbx.open("a", repo=repo).log("x", a=1)


def test_progress_records_events(repo: dbx.Repository) -> None:
    with dbx.create("a", repo=repo) as exp:
        seen = list(exp.progress(range(5), desc="epoch", disable=True))
        bar = exp.progress(total=3, desc="manual", disable=True, every=0.0)
        for _ in range(3):
            bar.update()
        bar.close()
    assert seen == list(range(5))
    final = exp.merged_events()
    assert final["progress/epoch"]["n"] == 5 and final["progress/epoch"]["total"] == 5
    manual = [e["data"]["n"] for e in exp.events(prefix="progress/manual")]
    assert manual == [1, 2, 3, 3]


def test_exceptions_are_recorded_in_the_run(repo: dbx.Repository) -> None:
    with pytest.raises(ValueError, match="boom"), dbx.create("a", repo=repo) as exp:
        exp.log("before", x=1)
        raise ValueError("boom")
    run = exp.runs()[0]
    assert run["status"] == "failed" and run["exit_code"] == 1
    assert run["exception"]["type"] == "ValueError" and run["exception"]["message"] == "boom"
    assert "raise ValueError" in run["exception"]["traceback"]
    assert [e["name"] for e in exp.events()] == ["before"]
