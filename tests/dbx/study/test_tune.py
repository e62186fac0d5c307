"""``dbx tune``: Optuna over dbx experiments, intermediate values from live log listeners."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from squeezr import dbx
from squeezr.dbx.cli import main

from .conftest import PYTHON

pytestmark = pytest.mark.slow

STEPS = 8
# A toy objective: the curve climbs to x; a trial with a small x is worse at every step.
TOY = f"""name = "toy"

[[stage]]
name = "fit"
command = "{PYTHON} -c 'import sys, time; from squeezr import dbx; x = float(sys.argv[1]); e = dbx.create(\\"fit\\", params=dict(x=x)); [e.log(f\\"epoch/{{{{i}}}}\\", score=x * (i + 1) / {STEPS}) or time.sleep(0.15) for i in range({STEPS})]; e.close()' {{x}}"
experiment = "toy/fit/{{x}}"
grid.x = [0.5]

[tune]
experiment = "toy/tune/{{trial}}"
objective = "epoch/:i score"
direction = "maximize"
sampler = "random"
seed = 3
pruner = "median"
startup = 2
warmup = 1
trials = 7
space.x = {{ low = 0.0, high = 1.0 }}
"""


def test_median_pruner_stops_bad_trials_early_and_the_search_resumes(
    tmp_path: Path, study_repo: dbx.Repository, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tune.toml"
    path.write_text(TOY)
    assert main(["tune", str(path), "--poll", "0.05", "--json"]) == 0
    trials = json.loads(capsys.readouterr().out)
    assert len(trials) == 7
    pruned = [t for t in trials if t["state"] == "pruned"]
    complete = [t for t in trials if t["state"] == "complete"]
    assert pruned, trials
    for trial in trials:
        exp = dbx.open(trial["id"], repo=study_repo)
        steps = len(exp.events("epoch/"))
        assert exp.value("results.tune.state") == trial["state"]
        assert exp.value("params.x") == trial["params.x"]
        if trial["state"] == "pruned":
            assert steps < STEPS  # stopped early
            assert exp.runs()[-1]["status"] == "terminated"
        else:
            assert steps == STEPS
            assert trial["value"] == pytest.approx(trial["params.x"])
    best = max(t["params.x"] for t in complete)
    assert all(t["params.x"] < best for t in pruned)
    # a tuner killed mid-trial leaves that trial running in the journal
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(
            str(study_repo.path / ".dbx/studies/toy/optuna.journal")
        )
    )
    search = optuna.load_study(study_name="toy", storage=storage)
    search.enqueue_trial({"x": 0.99})
    search.ask().suggest_float("x", 0.0, 1.0)  # started: its params are drawn
    # resumable: asking for 9 runs two more trials and keeps the first seven; the stale
    # trial is marked failed and its params are tried again
    assert main(["tune", str(path), "--trials", "9", "--poll", "0.05", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again[:7] == trials
    assert again[7]["state"] == "fail" and again[7]["params.x"] == 0.99
    assert again[8]["params.x"] == 0.99 and again[8]["state"] == "complete"
    assert len([t for t in again if t["state"] in ("complete", "pruned")]) == 9
    assert again[9]["params.x"] not in [t["params.x"] for t in trials]  # new points drawn
