"""``dbx cmd`` and ``dbx code``: re-running an experiment and recovering its exact code."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx.cli import main

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

SCRIPT = """\
import sys
from squeezr import dbx
with dbx.create("rerun/me", kind="train", params={"args": sys.argv[1:]}, repo=sys.argv[1]):
    pass
"""


def git(folder: Path, *argv: str) -> str:
    done = subprocess.run(["git", "-C", str(folder), *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git project with experiment ``clean`` (x = 1, committed) and ``dirty`` (x = 2, not
    committed); the working tree is then changed to x = 3."""
    for var in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{var}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{var}_EMAIL", "test@example.com")
    folder = tmp_path / "project"
    folder.mkdir()
    git(folder, "init", "-q", "-b", "main")
    (folder / "model.py").write_text("x = 1\n")
    git(folder, "add", "model.py")
    git(folder, "commit", "-q", "-m", "first")
    repo = tmp_path / "experiments"
    monkeypatch.setenv("DBX_REPO", str(repo))
    monkeypatch.chdir(folder)
    with dbx.create("clean", params={"x": 1}, repo=repo):
        pass
    (folder / "model.py").write_text("x = 2\n")
    with dbx.create("dirty", params={"x": 2}, repo=repo):
        pass
    (folder / "model.py").write_text("x = 3\n")
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_code_between_two_experiments(project: Path, capsys) -> None:
    code, out, _ = run(capsys, "code", "clean", "dirty")
    assert code == 0
    assert "-x = 1\n+x = 2\n" in out


def test_code_against_the_working_tree(project: Path, capsys) -> None:
    code, out, _ = run(capsys, "code", "dirty")
    assert code == 0 and "-x = 2\n+x = 3\n" in out
    code, out, _ = run(capsys, "code", "clean", "--stat")
    assert code == 0 and "model.py | 2 +-" in out
    (project / "model.py").write_text("x = 2\n")
    code, out, err = run(capsys, "code", "dirty")
    assert (code, out) == (1, "") and "no code differences" in err
    assert git(project, "status", "--porcelain") == "M model.py"  # index untouched


def test_checkout_restores_the_exact_code(project: Path, capsys) -> None:
    first = git(project, "rev-parse", "HEAD")
    git(project, "checkout", "-q", "model.py")
    code, out, _ = run(capsys, "code", "dirty", "--checkout", "exp-dirty")
    assert code == 0 and "checked out exp-dirty" in out
    assert git(project, "branch", "--show-current") == "exp-dirty"
    assert (project / "model.py").read_text() == "x = 2\n"
    assert git(project, "rev-parse", "HEAD~1") == first
    code, _, _ = run(capsys, "code", "clean", "--checkout", "exp-clean")
    assert code == 0 and git(project, "rev-parse", "HEAD") == first
    assert (project / "model.py").read_text() == "x = 1\n"


def test_checkout_refuses_to_overwrite_local_changes(project: Path, capsys) -> None:
    code, _, err = run(capsys, "code", "dirty", "--checkout", "exp-dirty")
    assert code == 2 and "branch exp-dirty created but not checked out" in err
    assert (project / "model.py").read_text() == "x = 3\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["code", "dirty", "--checkout", "a..b"], "'a..b' is not a valid branch name"),
        (["code", "dirty", "clean", "--checkout", "b"], "--checkout takes one experiment"),
        (["code", "dirty", "--run", "7"], "has no run 7; its runs are 1"),
        (["code", "nosuch"], "nosuch"),
    ],
)
def test_code_user_errors(project: Path, capsys, argv, message) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1


def test_code_existing_branch_is_an_error(project: Path, capsys) -> None:
    code, _, err = run(capsys, "code", "clean", "--checkout", "main")
    assert code == 2 and "cannot create branch 'main'" in err


def test_code_outside_git_or_without_the_commit(project: Path, tmp_path: Path, capsys) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code, _, err = run(capsys, "code", "clean", "-C", str(elsewhere))
    assert code == 2 and "is not inside a git working tree" in err
    git(elsewhere, "init", "-q")
    code, _, err = run(capsys, "code", "clean", "-C", str(elsewhere))
    assert code == 2 and "is not in" in err and "git fetch" in err


def test_code_of_an_experiment_run_outside_git(
    project: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    outside = tmp_path / "nogit"
    outside.mkdir()
    monkeypatch.chdir(outside)
    with dbx.create("nogit", repo=tmp_path / "experiments"):
        pass
    code, _, err = run(capsys, "code", "nogit", "-C", str(project))
    assert code == 2 and "has no git commit recorded" in err
    code, out, _ = run(capsys, "cmd", "nogit")
    assert code == 0 and "# no git commit recorded" in out


def test_cmd_prints_a_command_that_runs_again(project: Path, tmp_path: Path, capsys) -> None:
    script = project / "train.py"
    script.write_text(SCRIPT)
    repo = tmp_path / "experiments"
    subprocess.run([sys.executable, "train.py", str(repo), "--lr", "0.1"], check=True)
    code, out, _ = run(capsys, "cmd", "rerun/me")
    assert code == 0
    *comments, command = out.splitlines()
    assert comments[0].startswith("# dbx experiment ") and comments[0].endswith("rerun/me, run 1")
    assert comments[1] == f"# git commit {git(project, 'rev-parse', 'HEAD')} (branch main)"
    assert "uncommitted changes" in comments[2]
    assert command.startswith(f"cd {shlex.quote(str(project))} && ")
    assert shlex.split(command)[-4:] == ["train.py", str(repo), "--lr", "0.1"]
    subprocess.run(["bash", "-c", command], check=True, cwd=tmp_path)
    again = list(dbx.Repository.find(repo).experiments(prefix="rerun/me"))
    assert len(again) == 2
    assert again[0].params["args"] == again[1].params["args"]


def test_python_api_code_diff(project: Path) -> None:
    clean, dirty = dbx.open("clean"), dbx.open("dirty")
    assert "-x = 1\n+x = 2\n" in dbx.code_diff(clean, dirty)
    assert "-x = 2\n+x = 3\n" in dbx.code_diff(dirty)  # against the working tree
    (project / "model.py").write_text("x = 2\n")
    assert dbx.code_diff(dirty, git_dir=project) == ""


def test_non_utf8_code_is_recorded_and_restored_byte_for_byte(
    project: Path, tmp_path: Path, capsys
) -> None:
    latin = "café = 1\n".encode("latin-1")
    (project / "latin.py").write_bytes(b"# first\n")
    git(project, "add", "latin.py")
    git(project, "commit", "-q", "-m", "latin")
    (project / "latin.py").write_bytes(latin)  # an uncommitted change that is not UTF-8
    with dbx.create("latin", repo=tmp_path / "experiments") as exp:
        pass
    expected = subprocess.run(
        ["git", "diff", "HEAD", "--binary"], cwd=project, capture_output=True, check=True
    ).stdout
    assert b"caf\xe9" in expected and (exp.path / "run-1.patch").read_bytes() == expected
    code, out, _ = run(capsys, "code", "dirty")  # against a working tree holding Latin-1
    assert code == 0 and "+caf\ufffd = 1" in out
    code, out, _ = run(capsys, "code", "dirty", "latin")
    assert code == 0 and "+caf\ufffd = 1" in out
    git(project, "checkout", "-q", ".")
    code, _, err = run(capsys, "code", "latin", "--checkout", "exp-latin")
    assert code == 0, err
    assert (project / "latin.py").read_bytes() == latin
