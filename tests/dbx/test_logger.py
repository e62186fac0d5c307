import errno
import json
import math
import time
import types
from pathlib import Path

import numpy as np
import pytest

from squeezr import dbx
from squeezr.dbx.errors import UserError
from squeezr.dbx.logger import LogWriter


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


def test_log_costs_the_caller_about_one_json_encoding(repo: dbx.Repository) -> None:
    """``log()`` encodes the event (so a bad value is the caller's error) and queues it;
    measured against that encoding in the same process, not against a clock: the test
    machine is shared. Both are the calling thread's CPU time (``time.thread_time``), so the
    writer thread's work and the time spent waiting for the GIL it holds do not count."""
    from squeezr.dbx import jsonx

    count = 20000
    event = {"name": "train/step", "id": "1-1", "ts": 1.5, "run": 1}
    start = time.thread_time()
    for i in range(count):
        jsonx.encode({**event, "data": {"loss": 0.5, "step": i}})
    encoding = time.thread_time() - start
    with dbx.create("speed", repo=repo) as exp:
        start = time.thread_time()
        for i in range(count):
            exp.log("train/step", loss=0.5, step=i)
        logging = time.thread_time() - start
    assert len(exp.events()) == count
    assert logging < 5 * encoding


def test_values_json_cannot_hold_are_converted(repo: dbx.Repository) -> None:
    with dbx.create("a", repo=repo) as exp:
        exp.log("np", acc=np.float32(0.25), hist=np.arange(3), bad=math.inf)
        with pytest.warns(UserWarning, match="stored as text"):
            exp.log("odd", thing=object(), fine=1)
            exp.flush()
        cycle: list = []
        cycle.append(cycle)
        with pytest.warns(UserWarning, match="stored as text"):
            exp.log("cycle", loop=cycle, fine=2)
            exp.flush()
        exp.log("after", ok=True)  # the writer is still alive
    np_event, odd, cyclic, after = exp.events()
    assert np_event["data"] == {"acc": 0.25, "hist": [0, 1, 2], "bad": math.inf}
    assert odd["data"]["fine"] == 1 and odd["data"]["thing"].startswith("<object object")
    assert cyclic["data"] == {"loop": "[[...]]", "fine": 2} and after["data"] == {"ok": True}


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


class _FailingWrites:
    """``os.write`` that fails with ENOSPC while ``failing`` is set, optionally after
    letting ``partial`` bytes of the first failing call through (a write cut short)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, partial: int = 0) -> None:
        import os

        self.real = os.write
        self.failing = True
        self.partial = partial
        monkeypatch.setattr("squeezr.dbx.logger.os.write", self)

    def __call__(self, fd: int, data: bytes) -> int:
        if not self.failing:
            return self.real(fd, data)
        if self.partial:
            written, self.partial = self.real(fd, data[: self.partial]), 0
            return written
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_write_keeps_the_events_and_flush_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log-1.jsonl"
    writer = LogWriter(path, 1, interval=0.01)
    writes = _FailingWrites(monkeypatch, partial=30)  # the first line is cut after 30 bytes
    for i in range(3):
        writer.log("step", {"i": i})
    with pytest.raises(UserError, match=r"log-1\.jsonl: .*No space left on device") as info:
        writer.flush(timeout=10)
    assert "\n" not in str(info.value)
    writer.log("step", {"i": 3})  # logging goes on while the disk is full
    time.sleep(0.05)  # the writer retries in the background, and fails again
    writes.failing = False
    assert writer.flush(timeout=10)
    events = _lines(path)  # the cut line was completed, nothing duplicated or lost
    assert [e["data"]["i"] for e in events] == [0, 1, 2, 3]
    assert [e["id"] for e in events] == ["1-1", "1-2", "1-3", "1-4"]
    writer.close()


def test_close_on_a_full_disk_raises_instead_of_hanging(
    repo: dbx.Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = dbx.create("full", repo=repo)
    exp.log("before", x=1)
    exp.flush()
    _FailingWrites(monkeypatch)
    exp.log("lost", x=2)
    with pytest.raises(UserError, match=r"cannot write log .*log-1\.jsonl.*the last 1 events"):
        exp.close()
    monkeypatch.undo()
    run = exp.runs()[0]  # the end of the run is recorded all the same
    assert run["status"] == "finished" and run["end"] is not None
    assert [e["name"] for e in exp.events()] == ["before"]


def test_a_failing_close_does_not_hide_the_programs_exception(
    repo: dbx.Repository, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="boom"), dbx.create("full", repo=repo) as exp:
        _FailingWrites(monkeypatch)
        exp.log("lost", x=1)
        raise ValueError("boom")
    assert "dbx: warning: cannot write log" in capsys.readouterr().err
    monkeypatch.undo()
    assert exp.runs()[0]["status"] == "failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((5,), "event name must be a non-empty string"),
        (("",), "event name must be a non-empty string"),
        (("x", [1, 2]), "data must be a dict"),
        (("x", "text"), "data must be a dict"),
    ],
)
def test_log_rejects_bad_names_and_data(repo: dbx.Repository, args, message) -> None:
    with dbx.create("a", repo=repo) as exp:
        with pytest.raises(UserError, match=message):
            exp.log(*args)
        exp.log("ok", types.MappingProxyType({"a": 1}), b=2)  # any mapping will do
    assert [e["data"] for e in dbx.open("a", repo=repo).events()] == [{"a": 1, "b": 2}]


@pytest.mark.parametrize(
    "data",
    [
        {"loss": 0.5, "step": 3, "ok": True, "note": None, "tag": "a"},
        {"text": "é ü 中文 🙂", "quote": 'say "hi"\n\t\\'},
        {"big": 1e16, "small": 1e-7, "neg": -0.0, "max": 2**63 - 1, "min": -(2**63)},
        {"beyond_64_bits": 2**64 + 1, "x": 1.5},  # orjson refuses: json's path writes it
        {"nan": float("nan"), "inf": float("-inf")},  # not plain: the $numberDouble marker
        {"list": [1, 2.5, "x"], "nested": {"a": {"b": 1}}},  # not plain: jsonx's path
        {},
    ],
)
def test_every_event_reads_back_as_logged_whichever_encoder_wrote_it(
    tmp_path: Path, data: dict
) -> None:
    """Plain scalar events are written by orjson, the rest by jsonx: the values read back
    are the same either way (the text may differ: UTF-8 for ``\\u`` escapes, ``1e16``)."""
    from squeezr.dbx import jsonx

    path = tmp_path / "log-1.jsonl"
    writer = LogWriter(path, 1)
    writer.log("m", dict(data))
    writer.close()
    (line,) = path.read_bytes().splitlines()
    event = jsonx.loads(line)
    expected = jsonx.loads(jsonx.encode(data))
    assert event["name"] == "m" and event["run"] == 1
    assert jsonx.encode(event["data"]) == jsonx.encode(expected)
