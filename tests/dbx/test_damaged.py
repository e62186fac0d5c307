"""Hand-edited or damaged files: every command gives a one-line error naming the file (or
reads around it), and ``dbx verify`` reports the problem instead of crashing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx.cli import main
from squeezr.dbx.errors import UserError


@pytest.fixture
def exp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dbx.Experiment:
    """A sound experiment ``a`` with a result, an event, an attachment and two runs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    repo = tmp_path / "experiments"
    (tmp_path / "m.bin").write_bytes(b"weights")
    with dbx.create("a", params={"lr": 0.1}, repo=repo) as made:
        made.results["acc"] = 0.5
        made.log("eval", acc=0.5)
        made.log("train", loss=1.0)
        made.attach(tmp_path / "m.bin")
    with dbx.resume("a", repo=repo) as later:
        later.log("eval", acc=0.6)
    monkeypatch.setenv("DBX_REPO", str(repo))
    assert made.repo.verify() == []
    return made


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(capsys, *argv: str) -> str:
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.startswith("dbx: error: ") and err.count("\n") == 1, err
    return err


def edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_unreadable_creation_time(exp: dbx.Experiment, capsys) -> None:
    edit_json(exp.path / "meta.json", created="garbage")
    assert dbx.open("a").created is None
    assert run(capsys, "ls")[0] == 0  # listing reads around it
    assert run(capsys, "show", "a")[0] == 0
    assert run(capsys, "ls", "--since", "1d")[0] == 1  # unknown age: not "since" anything
    assert any("created 'garbage' is not an ISO time" in p for p in exp.repo.verify())


def test_meta_whose_name_does_not_match_its_folder(exp: dbx.Experiment) -> None:
    edit_json(exp.path / "meta.json", name="b")
    assert any("name 'b' does not match its path 'a'" in p for p in exp.repo.verify())


def test_meta_with_wrong_types(exp: dbx.Experiment, capsys) -> None:
    edit_json(exp.path / "meta.json", params=[1])
    code, _, err = run(capsys, "ls")  # listed around, reported on one line
    assert code == 1 and err.startswith("dbx: warning: skipping an experiment: ")
    assert "meta.json: params must be a JSON object" in err.splitlines()[0]
    err = one_line_error(capsys, "ls", "--strict")
    assert "meta.json: params must be a JSON object" in err
    assert any("params must be a JSON object" in p for p in exp.repo.verify())


def test_event_with_a_text_timestamp(exp: dbx.Experiment, capsys) -> None:
    log = exp.path / "log-1.jsonl"
    first, *rest = log.read_text().splitlines(keepends=True)
    event = json.loads(first)
    log.write_text(json.dumps({**event, "ts": "yesterday"}) + "\n" + "".join(rest))
    err = one_line_error(capsys, "show", "a")
    assert "log-1.jsonl line 1 is corrupt" in err and "ts must be a number" in err
    assert any("ts must be a number" in p for p in exp.repo.verify())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([1], "run-2.json: does not hold a JSON object"),
        ({"run": 2, "git": "abc"}, "run-2.json: git must be a JSON object or null"),
        ({"run": 2, "argv": "train.py"}, "run-2.json: argv must be a list of strings"),
    ],
)
def test_damaged_run_records(exp: dbx.Experiment, capsys, content, message) -> None:
    (exp.path / "run-2.json").write_text(json.dumps(content))
    for argv in (["show", "a"], ["cmd", "a", "--run", "2"], ["code", "a", "--run", "2"]):
        assert message in one_line_error(capsys, *argv)
    assert run(capsys, "cmd", "a")[0] == 0  # run 1 is fine, and the default
    assert any(message in p for p in exp.repo.verify())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"m": 5}, "entry 'm' must be a JSON object"),
        ([], "does not hold a JSON object"),
        ({"m": {"path": "../x", "size": 1, "sha256": "0" * 64}}, "path must be 'files/...'"),
    ],
)
def test_damaged_attachment_lists(exp: dbx.Experiment, capsys, content, message) -> None:
    (exp.path / "attachments.json").write_text(json.dumps(content))
    assert message in one_line_error(capsys, "show", "a")
    with pytest.raises(UserError, match=message):
        exp.attachment_path("m.bin")
    assert any(message in p for p in exp.repo.verify())


def test_results_that_are_not_an_object(exp: dbx.Experiment, capsys) -> None:
    (exp.path / "results.json").write_text("[1, 2]")
    assert "does not hold a JSON object" in one_line_error(capsys, "show", "a")
    assert any("results.json: does not hold a JSON object" in p for p in exp.repo.verify())


def test_repository_format_marker(exp: dbx.Experiment, capsys) -> None:
    marker = exp.repo.path / ".dbx" / "format.json"
    marker.write_text("garbage")
    assert run(capsys, "ls")[0] == 0  # still readable; verify says what is wrong
    assert any(p.startswith(f"{marker}: not valid JSON") for p in exp.repo.verify())
    marker.write_text('{"format": "dbx", "version": 99}')
    assert "format version 99, newer than this dbx reads (1)" in one_line_error(capsys, "ls")
    with pytest.raises(UserError, match="upgrade squeezr"):
        dbx.Repository(exp.repo.path)
    marker.write_text('{"format": "other", "version": 1}')
    assert any("does not hold" in p for p in dbx.Repository(exp.repo.path).verify())


def test_verify_reports_every_problem_at_once(exp: dbx.Experiment, capsys) -> None:
    (exp.path / "results.json").write_text("{")
    (exp.path / "run-2.json").write_text('{"git": "abc"}')
    (exp.path / "attachments.json").write_text('{"m": 5}')
    code, out, _ = run(capsys, "verify")
    assert code == 1
    assert out.splitlines()[-1].startswith("3 problem(s)")
