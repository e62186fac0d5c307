"""Experiment references that survive re-runs: shared names, NAME@N selectors, --strict,
and experiment_status, which the choice among shared names relies on."""

from __future__ import annotations

import json
import os

import pytest

from squeezr import dbx
from squeezr.dbx.cli import main as dbx_main
from squeezr.dbx.errors import Ambiguous, NotFound, UserError
from squeezr.dbx.runs import experiment_status


def _made(repo: dbx.Repository, name: str, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        with dbx.create(name, repo=repo) as exp:
            ids.append(exp.id)
    return ids


def test_a_shared_name_resolves_to_the_newest_finished_with_a_note(
    repo: dbx.Repository, capsys: pytest.CaptureFixture[str]
) -> None:
    _, second = _made(repo, "base", 2)
    assert dbx.open("base", repo=repo).id == second
    err = capsys.readouterr().err
    assert "'base' names 2 experiments; using the newest finished, " + second in err
    assert "base@1" in err and "--strict" in err
    # an unfinished newer one (still running in another process, say) is passed over
    running = dbx.create("base", repo=repo)
    try:
        assert dbx.open("base", repo=repo).id == second
        assert dbx.open("base@latest", repo=repo).id == running.id
    finally:
        running.close()


def test_with_none_finished_the_newest_is_taken(repo: dbx.Repository, capsys) -> None:
    ids = []
    for _ in range(2):
        with pytest.raises(RuntimeError), dbx.create("broken", repo=repo) as exp:
            ids.append(exp.id)
            raise RuntimeError("boom")
    assert dbx.open("broken", repo=repo).id == ids[1]
    assert "newest (none has finished)" in capsys.readouterr().err


def test_selectors_count_by_creation(repo: dbx.Repository) -> None:
    ids = _made(repo, "base", 3)
    assert [dbx.open(f"base@{n}", repo=repo).id for n in (1, 2, 3)] == ids
    assert dbx.open("base@latest", repo=repo).id == ids[2]
    assert dbx.open("base@-1", repo=repo).id == ids[2]
    assert dbx.open("base@-3", repo=repo).id == ids[0]
    with pytest.raises(NotFound, match="only 3 experiments named 'base'"):
        dbx.open("base@4", repo=repo)
    with pytest.raises(UserError, match="count from 1"):
        dbx.open("base@0", repo=repo)
    with pytest.raises(NotFound, match="no experiment 'other@1'"):
        dbx.open("other@1", repo=repo)
    (unique,) = _made(repo, "solo", 1)
    assert dbx.open("solo@1", repo=repo).id == unique
    assert dbx.open("solo@latest", repo=repo).id == unique


def test_a_name_containing_at_is_found_as_written(repo: dbx.Repository) -> None:
    (plain,) = _made(repo, "lr@1", 1)
    assert dbx.open("lr@1", repo=repo).id == plain


def test_strict_refuses_a_shared_name(repo: dbx.Repository) -> None:
    ids = _made(repo, "base", 2)
    with pytest.raises(Ambiguous, match=r"'base' names 2 experiments .*base@1\.\.base@2"):
        dbx.open("base", repo=repo, strict=True)
    assert dbx.open("base@1", repo=repo, strict=True).id == ids[0]
    with pytest.raises(Ambiguous):
        dbx.resume("base", repo=repo, strict=True)


def test_the_cli_resolves_shared_names_and_honours_strict(repo: dbx.Repository, capsys) -> None:
    first, second = _made(repo, "base", 2)
    assert dbx_main(["--repo", str(repo.path), "cmd", "base"]) == 0
    out, err = capsys.readouterr()
    assert f"experiment {second[:8]} base" in out and "dbx: note:" in err
    assert dbx_main(["--repo", str(repo.path), "cmd", "base@1"]) == 0
    assert f"experiment {first[:8]} base" in capsys.readouterr().out
    for argv in (["cmd", "base", "--strict"], ["--strict", "cmd", "base"]):
        assert dbx_main(["--repo", str(repo.path), *argv]) == 2
        assert "names 2 experiments" in capsys.readouterr().err
    assert dbx_main(["--repo", str(repo.path), "diff", "base@1", "base@2", "--strict"]) == 1


def test_experiment_status(repo: dbx.Repository) -> None:
    with dbx.create("a", repo=repo) as exp:
        assert experiment_status(exp) == "running"
    assert experiment_status(exp) == "done"
    folder = repo.create_experiment("planned", "train", {})
    assert experiment_status(repo.get(os.path.basename(folder))) == "planned"
    with pytest.raises(ValueError), dbx.create("b", repo=repo) as failed:
        raise ValueError("x")
    assert experiment_status(failed) == "failed"
    with pytest.raises(KeyboardInterrupt), dbx.create("c", repo=repo) as stopped:
        raise KeyboardInterrupt
    assert experiment_status(stopped) == "interrupted"
    # a run left "running" by a process that no longer exists (SIGKILL, a reboot)
    with dbx.create("d", repo=repo) as killed:
        pass
    record = json.loads((killed.path / "run-1.json").read_text())
    record.update(status="running", pid=2**22 + 12345)
    (killed.path / "run-1.json").write_text(json.dumps(record))
    assert experiment_status(killed) == "interrupted"
    # a damaged run record: an error, or the word the caller gives for it
    (failed.path / "run-1.json").write_text("{not json")
    with pytest.raises(UserError):
        experiment_status(failed)
    assert experiment_status(failed, damaged="?") == "?"
    # a later run decides: resuming an interrupted experiment to the end makes it done
    with dbx.resume(stopped.id, repo=repo):
        pass
    assert experiment_status(stopped) == "done"
