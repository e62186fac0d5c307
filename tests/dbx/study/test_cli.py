"""The study commands' failure paths: one line on stderr, exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx.cli import main

from .conftest import write_study


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["study"], "say what to do: dbx study plan|generate|run|test FILE"),
        (["study", "plan", "nope.toml"], "no study file nope.toml"),
        (
            ["study", "generate", "{toy}", "--local", "--", "--time=1"],
            "sbatch options are for --slurm",
        ),
        (["study", "generate", "{toy}", "--slurm", "--", "-t", "1"], "give long options"),
        (["study", "generate", "{toy}", "--slurm", "--", "--array=0-3"], "--array is set by dbx"),
        (["study", "generate", "{toy}", "--local", "--slots", "0"], "--slots must be 1 or more"),
        (["study", "run", "{toy}", "--slots", "2", "--gpus", "0"], "not both"),
        (["study", "test", "{toy}", "--stage", "nope"], "has no stage 'nope'"),
        (["tune", "{toy}"], "has no [tune] table"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path,
    study_repo: dbx.Repository,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    toy = str(write_study(tmp_path, seeds=1))
    assert main([arg.replace("{toy}", toy) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_plan_table_and_json(
    tmp_path: Path, study_repo: dbx.Repository, capsys: pytest.CaptureFixture[str]
) -> None:
    toy = str(write_study(tmp_path, seeds=2))
    assert main(["study", "plan", toy, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "toy/s0" in out and " - " in out and "2 new (would record" in err
    assert list(study_repo.experiments()) == []
    assert main(["study", "plan", toy, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["status"], r["change"]) for r in rows] == [
        ("toy/s0", "planned", "new"),
        ("toy/s1", "planned", "new"),
    ]
    assert len(rows[0]["id"]) == 12
