"""``dbx study run``: slots, restarts of failed experiments, surviving its own death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx.cli import main
from squeezr.dbx.runs import experiment_status
from squeezr.dbx.study.runner import make_slots

from .conftest import PYTHON, write_study

# The toy experiment, slowed down so that the runner can be killed while some run.
SLOW = (
    f"{PYTHON} -c 'import os, sys, time; from squeezr import dbx; "
    'e = dbx.create("toy", params=dict(seed=int(sys.argv[1]), epochs=int(sys.argv[2]))); '
    '[e.log(f"step/{{i}}", loss=1.0, gpu=os.environ.get("CUDA_VISIBLE_DEVICES")) '
    "or time.sleep(0.8) for i in range(3)]; "
    'e.results["acc"] = 0.5; e.close()\' {seed} {epochs}'
)


def _runner(path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [
            PYTHON,
            "-c",
            "import sys; from squeezr.dbx.cli import main; sys.exit(main(sys.argv[1:]))",
            "study",
            "run",
            str(path),
            "--gpus",
            "0,1",
            "--poll",
            "0.1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_runner_survives_being_killed_and_runs_each_experiment_once(
    tmp_path: Path, study_repo: dbx.Repository
) -> None:
    path = write_study(tmp_path, seeds=6, command=SLOW)
    first = _runner(path)
    deadline = time.monotonic() + 60
    statuses: list[str] = []
    while time.monotonic() < deadline:  # kill it once some are done and others run
        statuses = [experiment_status(e) for e in study_repo.experiments("toy/")]
        if statuses.count("done") >= 1 and statuses.count("running") == 2:
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert "planned" in statuses, "the runner was not killed midway"
    second = _runner(path)
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 0, output
    assert "started by an earlier runner" in output  # it waited for the orphans
    exps = list(study_repo.experiments("toy/"))
    assert len(exps) == 6
    for exp in exps:
        assert [r["status"] for r in exp.runs()] == ["finished"], exp.name
    gpus = {e.events("step/")[0]["data"]["gpu"] for e in exps}
    assert gpus == {"0", "1"}  # each slot's process saw its own GPU only
    assert main(["study", "test", str(path)]) == 0
    # done means skipped: a third run starts nothing
    third = _runner(path)
    output, _ = third.communicate(timeout=60)
    assert third.returncode == 0 and "started" not in output


def test_failed_experiments_are_restarted_a_bounded_number_of_times(
    tmp_path: Path, study_repo: dbx.Repository, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = (
        f'{PYTHON} -c \'from squeezr import dbx; e = dbx.create("t", params=dict(seed={{seed}}));'
        " e.__enter__(); e.__exit__(ZeroDivisionError, ZeroDivisionError(), None); raise SystemExit(1)'"
    )
    path = write_study(tmp_path, seeds=1, command=failing)
    assert main(["study", "run", str(path), "--retries", "2", "--poll", "0.05"]) == 1
    (exp,) = study_repo.experiments("toy/")
    assert [r["status"] for r in exp.runs()] == ["failed"] * 3
    assert "giving up on toy/s0: failed 3 times" in capsys.readouterr().err
    # the bound holds across restarts: a new runner does not start it again
    assert main(["study", "run", str(path), "--retries", "2", "--poll", "0.05"]) == 1
    assert len(exp.runs()) == 3


def test_a_command_that_records_nothing_is_reported(
    tmp_path: Path, study_repo: dbx.Repository, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_study(tmp_path, seeds=1, command="true {seed}")
    assert main(["study", "run", str(path), "--retries", "0", "--poll", "0.05"]) == 1
    assert "without recording a run; does its command call dbx.create?" in capsys.readouterr().err


def test_slots() -> None:
    assert [s.gpu for s in make_slots(None, "0,1", per_gpu=2)] == ["0", "0", "1", "1"]
    assert [s.gpu for s in make_slots(3, None)] == [None] * 3
    with pytest.raises(Exception, match="not both"):
        make_slots(2, "0")


@pytest.mark.slow
def test_sigterm_stops_the_experiments_and_the_next_run_finishes_them(
    tmp_path: Path, study_repo: dbx.Repository
) -> None:
    path = write_study(tmp_path, seeds=2, command=SLOW)
    first = _runner(path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(experiment_status(e) == "running" for e in study_repo.experiments("toy/")) == 2:
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    output, _ = first.communicate(timeout=60)
    assert first.returncode != 0 and "run it again to continue" in output
    statuses = {e.name: [r["status"] for r in e.runs()] for e in study_repo.experiments("toy/")}
    assert statuses == {"toy/s0": ["terminated"], "toy/s1": ["terminated"]}
    second = _runner(path)
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 0, output
    for exp in study_repo.experiments("toy/"):
        assert [r["status"] for r in exp.runs()] == ["terminated", "finished"]
    assert main(["study", "test", str(path)]) == 0
