"""Generated scripts (snapshot, byte-identical regeneration, running one) and ``study test``."""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx.cli import main
from squeezr.dbx.study import render
from squeezr.dbx.study.expand import expand, render_command
from squeezr.dbx.study.plan import plan
from squeezr.dbx.study.spec import load

from .conftest import write_study

SNAPSHOT = """#!/usr/bin/env bash
# Study 'toy' from toy.toml (sha256 {sha}):
# 2 experiments in 1 stage, run in 2 parallel slots.
# Written by dbx; regenerate it (byte for byte) with:
#   cd /work && dbx study generate toy.toml --local --repo /repo --slots 2
# Each experiment runs with DBX_EXPERIMENT set to its planned id. Check the result
# with: dbx study test {path} --repo /repo
set -uo pipefail
cd {workdir}
export DBX_REPO=/repo
slots=2
slot() {{  # wait until fewer than $slots experiments are running
  while [ "$(jobs -rp | wc -l)" -ge "$slots" ]; do wait -n; done
}}
failed=0

# stage train: 2 experiments
slot; (export DBX_EXPERIMENT=000000000000; echo 0 2) &  # toy/s0
slot; (export DBX_EXPERIMENT=000000000001; echo 1 2) &  # toy/s1
wait

# failures are recorded in each experiment: dbx study test tells which
"""


def test_local_script_snapshot(tmp_path: Path) -> None:
    study = load(write_study(tmp_path, seeds=2, command="echo {seed} {epochs}"))
    items = expand(study)
    by_key = {item.key: item for item in items}
    for number, item in enumerate(items):
        item.id = f"{number:012d}"
    for item in items:
        item.command = render_command(study, item, by_key)
    command = render.regenerate_command("toy.toml", "local", Path("/repo"), slots=2)
    text = render.local_script(study, items, Path("/repo"), Path("/work"), command, slots=2)
    assert text == SNAPSHOT.format(sha=study.sha256[:16], path=study.path, workdir=study.workdir)


def _header_command(script: Path) -> tuple[str, list[str]]:
    line = next(line for line in script.read_text().splitlines() if line.startswith("#   cd "))
    cwd, _, command = line.removeprefix("#   cd ").partition(" && ")
    return shlex.split(cwd)[0], shlex.split(command)


@pytest.mark.parametrize(
    "options",
    [
        ["--local"],
        ["--local", "--slots", "3"],
        ["--slurm", "--limit", "2", "--", "--time=5", "--mem", "1G"],
    ],
)
def test_generated_script_regenerates_byte_identically(
    tmp_path: Path, study_repo: dbx.Repository, monkeypatch: pytest.MonkeyPatch, options: list[str]
) -> None:
    path = write_study(tmp_path, seeds=3)
    assert main(["study", "generate", str(path), "-o", "first.sh", *options]) == 0
    first = (tmp_path / "first.sh").read_bytes()
    cwd, argv = _header_command(tmp_path / "first.sh")
    assert argv[0] == "dbx"
    (tmp_path / "first.sh").unlink()
    monkeypatch.chdir("/")
    monkeypatch.delenv("DBX_REPO")  # the header names the repository itself
    monkeypatch.chdir(cwd)
    assert main(argv[1:]) == 0
    assert (tmp_path / "first.sh").read_bytes() == first


def test_local_script_runs_the_study(tmp_path: Path, study_repo: dbx.Repository) -> None:
    path = write_study(tmp_path, seeds=2)
    assert main(["study", "generate", str(path), "--local", "--slots", "2", "-o", "run.sh"]) == 0
    done = subprocess.run(["bash", "run.sh"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert main(["study", "test", str(path)]) == 0


def _run_toy(
    repo: dbx.Repository,
    monkeypatch: pytest.MonkeyPatch,
    exp_id: str | None,
    seed: int,
    epochs: int = 2,
    crash: bool = False,
) -> None:
    """What the toy command does, in this process: adopt ``exp_id`` (None: a new experiment)."""
    if exp_id is not None:
        monkeypatch.setenv("DBX_EXPERIMENT", exp_id)
    expected = pytest.raises(ZeroDivisionError) if crash else contextlib.nullcontext()
    params = {"seed": seed, "epochs": epochs}
    with expected, dbx.create(f"toy/s{seed}", params=params, repo=repo) as e:
        for i in range(3):
            e.log(f"step/{i}", loss=1.0)
        if crash:
            raise ZeroDivisionError("division by zero")
        e.results["acc"] = 0.5


def test_study_test_reports_exactly_the_four_problems(
    tmp_path: Path,
    study_repo: dbx.Repository,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_study(tmp_path, seeds=5)
    ids = [c.item.id for c in plan(study_repo, load(path))]
    _run_toy(study_repo, monkeypatch, ids[0], 0)  # right
    _run_toy(study_repo, monkeypatch, ids[1], 1, epochs=3)  # wrong param
    # seed 2: never run (missing)
    _run_toy(study_repo, monkeypatch, ids[3], 3, crash=True)  # crashed
    _run_toy(study_repo, monkeypatch, ids[4], 4)  # and again by hand: a duplicate
    _run_toy(study_repo, monkeypatch, None, 4)
    capsys.readouterr()
    assert main(["study", "test", str(path), "--json"]) == 1
    found = {row["experiment"]: row for row in json.loads(capsys.readouterr().out)}
    assert sorted(found) == ["toy/s1", "toy/s2", "toy/s3", "toy/s4"]
    assert found["toy/s1"]["problem"] == "params"
    assert found["toy/s1"]["detail"] == "epochs = 3, expected 2"
    assert (found["toy/s2"]["problem"], found["toy/s2"]["detail"]) == (
        "missing",
        "planned, never ran",
    )
    assert found["toy/s3"]["problem"] == "failed"
    assert "ZeroDivisionError: division by zero" in found["toy/s3"]["detail"]
    assert found["toy/s4"]["problem"] == "duplicate"

    # fix it: re-plan and rerun 1, run 2, retry 3, drop the extra 4
    shutil.rmtree(dbx.open(ids[1], repo=study_repo).path)
    extra = [e for e in study_repo.experiments("toy/s4") if e.id != ids[4]]
    shutil.rmtree(extra[0].path)
    ids = [c.item.id for c in plan(study_repo, load(path))]
    _run_toy(study_repo, monkeypatch, ids[1], 1)
    _run_toy(study_repo, monkeypatch, ids[2], 2)
    _run_toy(study_repo, monkeypatch, ids[3], 3)  # a retry: a second run of the same experiment
    capsys.readouterr()
    assert main(["study", "test", str(path)]) == 0
    assert "all 5 experiments done as planned" in capsys.readouterr().err


def test_study_test_checks_log_expectations(
    tmp_path: Path,
    study_repo: dbx.Repository,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_study(tmp_path, seeds=1)
    path.write_text(path.read_text().replace('"step/*" = 3', '"step/*" = 27'))
    (item,) = [c.item for c in plan(study_repo, load(path))]
    _run_toy(study_repo, monkeypatch, item.id, 0)
    capsys.readouterr()
    assert main(["study", "test", str(path), "--json"]) == 1
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["problem"], row["detail"]) == ("expect", "3 step/* events, expected 27")
