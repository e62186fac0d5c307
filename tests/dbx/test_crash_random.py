"""SIGKILL at random moments (issue 11, "must hold"): a process that logs, updates results and
re-attaches a file is killed 110 times at random points; after every kill the repository is
readable, no flushed event is missing, no result reported as written is lost and the
attachment is never corrupt.

Each victim is a forked copy of this process (milliseconds to start, so 110 kills take
seconds); it reports what it has made durable through a pipe (``F run i`` after a flush
returned, ``R run i`` after a result write returned, ``P sha`` before and ``A sha`` after an
attach), and the checks hold the repository to those reports.
"""

from __future__ import annotations

import hashlib
import os
import random
import select
import signal
import time
import warnings
from pathlib import Path

import pytest

from squeezr import dbx

KILLS = 110
pytestmark = pytest.mark.slow


def _victim(repo: Path, ref: str, report: int, seed: int) -> None:
    """The forked child's work, forever (until killed)."""
    rng = random.Random(seed)

    def say(text: str) -> None:
        os.write(report, f"{text}\n".encode())

    exp = dbx.resume(ref, repo=repo)
    say(f"S {exp.run}")
    source = repo.parent / f"source-{os.getpid()}.bin"
    i = 0
    while True:
        i += 1
        exp.log("step", i=i, pad="x" * rng.randrange(200))
        if i % 7 == 0:
            exp.flush()
            say(f"F {exp.run} {i}")
        if i % 11 == 0:
            exp.results[f"r{exp.run}"] = i
            say(f"R {exp.run} {i}")
        if i % 23 == 0:
            content = rng.randbytes(rng.randrange(1, 300_000))
            source.write_bytes(content)
            sha = hashlib.sha256(content).hexdigest()
            say(f"P {sha}")
            exp.attach(source, name="m.bin")
            say(f"A {sha}")


def _kill_once(repo: Path, ref: str, rng: random.Random, started: bool) -> list[list[str]]:
    """Fork a victim and kill it after a random delay, counted from the fork, or (when
    ``started``) from its report that its run has started, so that kills land in the
    start of a run and in its work however loaded the machine is. Its reports, as words."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_end)
            _victim(repo, ref, write_end, rng.randrange(1 << 30))
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    received = b""
    if started:
        deadline = time.monotonic() + 30
        while b"S " not in received and time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 0.1)
            if ready:
                received += os.read(read_end, 1 << 16)
    time.sleep(rng.uniform(0.0, 0.12))
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        text = (received + pipe.read()).decode()
    assert os.WIFSIGNALED(status), f"the victim ended by itself (status {status})"
    return [line.split() for line in text.splitlines() if line.endswith(tuple("0123456789abcdef"))]


def _check(exp: dbx.Experiment, flushed: dict[int, int], written: dict[int, int]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torn last lines are expected after a kill
        events = exp.events()
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "duplicate event ids"
    seen: dict[int, set[int]] = {}
    for event in events:
        seen.setdefault(event["run"], set()).add(event["data"]["i"])
    for run, last in flushed.items():
        assert set(range(1, last + 1)) <= seen.get(run, set()), f"run {run} lost flushed events"
    results = exp.results.tree()
    for run, value in written.items():
        assert results[f"r{run}"] >= value, f"run {run} lost a result"
    problems = [p for p in exp.repo.verify() if "torn or corrupt last line" not in p]
    assert problems == []


def test_random_sigkills_leave_a_sound_repository(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no git capture to wait for
    repo = tmp_path / "experiments"
    with dbx.create("victim", repo=repo) as exp:
        pass
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    flushed: dict[int, int] = {}
    written: dict[int, int] = {}
    prepared: set[str] = set()
    attached: str | None = None
    for number in range(KILLS):
        for word, *rest in _kill_once(repo, exp.id, rng, started=number % 2 == 1):
            if word == "F":
                flushed[int(rest[0])] = int(rest[1])
            elif word == "R":
                written[int(rest[0])] = int(rest[1])
            elif word == "P":
                prepared.add(rest[0])
            elif word == "A":
                attached = rest[0]
        _check(exp, flushed, written)
        if "m.bin" in exp.attachments:  # never corrupt, and one of the files attached
            content = exp.attachment_path("m.bin").read_bytes()
            assert hashlib.sha256(content).hexdigest() in prepared, f"seed {seed}"
        elif attached is not None:
            pytest.fail(f"an attachment reported as done is gone (seed {seed})")
    assert len(exp.run_numbers()) >= KILLS // 2  # half of the kills came after a run started
    assert exp.repo.repair_logs() is not None
    assert exp.repo.verify() == [], f"seed {seed}"
