"""A run ends badly in every way a real one can; the repository must stay readable."""

import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

from squeezr import dbx


def _start(repo: dbx.Repository, body: str) -> subprocess.Popen:
    script = "import sys\nfrom squeezr import dbx\n" + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", script, str(repo.path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""


def test_sigkill_while_logging_loses_nothing_flushed(repo: dbx.Repository) -> None:
    proc = _start(
        repo,
        """
        exp = dbx.create("crash/kill", repo=sys.argv[1])
        i = 0
        while True:
            i += 1
            exp.log("step", i=i, payload="x" * 200)
            if i == 500:
                exp.flush()
                print("ready", flush=True)
        """,
    )
    _wait_ready(proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    exp = dbx.open("crash/kill", repo=repo)
    with open(exp.path / "log-1.jsonl", "a") as handle:  # what a kill mid-write leaves
        handle.write('{"name": "step", "id": "1-9999999", "data": {"i"')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        events = exp.events()
    assert any("torn last line" in str(w.message) for w in caught)
    seqs = [e["data"]["i"] for e in events]
    assert len(seqs) >= 500 and seqs == list(range(1, len(seqs) + 1))
    assert [e["id"] for e in events[:2]] == ["1-1", "1-2"]
    assert exp.runs()[0]["status"] == "running"  # killed: nobody could record the end
    problems = repo.verify()
    assert len(problems) == 1 and "torn" in problems[0]


def test_sigterm_flushes_and_records_terminated(repo: dbx.Repository) -> None:
    proc = _start(
        repo,
        """
        import time
        exp = dbx.create("crash/term", repo=sys.argv[1])
        for i in range(100):
            exp.log("step", i=i)
        print("ready", flush=True)
        time.sleep(60)
        """,
    )
    _wait_ready(proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == -signal.SIGTERM  # the default action still ends the process
    exp = dbx.open("crash/term", repo=repo)
    assert len(exp.events()) == 100
    run = exp.runs()[0]
    assert run["status"] == "terminated" and run["exit_code"] == 128 + signal.SIGTERM
    assert run["end"] is not None


def test_sigterm_chains_a_previous_handler(repo: dbx.Repository) -> None:
    proc = _start(
        repo,
        """
        import signal, time
        signal.signal(signal.SIGTERM, lambda *a: (print("mine", flush=True), sys.exit(3)))
        exp = dbx.create("crash/chain", repo=sys.argv[1])
        exp.log("step", i=1)
        print("ready", flush=True)
        time.sleep(60)
        """,
    )
    _wait_ready(proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 3
    assert proc.stdout is not None and proc.stdout.read().strip() == "mine"
    exp = dbx.open("crash/chain", repo=repo)
    assert exp.runs()[0]["status"] == "terminated" and len(exp.events()) == 1


def test_uncaught_exception_without_close_is_recorded_at_exit(repo: dbx.Repository) -> None:
    proc = _start(
        repo,
        """
        exp = dbx.create("crash/raise", repo=sys.argv[1])
        exp.log("step", i=1)
        print("ready", flush=True)
        raise RuntimeError("diverged")
        """,
    )
    _wait_ready(proc)
    assert proc.wait(20) == 1
    exp = dbx.open("crash/raise", repo=repo)
    run = exp.runs()[0]
    assert run["status"] == "failed" and run["exception"]["message"] == "diverged"
    assert len(exp.events()) == 1


def test_normal_exit_without_close_flushes(repo: dbx.Repository) -> None:
    proc = _start(
        repo,
        """
        exp = dbx.create("crash/exit", repo=sys.argv[1])
        for i in range(1000):
            exp.log("step", i=i)
        print("ready", flush=True)
        """,
    )
    _wait_ready(proc)
    assert proc.wait(20) == 0
    exp = dbx.open("crash/exit", repo=repo)
    assert len(exp.events()) == 1000 and exp.runs()[0]["status"] == "finished"


def test_half_created_experiment_is_skipped(repo: dbx.Repository, tmp_path: Path) -> None:
    (repo.path / "x" / "0123456789ab").mkdir(parents=True)  # crash between mkdir and meta
    dbx.create("y", repo=repo).close()
    assert [e.name for e in repo.experiments()] == ["y"]
    assert any("meta.json: missing" in p for p in repo.verify())
