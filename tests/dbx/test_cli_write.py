"""``dbx init / log / attach / notes / verify``: commands that write to a repository."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx.cli import main
from squeezr.dbx.cli.log import parse_fields
from squeezr.dbx.errors import UserError


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # outside any git tree: runs need not capture a patch
    root = tmp_path / "experiments"
    with dbx.create("train/a", kind="train", params={"lr": 0.1}, repo=root) as exp:
        exp.log("train/epoch/0/eval", val_acc=0.5)
    monkeypatch.setenv("DBX_REPO", str(root))
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_init_creates_a_findable_repository(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("DBX_REPO", raising=False)
    target = tmp_path / "new"
    code, out, _ = run(capsys, "init", str(target))
    assert code == 0 and "dbx repository at" in out
    assert run(capsys, "init", str(target))[0] == 0  # idempotent
    (target / "sub").mkdir()
    monkeypatch.chdir(target / "sub")
    code, _, err = run(capsys, "ls")  # found as the nearest enclosing repository, but empty
    assert code == 1 and "no experiments match" in err


def test_init_takes_the_folder_from_repo_when_no_path_is_given(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.delenv("DBX_REPO", raising=False)
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "--repo", str(tmp_path / "x"), "init")[0] == 0
    assert run(capsys, "init", "--repo", str(tmp_path / "y"))[0] == 0
    assert run(capsys, "--repo", "z", "init", "./z")[0] == 0  # the same folder twice is fine
    assert {p.parent.name for p in tmp_path.glob("*/.dbx")} == {"x", "y", "z"}
    assert not (tmp_path / ".dbx").exists()
    code, _, err = run(capsys, "--repo", "a", "init", "b")
    assert code == 2 and "--repo" in err and err.count("\n") == 1
    assert run(capsys, "init")[0] == 0 and (tmp_path / ".dbx").is_dir()


def test_log_appends_an_event_in_a_new_run(repo: Path, capsys) -> None:
    code, out, _ = run(
        capsys, "log", "train/a", "eval/test", "test_acc=0.91", "split=test", "top.k=[1, 5]"
    )
    assert code == 0 and out.startswith("logged eval/test to ")
    exp = dbx.open("train/a", repo=repo)
    event = exp.events(prefix="eval/test")[-1]
    assert event["data"] == {"test_acc": 0.91, "split": "test", "top": {"k": [1, 5]}}
    assert event["run"] == 2
    assert [e["name"] for e in exp.events()] == ["train/epoch/0/eval", "eval/test"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([], {}),
        (
            ["a=1", "b=x", "c=true", "d=null", "e="],
            {"a": 1, "b": "x", "c": True, "d": None, "e": ""},
        ),
        (["a.b=1", "a.c=2"], {"a": {"b": 1, "c": 2}}),
        (['s="1"', "t=1e3", 'u={"v": 2}'], {"s": "1", "t": 1000.0, "u": {"v": 2}}),
        (["eq=a=b"], {"eq": "a=b"}),
    ],
)
def test_parse_fields(fields: list[str], expected: dict) -> None:
    assert parse_fields(fields) == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (["novalue"], "cannot read 'novalue'; write event data as key=value"),
        (["=1"], "cannot read '=1'"),
        (["a..b=1"], "cannot read 'a..b=1'"),
        (["a=1", "a.b=2"], r"cannot set event field 'a\.b': 'a' already holds 1, not an object"),
        (["a.b=1", "a=2"], "'a' conflicts with earlier keys under it"),
    ],
)
def test_parse_fields_errors(fields: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_fields(fields)


def test_log_errors(repo: Path, capsys) -> None:
    code, _, err = run(capsys, "log", "train/a", "eval", "oops")
    assert code == 2 and "key=value" in err
    code, _, err = run(capsys, "log", "nosuch", "eval", "a=1")
    assert code == 2 and err.startswith("dbx: error: ")
    code, _, err = run(capsys, "log", "train/a", "/", "a=1")
    assert code == 2 and "event name is empty" in err


def test_attach_copies_with_checksum(repo: Path, tmp_path: Path, capsys) -> None:
    source = tmp_path / "model.txt"
    source.write_text("weights")
    code, out, _ = run(capsys, "attach", "train/a", str(source), "--name", "best.txt")
    assert code == 0 and "files/best.txt (7 bytes, sha256 " in out
    exp = dbx.open("train/a", repo=repo)
    assert exp.attachment_path("best.txt").read_text() == "weights"
    assert exp.run_numbers() == [1]  # attaching starts no run
    code, out, _ = run(capsys, "show", "train/a")
    assert "files/best.txt" in out


def test_attach_missing_file(repo: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "attach", "train/a", str(tmp_path / "nope.pt"))
    assert code == 2 and "no such file" in err
    (tmp_path / "ok.pt").write_bytes(b"1")
    code, _, err = run(capsys, "attach", "train/a", str(tmp_path / "ok.pt"), "--name", "../x")
    assert code == 2 and err.startswith("dbx: error: ") and err.count("\n") == 1


def test_notes_set_append_show(repo: Path, capsys, monkeypatch) -> None:
    code, _, err = run(capsys, "notes", "train/a")
    assert code == 1 and "has no notes" in err
    assert run(capsys, "notes", "train/a", "lr too high")[0] == 0
    assert run(capsys, "notes", "train/a", "--append", "rerun with 0.05")[0] == 0
    code, out, _ = run(capsys, "notes", "train/a")
    assert (code, out) == (0, "lr too high\n\nrerun with 0.05\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\n"))
    assert run(capsys, "notes", "train/a", "-")[0] == 0
    assert run(capsys, "notes", "train/a")[1] == "from stdin\n"
    assert "from stdin" in run(capsys, "show", "train/a")[1]
    code, _, err = run(capsys, "notes", "train/a", "x", "--append", "y")
    assert code == 2 and "either TEXT" in err


def test_verify_ok_then_problems(repo: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = run(capsys, "verify")
    assert code == 0 and "1 experiment(s)" in out and "no problems" in out
    source = tmp_path / "m.bin"
    source.write_bytes(b"12345")
    run(capsys, "attach", "train/a", str(source))
    exp = dbx.open("train/a", repo=repo)
    (exp.path / "files" / "m.bin").write_bytes(b"tampered")
    (exp.path / "results.json").write_text("{not json")
    code, out, _ = run(capsys, "verify")
    assert code == 1
    problems = out.splitlines()
    assert problems[-1].startswith("2 problem(s)") or problems[-1].startswith("3 problem(s)")
    assert any("m.bin" in line for line in problems)
    assert any("results.json" in line for line in problems)
