"""dbx sync between folders: the pure plan, merge rules, A->B->A->B fixed point, and a sync
killed at random points that, re-run, ends with identical repositories."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from squeezr import dbx
from squeezr.dbx.sync import sync
from squeezr.dbx.sync.local import LocalTransport
from squeezr.dbx.sync.plan import merge_notes, merge_results, plan

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _inv(**changes: Any) -> dict[str, Any]:
    base = {
        "meta": {"id": "0123456789ab", "name": "a"},
        "results": {},
        "notes": "",
        "runs": {"1": {"end": "2024-01-01"}},
        "logs": {"1": [5, 5]},
        "attachments": {},
    }
    return {"0123456789ab": {**base, **changes}}


def test_plan_copies_only_what_is_behind() -> None:
    kinds = [a.kind for a in plan(_inv(), {})]
    assert kinds == ["experiment", "events", "run"]
    assert plan(_inv(), _inv()) == []
    assert [a.kind for a in plan(_inv(logs={"1": [7, 7]}), _inv())] == ["events"]
    assert plan(_inv(), _inv(logs={"1": [7, 7]})) == []  # the destination has more
    running = _inv(runs={"1": {"end": None, "status": "running"}})
    assert [a.kind for a in plan(_inv(), running)] == ["run"]
    assert plan(running, _inv()) == []  # a running record never replaces a finished one
    old = {"f": {"sha256": "a" * 64, "size": 1, "added": "2024-01-01"}}
    new = {"f": {"sha256": "b" * 64, "size": 1, "added": "2024-02-01"}}
    assert [a.key for a in plan(_inv(attachments=new), _inv(attachments=old))] == ["f"]
    assert plan(_inv(attachments=old), _inv(attachments=new)) == []


def test_merge_rules_reach_a_fixed_point() -> None:
    assert merge_results({"a": 1, "n": {"x": 1}}, {"a": 2, "n": {"y": 2}}) == {
        "a": 2,
        "n": {"x": 1, "y": 2},
    }
    a, b = "from A", "from B"
    b = merge_notes(b, a)  # A -> B
    a = merge_notes(a, b)  # B -> A
    assert a == b == "from B\n\nfrom A"
    assert merge_notes(b, a) == b  # A -> B again: nothing


def _make(repo: Path, count: int, events: int, tmp: Path) -> None:
    blob = tmp / "weights.bin"
    blob.write_bytes(os.urandom(50_000))
    for i in range(count):
        with dbx.create(f"grid/lr{i}", params={"i": i}, repo=repo) as exp:
            for k in range(events):
                exp.log(f"train/epoch/{k}", loss=1 / (k + 1), acc=float("nan") if k == 3 else k)
            exp.results["best"] = {"acc": i}
            exp.notes = f"run {i}"
            exp.attach(blob)
            exp.attach(blob, name=f"copies/{i}.bin")


def _state(path: Path) -> dict[str, Any]:
    """Everything a sync must carry, comparable across repositories."""
    inventory = LocalTransport(path).inventory(None)
    transport = LocalTransport(path)
    for exp_id, info in inventory.items():
        info["events"] = {
            run: [e["id"] for e in transport.events(exp_id, int(run))] for run in info["logs"]
        }
        info["attachments"] = {k: v["sha256"] for k, v in info["attachments"].items()}
        for run, events in info["events"].items():
            assert len(events) == len(set(events)), f"duplicate events in run {run}"
    return inventory


def test_a_to_b_to_a_to_b_is_a_no_op_the_third_time(tmp_path: Path) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    _make(a, 3, 20, tmp_path)
    assert sync(str(a), str(b))
    exp = dbx.resume("grid/lr0", repo=b)  # B adds a run, a result and notes
    exp.log("eval/test", acc=0.5)
    exp.results["test"] = 0.5
    exp.close()
    dbx.open("grid/lr0", repo=b).append_notes("checked on B")
    dbx.open("grid/lr1", repo=a).append_notes("checked on A")
    assert sync(str(b), str(a))
    dbx.open("grid/lr1", repo=a).results["best.acc"] = 99  # A changes after B -> A
    assert sync(str(a), str(b))  # A's changes reach B
    assert sync(str(a), str(b)) == []
    assert sync(str(b), str(a)) == []
    assert _state(a) == _state(b)
    merged = dbx.open("grid/lr0", repo=a)
    assert merged.results["test"] == 0.5 and merged.run_numbers() == [1, 2]
    assert dbx.open("grid/lr1", repo=b).results["best.acc"] == 99
    assert dbx.open("grid/lr1", repo=b).notes == "run 1\n\nchecked on A"
    assert [e["id"] for e in merged.events()][-1] == "2-1"


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    _make(tmp_path / "A", 2, 3, tmp_path)
    actions = sync(str(tmp_path / "A"), str(tmp_path / "B"), dry_run=True)
    assert {a.kind for a in actions} == {
        "experiment",
        "attachment",
        "events",
        "run",
        "results",
        "notes",
    }
    assert not (tmp_path / "B").exists() or not list(dbx.Repository(tmp_path / "B").experiments())


@pytest.mark.slow
def test_sync_killed_at_random_points_resumes_to_identical_repositories(tmp_path: Path) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    _make(a, 40, 400, tmp_path)
    rng = random.Random(16)
    argv = [
        sys.executable,
        "-c",
        "from squeezr.dbx.cli import main; raise SystemExit(main())",
        "sync",
        str(a),
        str(b),
    ]
    env = {**os.environ, "PYTHONPATH": SRC}
    # kill within the time a whole sync takes here (start-up included), so that most kills
    # land inside the copying whatever the machine's speed
    started = time.monotonic()
    subprocess.run([*argv[:-1], str(tmp_path / "timing")], env=env, check=True)
    whole = time.monotonic() - started
    kills = midway = 0
    while kills < 20:
        process = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.0) * whole)
        if process.poll() is not None:  # finished before the kill: start over from scratch
            import shutil

            shutil.rmtree(b)
            continue
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        if b.exists():
            # experiments are written a chunk at a time and appear when the chunk is
            # renamed into place: a kill before that has left log lines but no meta.json
            touched = any(b.rglob("log-*.jsonl"))
            midway += touched and _state(a) != _state(b)
    assert midway >= 5  # most kills landed inside the copying, not before or after it
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _state(a) == _state(b)
    assert sync(str(a), str(b)) == []
    assert dbx.Repository(b).verify() == []


@pytest.mark.parametrize("flush", ["syncfs", "fsync"])
def test_chunked_writes_leave_whole_files_and_no_temporaries(
    tmp_path: Path, flush: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Into a folder a chunk is staged, flushed once and renamed into place (``syncfs``), or
    written file by file durably where there is no ``syncfs``; both give the same copy and
    leave no temporary file, with several attachments of one experiment in one chunk."""
    import squeezr.dbx.sync.apply as apply
    import squeezr.dbx.sync.local as local

    if flush == "fsync":
        monkeypatch.setattr(local, "_syncfs", None)
    monkeypatch.setattr(apply, "CHUNK_EXPERIMENTS", 2)  # several chunks
    a, b = tmp_path / "A", tmp_path / "B"
    _make(a, 5, 20, tmp_path)
    assert sync(str(a), str(b))
    assert _state(a) == _state(b)
    assert sync(str(a), str(b)) == []
    assert not [p for p in b.rglob("*.tmp")]
    assert dbx.Repository(b).verify() == []
