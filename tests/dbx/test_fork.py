"""A forked child (os.fork, a fork Pool, DataLoader workers) must never touch its parent's run."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx.errors import UserError
from squeezr.dbx.logger import LogWriter

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _ids(exp: dbx.Experiment) -> list[str]:
    return [json.loads(line)["id"] for line in (exp.path / "log-1.jsonl").read_text().splitlines()]


def _in_child(body) -> int:
    """Run ``body()`` in a forked child; its exit status (0: it returned, 1: it raised)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        code = 0
        try:
            body()
        except BaseException as exc:  # report, then leave without running the parent's cleanup
            print(f"child: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            code = 1
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_sigterm_in_a_forked_child_leaves_the_parents_run_alone(repo: dbx.Repository) -> None:
    exp = dbx.create("fork/term", repo=repo)
    for i in range(5):
        exp.log("e", i=i)  # queued, not yet written, when the child is forked

    def child() -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # the default action: the child just dies

    assert _in_child(child) == -signal.SIGTERM
    assert exp.runs()[0]["status"] == "running"
    exp.log("e", i=99)
    exp.close()
    assert _ids(exp) == [f"1-{n}" for n in range(1, 7)]  # no event written twice
    assert exp.runs()[0]["status"] == "finished"


def test_a_child_leaving_the_with_block_does_not_end_the_run(repo: dbx.Repository) -> None:
    with dbx.create("fork/with", repo=repo) as exp:
        exp.log("before")

        def child() -> None:
            with exp:  # what `sys.exit()` in a forked child inside the parent's block does
                pass
            exp.flush()
            exp.close()

        assert _in_child(child) == 0
        assert exp.runs()[0]["status"] == "running"
        exp.log("after")
    assert _ids(exp) == ["1-1", "1-2"]
    assert exp.runs()[0]["status"] == "finished"


def test_logging_from_a_forked_child_is_refused(repo: dbx.Repository, capfd) -> None:
    with dbx.create("fork/log", repo=repo) as exp:
        assert _in_child(lambda: exp.log("from/child", x=1)) == 1
        err = capfd.readouterr().err
        assert "UserError" in err and "forked" in err and "dbx.resume" in err
        exp.log("from/parent")
    assert [e["name"] for e in exp.events()] == ["from/parent"]


def test_a_forked_child_can_start_its_own_run(repo: dbx.Repository) -> None:
    exp = dbx.create("fork/own", repo=repo)

    def child() -> None:
        with dbx.resume(exp.id, repo=repo) as mine:
            mine.log("child")

    assert _in_child(child) == 0
    exp.close()
    runs = {run["run"]: run["status"] for run in exp.runs()}
    assert runs == {1: "finished", 2: "finished"}
    assert [(e["name"], e["run"]) for e in exp.events()] == [("child", 2)]


def test_log_writer_in_a_forked_child_never_writes(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "log-1.jsonl", 1, interval=60)
    writer.log("queued", {})

    def child() -> None:
        with pytest.raises(UserError, match=f"process {os.getppid()}"):
            writer.log("child", {})
        assert writer.flush(timeout=1)
        writer.close()

    assert _in_child(child) == 0
    writer.close()
    assert [e["name"] for e in map(json.loads, (tmp_path / "log-1.jsonl").open())] == ["queued"]


_shared = {}


def _keep(barrier) -> None:
    _shared["barrier"] = barrier


def _block(_: int) -> None:
    _shared["barrier"].wait()  # both workers are busy in a task...
    time.sleep(60)  # ...when leaving the pool's block terminates them


def test_a_fork_pool_that_is_terminated_leaves_the_run_alone(repo: dbx.Repository) -> None:
    exp = dbx.create("fork/pool", repo=repo)
    exp.log("before")
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(3)
    with ctx.Pool(2, initializer=_keep, initargs=(barrier,)) as pool:
        pool.map_async(_block, range(2), chunksize=1)
        barrier.wait(30)
    assert exp.runs()[0]["status"] == "running"
    exp.close()
    assert _ids(exp) == ["1-1"]
    assert exp.runs()[0]["status"] == "finished"
