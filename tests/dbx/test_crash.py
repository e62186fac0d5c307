"""A run ends badly in every way a real one can; the repository must stay readable."""

import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx import lifecycle


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
    run = exp.runs()[0]
    assert len(exp.events()) == 1000
    # Exit handlers cannot tell a normal end from sys.exit(n): the code is not guessed.
    assert (run["status"], run["exit_code"]) == ("exited", None) and run["end"] is not None


@pytest.mark.parametrize(
    ("body", "code", "status", "exit_code"),
    [
        ("sys.exit(3)", 3, "exited", None),  # unknowable at exit: not recorded as a success
        ("raise KeyboardInterrupt", 130, "interrupted", 130),
        ("with exp:\n    sys.exit(3)", 3, "failed", 3),
        ("with exp:\n    sys.exit(0)", 0, "finished", 0),
        ("with exp:\n    raise KeyboardInterrupt", 130, "interrupted", 130),
    ],
)
def test_exit_status_is_recorded_as_accurately_as_python_allows(
    repo: dbx.Repository, body: str, code: int, status: str, exit_code: int | None
) -> None:
    proc = _start(repo, f'exp = dbx.create("crash/code", repo=sys.argv[1])\n{body}\n')
    assert proc.wait(20) in (code, -signal.SIGINT)
    run = dbx.open("crash/code", repo=repo).runs()[0]
    assert (run["status"], run["exit_code"]) == (status, exit_code)


def test_exit_on_a_full_disk_does_not_hang(repo: dbx.Repository) -> None:
    proc = _start(
        repo,
        """
        import errno, os
        exp = dbx.create("crash/full", repo=sys.argv[1])
        exp.log("kept", i=0)
        exp.flush()
        def full(fd, data):
            raise OSError(errno.ENOSPC, "No space left on device")
        os.write = full
        exp.log("lost", i=1)
        """,
    )
    assert proc.wait(20) == 0
    assert proc.stderr is not None and "No space left on device" in proc.stderr.read()
    exp = dbx.open("crash/full", repo=repo)
    assert [e["name"] for e in exp.events()] == ["kept"]
    assert exp.runs()[0]["status"] == "exited"


def test_sigterm_handler_takes_no_lock_that_registering_holds(monkeypatch) -> None:
    closed = []

    class Run:
        def _finish(self, status, exit_code=None, exception=None):
            closed.append((status, exit_code))

    item = Run()
    monkeypatch.setitem(lifecycle._previous, "handler", signal.SIG_IGN)
    monkeypatch.setitem(lifecycle._open, id(item), (item, None))
    with lifecycle._install_lock:  # as if SIGTERM arrived in the middle of register()
        handler = threading.Thread(target=lifecycle._on_sigterm, args=(signal.SIGTERM, None))
        handler.start()
        handler.join(5)
    assert not handler.is_alive() and closed == [("terminated", 128 + signal.SIGTERM)]


def test_huge_tracebacks_are_stored_bounded(repo: dbx.Repository) -> None:
    def ping(n: int) -> int:  # mutual recursion: Python cannot fold its repeated lines
        return pong(n + 1) + 1

    def pong(n: int) -> int:
        return ping(n + 1) + 1

    with pytest.raises(RecursionError), dbx.create("deep", repo=repo) as exp:
        ping(0)
    size = (exp.path / "run-1.json").stat().st_size
    exception = exp.runs()[0]["exception"]
    assert size < 40_000 and exception["type"] == "RecursionError"
    assert "characters cut" in exception["traceback"]
    assert exception["traceback"].rstrip().endswith("maximum recursion depth exceeded")


def test_half_created_experiment_is_skipped(repo: dbx.Repository, tmp_path: Path) -> None:
    (repo.path / "x" / "0123456789ab").mkdir(parents=True)  # crash between mkdir and meta
    dbx.create("y", repo=repo).close()
    assert [e.name for e in repo.experiments()] == ["y"]
    assert any("meta.json: missing" in p for p in repo.verify())


@pytest.mark.parametrize(
    ("code", "status", "exit_code"),
    [
        (False, "finished", 0),
        (True, "failed", 1),
        (None, "finished", 0),
        (2, "failed", 2),
        ("bye", "failed", 1),
    ],
)
def test_sys_exit_codes_are_recorded_as_integers(
    repo: dbx.Repository, code: object, status: str, exit_code: int
) -> None:
    with pytest.raises(SystemExit), dbx.create("exit", repo=repo) as exp:
        sys.exit(code)
    run = exp.runs()[0]  # a bool here would make the record unreadable
    assert (run["status"], run["exit_code"]) == (status, exit_code)
    assert type(run["exit_code"]) is int


def _interactive(repo: dbx.Repository, lines: str) -> dict:
    """The first run of experiment ``i`` after ``lines`` were typed into ``python -i``."""
    proc = subprocess.run(
        [sys.executable, "-i", "-c", f"from squeezr import dbx; R = {str(repo.path)!r}"],
        input=textwrap.dedent(lines),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return dbx.open("i", repo=repo).runs()[0]


def test_an_error_handled_at_the_prompt_before_the_run_is_not_its_failure(
    repo: dbx.Repository,
) -> None:
    run = _interactive(repo, "1 / 0\nexp = dbx.create('i', repo=R)\nexp.log('x')\n")
    assert (run["status"], run["exit_code"], run["exception"]) == ("exited", None, None)


def test_an_error_at_the_prompt_during_the_run_is_recorded(repo: dbx.Repository) -> None:
    run = _interactive(repo, "exp = dbx.create('i', repo=R)\n1 / 0\n")
    assert run["status"] == "failed" and run["exception"]["type"] == "ZeroDivisionError"
