import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx import runinfo

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def test_secrets_are_redacted() -> None:
    env = {
        "HF_TOKEN": "t",
        "AWS_SECRET_ACCESS_KEY": "s",
        "DB_PASSWORD": "p",
        "PGPASSWORD": "p",
        "my_passwd": "p",
        "GOOGLE_APPLICATION_CREDENTIALS": "c",
        "AUTH_HEADER": "a",
        "WANDB_API_KEY": "k",
        "PATH": "/bin",
        "CUDA_VISIBLE_DEVICES": "0",
        "MONKEY": "banana",  # KEY is a word, not a substring
        "TOKENIZERS_PARALLELISM": "false",
        "HF_TOKEN_PATH": "/home/me/.hf",  # names where a secret is, not the secret
        "SSH_AUTH_SOCK": "/tmp/ssh.sock",
        "PWD": "/work",
    }
    kept = {"PATH", "CUDA_VISIBLE_DEVICES", "MONKEY", "TOKENIZERS_PARALLELISM"}
    kept |= {"HF_TOKEN_PATH", "SSH_AUTH_SOCK", "PWD"}
    out = runinfo.redact_env(env)
    assert {k for k, v in out.items() if v == "<redacted>"} == set(env) - kept
    assert all(out[k] == env[k] for k in kept)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["t.py", "--api-key", "abc", "--lr", "0.1"],
            ["t.py", "--api-key", "<redacted>", "--lr", "0.1"],
        ),
        (["t.py", "--password=hunter2"], ["t.py", "--password=<redacted>"]),
        (["t.py", "--hf_token", "x", "data"], ["t.py", "--hf_token", "<redacted>", "data"]),
        (["t.py", "--token-file", "t.txt"], ["t.py", "--token-file", "t.txt"]),
        (["t.py", "--monkey", "x", "--token"], ["t.py", "--monkey", "x", "--token"]),
        (["t.py", "--secret", "--verbose"], ["t.py", "--secret", "--verbose"]),
        (["t.py", "-k", "key", "token"], ["t.py", "-k", "key", "token"]),
    ],
)
def test_secret_options_are_redacted_in_the_command_line(argv, expected) -> None:
    assert runinfo.redact_argv(argv) == expected


def test_capture_outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.setenv("MY_API_KEY", "hunter2")
    record, patch = runinfo.capture(cwd=tmp_path)
    assert patch == b""
    assert record["git"] == {
        "commit": None,
        "branch": None,
        "remote": None,
        "untracked": [],
        "dirty": None,
        "patch": None,
    }
    assert record["run"] is None and record["argv"] == sys.argv and record["cwd"] == str(tmp_path)
    assert record["orig_argv"] == sys.orig_argv
    assert record["python"]["executable"] == sys.executable and record["status"] == "running"
    assert record["env"]["MY_API_KEY"] == "<redacted>" and record["hostname"]


def test_capture_without_git_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    record, patch = runinfo.capture(cwd=Path.cwd())
    assert record["git"]["commit"] is None and patch == b""


def _git(cwd: Path, *argv: str) -> None:
    subprocess.run(["git", *argv], cwd=cwd, check=True, capture_output=True)


@needs_git
def test_run_records_git_state_and_patch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo: dbx.Repository
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    _git(code, "init", "-q", "-b", "main")
    _git(
        code,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    )
    (code / "train.py").write_text("print(1)\n")
    _git(code, "add", "train.py")
    _git(code, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "train")
    _git(code, "remote", "add", "origin", "https://me:ghp_secret@example.org/code.git")
    (code / "train.py").write_text("print(2)\n")
    (code / "notes.txt").write_text("new\n")
    monkeypatch.chdir(code)
    with dbx.create("a", repo=repo) as exp:
        pass
    git = exp.runs()[0]["git"]
    assert len(git["commit"]) == 40 and git["branch"] == "main"
    assert git["remote"] == "https://me:<redacted>@example.org/code.git"  # no token in the record
    assert git["untracked"] == ["notes.txt"] and git["dirty"] is True
    assert git["patch"] == "run-1.patch"
    patch = (exp.path / "run-1.patch").read_text()
    assert "-print(1)" in patch and "+print(2)" in patch
