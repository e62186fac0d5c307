"""Live queries: ``query.follow`` in-process, and ``dbx query --follow`` as a real process
reading logs that this test writes while it runs."""

from __future__ import annotations

import datetime
import json
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from squeezr import dbx
from squeezr.dbx import clikit, query
from squeezr.dbx.cli import main
from squeezr.dbx.cli import query as cli_query
from squeezr.dbx.errors import UserError
from squeezr.dbx.query import live, parse

LINE_TIMEOUT = 30.0  # seconds to wait for one output line (a cold interpreter imports pandas)


def polls(*actions: Callable[[], object]) -> Callable[[], bool]:
    """A ``stop`` callback that runs one action after each poll and stops after the last."""
    done = 0

    def stop() -> bool:
        nonlocal done
        if done < len(actions):
            actions[done]()
        done += 1
        return done > len(actions)

    return stop


def test_follow_emits_new_rows_as_events_arrive(tmp_path: Path) -> None:
    root = tmp_path / "live"
    exp = dbx.create("live/run", kind="train", repo=root)
    exp.log("train/epoch/0/eval", val_acc=0.5)
    exp.flush()
    log = exp.path / "log-1.jsonl"

    def append(text: str) -> None:
        with log.open("a") as handle:
            handle.write(text)

    def second() -> None:
        exp.log("train/epoch/1/eval", val_acc=0.6)
        exp.flush()
        append('{"name": "train/epoch/2/eval", "id": "1-9", "ts": 1.0, "run": 1, "data": {"val_')

    stop = polls(second, lambda: append('acc": 0.7}}\n'))  # the torn line completed
    text = "train/epoch/:e/eval | select e, val_acc"
    batches = list(query.follow(text, repo=root, interval=0, stop=stop))
    exp.close()
    assert [b.to_dict("records") for b in batches] == [
        [{"e": 0, "val_acc": 0.5}],
        [{"e": 1, "val_acc": 0.6}],
        [{"e": 2, "val_acc": 0.7}],
    ]


def test_follow_keeps_its_columns_and_emits_each_new_or_changed_row_once(
    tmp_path: Path,
) -> None:
    root = tmp_path / "live"
    first = dbx.create("live/a", kind="train", repo=root)
    first.log("train/epoch/0/eval", val_acc=0.5)
    first.flush()
    later: list[dbx.Experiment] = []

    def log(exp: dbx.Experiment, name: str, **data: float) -> None:
        exp.log(name, **data)
        exp.flush()

    def second_experiment() -> None:  # a new experiment, and a data key not seen before
        later.append(dbx.create("live/b", kind="train", repo=root))
        log(later[0], "train/epoch/0/eval", val_acc=0.4, loss=1.5)

    stop = polls(
        lambda: log(first, "train/epoch/1/eval", val_acc=0.6),
        second_experiment,
        lambda: log(first, "train/epoch/1/eval", val_acc=0.65),  # amends a merged row
        lambda: None,
    )
    with pytest.warns(UserWarning, match="loss appeared after the first rows"):
        batches = list(query.follow("train/epoch/:e/eval", repo=root, interval=0, stop=stop))
    for exp in (first, *later):
        exp.close()
    assert {tuple(b.columns) for b in batches} == {("exp.id", "exp.name", "name", "e", "val_acc")}
    rows = [
        [(row["exp.name"], row["e"], row["val_acc"]) for row in b.to_dict("records")]
        for b in batches
    ]
    assert rows == [
        [("live/a", 0, 0.5)],
        [("live/a", 1, 0.6)],
        [("live/b", 0, 0.4)],
        [("live/a", 1, 0.65)],
        [],
    ]


def test_follow_does_not_fail_on_fields_not_logged_yet(tmp_path: Path) -> None:
    root = tmp_path / "live"
    exp = dbx.create("live/run", kind="prune", repo=root)
    exp.log("prune/step/0", test_acc=0.9)
    exp.flush()

    def final() -> None:
        exp.log("finetune/epoch/0/eval", val_acc=0.85)
        exp.log("prune/step/1", test_acc=0.8, note="last")
        exp.flush()

    text = "prune/step/:k | after finetune/**/eval as ft | select k, note, ft.val_acc"
    batches = list(query.follow(text, repo=root, interval=0, stop=polls(final)))
    exp.close()
    records = [b.astype(object).where(b.notna(), None).to_dict("records") for b in batches]
    assert records == [
        [{"k": 0, "note": None, "ft.val_acc": None}],
        [{"k": 0, "note": None, "ft.val_acc": 0.85}, {"k": 1, "note": "last", "ft.val_acc": None}],
    ]


def test_follow_group_rows_come_again_when_their_aggregate_changes(tmp_path: Path) -> None:
    root = tmp_path / "live"
    exp = dbx.create("live/run", kind="prune", repo=root)
    exp.log("prune/step/0", test_acc=0.9)
    exp.flush()

    def more() -> None:
        exp.log("prune/step/1", test_acc=0.7)
        exp.flush()

    text = "prune/step/:k | group exp.kind: count(), mean(test_acc) as acc"
    batches = list(query.follow(text, repo=root, interval=0, stop=polls(more, lambda: None)))
    exp.close()
    assert [b.to_dict("records") for b in batches] == [
        [{"exp.kind": "prune", "count": 1, "acc": 0.9}],
        [{"exp.kind": "prune", "count": 2, "acc": pytest.approx(0.8)}],
        [],
    ]


@pytest.mark.parametrize("interval", [-1, float("nan"), float("inf")])
def test_follow_rejects_an_interval_that_is_not_a_finite_time(
    tmp_path: Path, interval: float
) -> None:
    with pytest.raises(UserError, match="a finite number of seconds, 0 or more"):
        next(query.follow("a", repo=tmp_path, interval=interval))


def test_cli_follow_rejects_a_nan_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dbx.Repository.init(tmp_path / "repo")
    args = ["query", "a", "--repo", str(tmp_path / "repo"), "--follow", "--interval", "nan"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("dbx: error: ") and "finite" in err and err.count("\n") == 1


def test_follow_reads_only_log_files(tmp_path: Path) -> None:
    root = tmp_path / "live"
    exp = dbx.create("live/run", kind="train", repo=root)
    exp.log("s/1", v=1)
    exp.close()
    (exp.path / "log-1.bak.jsonl").write_text((exp.path / "log-1.jsonl").read_text())
    batch = next(query.follow("s/:k | select k, v", repo=root, raw=True))
    assert batch.to_dict("records") == [{"k": 1, "v": 1}]


def test_an_experiment_deleted_while_followed_has_no_new_events(tmp_path: Path) -> None:
    exp = dbx.create("live/run", kind="train", repo=tmp_path / "live")
    exp.log("s/1", v=1)
    exp.close()
    follower = live._Follower(exp, parse("s/:k").patterns())
    assert [event["name"] for _, event in follower.source().events] == ["s/1"]
    shutil.rmtree(exp.path)  # between this poll's selection and its read
    assert [event["name"] for _, event in follower.source().events] == ["s/1"]


def test_streamed_json_lines_hold_what_emit_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """Each --follow --json line is the object ``clikit.emit`` would print for that row, so
    the two outputs never drift apart (dates as ISO text, NaN as null, lists as lists)."""
    rows = pd.DataFrame(
        {"day": [datetime.date(2026, 1, 2)], "acc": [float("nan")], "tags": [["a", 1]]}
    )
    cli_query._stream([rows], "json")
    streamed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    clikit.emit(cli_query._missing_as_none(rows), "json")
    assert streamed == json.loads(capsys.readouterr().out)
    assert streamed == [{"day": "2026-01-02", "acc": None, "tags": ["a", 1]}]


class Follower:
    """``dbx query --follow`` in its own process, its stdout read line by line with a timeout."""

    def __init__(self, *args: str) -> None:
        command = "from squeezr.dbx.cli import main; raise SystemExit(main())"
        self.process = subprocess.Popen(
            [sys.executable, "-c", command, "query", *args, "--follow", "--interval", "0.05"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self) -> str:
        try:
            return self.lines.get(timeout=LINE_TIMEOUT)
        except queue.Empty:
            self.process.kill()
            _, err = self.process.communicate()
            pytest.fail(f"no output from dbx query --follow; stderr: {err}")

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C, as a user stops it: the exit status and what it wrote to stderr."""
        self.process.send_signal(signal.SIGINT)
        try:
            _, err = self.process.communicate(timeout=LINE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        return self.process.returncode, err


@pytest.fixture
def growing(tmp_path: Path):
    """A repository with one experiment whose log the test extends while a follower reads."""
    root = tmp_path / "live"
    exp = dbx.create("live/run", kind="train", repo=root)
    exp.log("train/epoch/0/eval", val_acc=0.5)
    exp.flush()
    yield root, exp
    exp.close()


def test_cli_follow_streams_json_lines(growing: tuple[Path, dbx.Experiment]) -> None:
    root, exp = growing
    follower = Follower("train/epoch/:e/eval", "--repo", str(root), "--json")
    assert json.loads(follower.line()) == {
        "exp.id": exp.id,
        "exp.name": "live/run",
        "name": "train/epoch/0/eval",
        "e": 0,
        "val_acc": 0.5,
    }
    exp.log("train/epoch/1/eval", val_acc=float("nan"), loss=2.0)  # NaN shows as null
    exp.flush()
    row = json.loads(follower.line())
    assert (row["e"], row["val_acc"]) == (1, None)
    assert "loss" not in row  # the columns stay those of the first row
    status, err = follower.interrupt()
    assert status == 130 and "interrupted" in err
    assert "warning: column(s) loss appeared" in err and "Traceback" not in err


def test_cli_follow_streams_csv_with_one_header(growing: tuple[Path, dbx.Experiment]) -> None:
    root, exp = growing
    text = "train/epoch/:e/eval | select e, val_acc, note"
    follower = Follower(text, "live/", "--csv", "--repo", str(root))
    assert [follower.line(), follower.line()] == ["e,val_acc,note", "0,0.5,"]
    exp.log("train/epoch/1/eval", val_acc=0.6, note="a, b")
    exp.flush()
    assert follower.line() == '1,0.6,"a, b"'
    status, _ = follower.interrupt()
    assert status == 130


def test_a_first_poll_answers_like_a_finished_read(tmp_path: Path) -> None:
    """Positions, merging across runs and before/after agree between the two readers."""
    root = tmp_path / "live"
    exp = dbx.create("live/run", kind="prune", repo=root)
    for k in range(3):
        exp.log("finetune/epoch/0/eval", val_acc=0.9 - k / 10)
        exp.log(f"prune/step/{k}", test_acc=0.8 - k / 10)
    exp.close()
    addon = {"name": "finetune/epoch/0/eval", "id": "2-1", "ts": time.time(), "run": 2}
    addon["data"] = {"test_acc": 0.5}
    (exp.path / "log-2.jsonl").write_text(json.dumps(addon) + "\n\n")
    text = (
        "prune/step/:k | before finetune/epoch/:e/eval as ft"
        " | select k, test_acc, ft.val_acc, ft.test_acc"
    )
    for raw in (False, True):
        finished = query.run(text, repo=root, raw=raw)
        live = next(query.follow(text, repo=root, raw=raw))
        assert live.equals(finished)
        assert finished["ft.val_acc"].round(3).tolist() == [0.9, 0.8, 0.7]
        amended = [False, False, True] if not raw else [False, False, False]
        assert finished["ft.test_acc"].notna().tolist() == amended
