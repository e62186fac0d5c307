"""Re-running experiments: which run ``dbx cmd`` picks and the command it rebuilds, for
scripts, ``python -m``, ``python -c`` and commands whose secrets were redacted."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx.cli import main
from squeezr.dbx.runs import command_line

SCRIPT = """\
import sys
from squeezr import dbx
with dbx.create("rerun/me", params={"args": sys.argv[1:]}, repo=sys.argv[1]):
    pass
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A work folder outside any git tree, with the script as a file and as a module."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    work = tmp_path / "work"
    (work / "pkg").mkdir(parents=True)
    (work / "train.py").write_text(SCRIPT)
    (work / "pkg" / "__init__.py").write_text("")
    (work / "pkg" / "main.py").write_text(SCRIPT)
    monkeypatch.setenv("DBX_REPO", str(tmp_path / "experiments"))
    return work


def rerun(folder: Path, capsys: pytest.CaptureFixture[str], *argv: str, **env: str) -> list:
    """Run ``argv`` in ``folder``, re-run what ``dbx cmd`` prints, return both runs' args."""
    repo = os.environ["DBX_REPO"]
    subprocess.run([sys.executable, *argv], cwd=folder, check=True)
    assert main(["cmd", "rerun/me"]) == 0
    out = capsys.readouterr().out
    command = "\n".join(line for line in out.splitlines() if not line.startswith("# "))
    subprocess.run(["bash", "-c", command], check=True, env={**os.environ, **env})
    runs = list(dbx.Repository.find(repo).experiments(prefix="rerun/me"))
    assert len(runs) == 2
    return [exp.params["args"] for exp in runs]


@pytest.mark.parametrize(
    "argv",
    [
        ["train.py", "REPO", "--lr", "0.1"],
        ["-u", "train.py", "REPO", "--lr", "0.1"],
        ["-m", "pkg.main", "REPO", "--lr", "0.1"],
        ["-c", SCRIPT, "REPO", "--lr", "0.1"],
    ],
    ids=["script", "interpreter-option", "module", "code"],
)
def test_cmd_runs_the_same_program_again(folder: Path, capsys, argv: list[str]) -> None:
    argv = [os.environ["DBX_REPO"] if arg == "REPO" else arg for arg in argv]
    first, again = rerun(folder, capsys, *argv)
    assert first == again == [os.environ["DBX_REPO"], "--lr", "0.1"]


def test_redacted_secrets_must_be_filled_in(folder: Path, capsys) -> None:
    repo = os.environ["DBX_REPO"]
    subprocess.run(
        [sys.executable, "train.py", repo, "--api-key", "s3cret"], cwd=folder, check=True
    )
    exp = dbx.open("rerun/me")
    assert exp.params["args"][-1] == "s3cret"  # params are the program's business...
    assert "s3cret" not in (exp.path / "run-1.json").read_text()  # ...the run record is dbx's
    assert main(["cmd", "rerun/me"]) == 0
    *comments, command = capsys.readouterr().out.splitlines()
    assert "# fill in API_KEY: redacted secrets" in comments
    assert '--api-key "${API_KEY:?set API_KEY' in command
    refused = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert refused.returncode != 0 and "set API_KEY" in refused.stderr
    env = {**os.environ, "API_KEY": "other"}
    subprocess.run(["bash", "-c", command], check=True, env=env)
    again = [e.params["args"][-1] for e in dbx.Repository.find(repo).experiments()]
    assert sorted(again) == ["other", "s3cret"]


def test_cmd_and_code_default_to_the_run_that_created_the_experiment(folder: Path, capsys) -> None:
    repo = os.environ["DBX_REPO"]
    subprocess.run([sys.executable, "train.py", repo, "--lr", "0.1"], cwd=folder, check=True)
    assert main(["log", "rerun/me", "eval/test", "acc=0.9"]) == 0  # run 2, made by dbx itself
    capsys.readouterr()
    assert main(["cmd", "rerun/me"]) == 0
    out = capsys.readouterr().out
    assert "run 1" in out.splitlines()[0] and out.splitlines()[-1].endswith("--lr 0.1")
    assert main(["cmd", "rerun/me", "--run", "2"]) == 0
    out = capsys.readouterr().out
    assert "run 2" in out.splitlines()[0] and not out.endswith("--lr 0.1\n")


def test_console_scripts_and_old_records(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    python = {"executable": "/venv/bin/python"}
    direct = {"argv": [str(tool), "x"], "orig_argv": ["python", str(tool), "x"], "python": python}
    assert command_line(direct) == [str(tool), "x"]  # run as typed, via its #! line
    old = {"argv": ["train.py", "--lr", "1"], "python": python}  # recorded before orig_argv
    assert command_line(old) == ["/venv/bin/python", "train.py", "--lr", "1"]


def test_python_api_command(folder: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pkg.main", os.environ["DBX_REPO"]], cwd=folder, check=True
    )
    text = dbx.command(dbx.open("rerun/me"))
    assert text.startswith("# dbx experiment ") and "-m pkg.main" in text
    assert text.splitlines()[-1].startswith(f"cd {folder} && {sys.executable} -m pkg.main")
    assert textwrap.dedent(text) == text
