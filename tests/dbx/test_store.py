import json
import multiprocessing
import os
import warnings
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx.errors import DbxWarning, UserError


def test_create_writes_meta_and_first_run(repo: dbx.Repository) -> None:
    with dbx.create("prune/oracle/4x", kind="prune", params={"lr": 0.1}, repo=repo) as exp:
        assert exp.run == 1
    assert exp.path == repo.path / "prune" / "oracle" / "4x" / exp.id
    meta = json.loads((exp.path / "meta.json").read_text())
    assert {k: meta[k] for k in ("id", "name", "kind", "params")} == {
        "id": exp.id,
        "name": "prune/oracle/4x",
        "kind": "prune",
        "params": {"lr": 0.1},
    }
    assert len(exp.id) == 12 and int(exp.id, 16) >= 0
    assert exp.created is not None and exp.created.tzinfo is not None
    assert exp.runs()[0]["status"] == "finished"


def test_create_makes_a_missing_repository(tmp_path: Path) -> None:
    exp = dbx.create("a", params={}, repo=tmp_path / "new")
    exp.close()
    assert (tmp_path / "new" / ".dbx").is_dir()
    assert [e.id for e in dbx.Repository(tmp_path / "new").experiments()] == [exp.id]


@pytest.mark.parametrize(
    "name", ["", "a//b", "/a", "a/", "a/./b", "a/../b", ".hidden", "a/.b", "a\\b", "x/0123456789ab"]
)
def test_bad_names_are_rejected(repo: dbx.Repository, name: str) -> None:
    with pytest.raises(UserError, match="experiment name"):
        dbx.create(name, repo=repo)


@pytest.mark.parametrize("kind", ["", "two words", "a/b", "x.y"])
def test_bad_kinds_are_rejected(repo: dbx.Repository, kind: str) -> None:
    with pytest.raises(UserError, match="one word"):
        dbx.create("a", kind=kind, repo=repo)


def test_params_are_immutable_and_dotted(repo: dbx.Repository) -> None:
    params = {"optimizer": {"lr": 0.1, "name": "adam"}, "config": [1, 0, 1]}
    with dbx.create("a", params=params, repo=repo) as exp:
        pass
    p = dbx.open(exp.id, repo=repo).params
    assert p["optimizer.lr"] == p.optimizer.lr == p["optimizer"]["lr"] == 0.1
    assert p["config"] == [1, 0, 1] and "optimizer.name" in p and "optimizer.x" not in p
    assert json.loads(json.dumps(p)) == params
    with pytest.raises(UserError, match="immutable"):
        p["x"] = 1
    with pytest.raises(UserError, match="immutable"):
        p.optimizer.update(lr=1)
    with pytest.raises(KeyError):
        p["optimizer.missing"]
    with pytest.raises(AttributeError):
        p.missing  # noqa: B018


def test_dots_in_param_keys_are_rejected(repo: dbx.Repository) -> None:
    with pytest.raises(UserError, match=r"key 'b.c' \(under 'a'\).*without '\.'"):
        dbx.create("a", params={"a": {"b.c": 1}}, repo=repo)
    with pytest.raises(UserError, match="JSON object"):
        dbx.create("a", params=[1], repo=repo)  # type: ignore[arg-type]


def test_results_are_shared_and_persistent(repo: dbx.Repository) -> None:
    with dbx.create("a", repo=repo) as exp:
        exp.results["best"] = 0.5
        exp.results.update({"eval.acc": 0.9, "n": 3})
        exp.set_result("eval.loss", float("nan"))
    other = dbx.open("a", repo=repo)
    assert other.results["best"] == 0.5 and other.results["eval.acc"] == 0.9
    assert other.results["eval.loss"] != other.results["eval.loss"]  # NaN survived
    del other.results["n"]
    exp.results["best"] = 0.7
    assert dict(other.results).keys() == {"best", "eval"} and other.results["best"] == 0.7
    with pytest.raises(UserError, match=r"key 'y\.z' \(under 'x'\)"):
        other.results["x"] = {"y.z": 1}


def test_results_refuse_what_they_cannot_store(repo: dbx.Repository) -> None:
    with dbx.create("a", repo=repo) as exp:
        exp.results["acc"] = 0.9
        with pytest.raises(UserError, match=r"'acc' already holds 0\.9, not an object"):
            exp.results["acc.top1"] = 1.0  # would silently delete acc
        with pytest.raises(UserError, match=r"cannot store results .*: cannot store a set"):
            exp.results["ids"] = {1, 2}
        with pytest.raises(UserError, match=r"result key 'a\.\.b' is not allowed"):
            exp.results["a..b"] = 1
    assert json.loads((exp.path / "results.json").read_text()) == {"acc": 0.9}


def _increment(path: str, count: int) -> None:
    exp = dbx.open(Path(path).name, repo=Path(path).parents[1])
    for _ in range(count):
        exp.results.modify(lambda data: data.__setitem__("n", data.get("n", 0) + 1))


def test_concurrent_result_updates_lose_nothing(repo: dbx.Repository) -> None:
    with dbx.create("c", repo=repo) as exp:
        exp.results["n"] = 0
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_increment, args=(str(exp.path), 200)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert dbx.open(exp.id, repo=repo).results["n"] == 400


def test_refs_resolve_by_id_prefix_and_name(repo: dbx.Repository) -> None:
    made = []
    for name in ("x/a", "x/b", "x/b"):
        with dbx.create(name, repo=repo) as exp:
            made.append(exp.id)
    assert dbx.open(made[0], repo=repo).name == "x/a"
    assert dbx.open("x/a", repo=repo).id == made[0]
    assert dbx.open(made[1][:10], repo=repo).id == made[1]
    with pytest.raises(UserError, match="names 2 experiments"):
        dbx.open("x/b", repo=repo, strict=True)
    with pytest.raises(UserError, match="no experiment 'zzz'"):
        dbx.open("zzz", repo=repo)


def test_listing_filters_by_prefix_and_kind(repo: dbx.Repository) -> None:
    for name, kind in (("idea45/a", "train"), ("idea45/b/c", "prune"), ("idea4", "train")):
        dbx.create(name, kind=kind, repo=repo).close()
    names = lambda **kw: sorted(e.name for e in repo.experiments(**kw))  # noqa: E731
    assert names() == ["idea4", "idea45/a", "idea45/b/c"]
    assert names(prefix="idea45/") == ["idea45/a", "idea45/b/c"]
    assert names(prefix="idea4") == ["idea4", "idea45/a", "idea45/b/c"]
    assert names(kind="prune") == ["idea45/b/c"]
    assert names(prefix="idea45/b", kind="train") == []


def test_find_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    monkeypatch.chdir(project / "src")
    with pytest.raises(UserError, match="no dbx repository"):
        dbx.Repository.find()
    repo = dbx.Repository.init(project / "experiments")
    assert dbx.Repository.find().path == repo.path
    other = dbx.Repository.init(tmp_path / "other")
    monkeypatch.setenv("DBX_REPO", str(other.path))
    assert dbx.Repository.find().path == other.path
    assert dbx.Repository.find(repo.path).path == repo.path
    with pytest.raises(UserError, match="not a dbx repository"):
        dbx.Repository.find(project)


def test_attachments_are_verified(repo: dbx.Repository, tmp_path: Path) -> None:
    source = tmp_path / "model.pt"
    source.write_bytes(b"weights" * 100)
    with dbx.create("a", repo=repo) as exp:
        info = exp.attach(source)
        exp.attach(source, name="ckpt/epoch-1.pt")
    assert info["path"] == "files/model.pt" and info["size"] == 700 and len(info["sha256"]) == 64
    reader = dbx.open(exp.id, repo=repo)
    assert reader.attachment_path("model.pt").read_bytes() == source.read_bytes()
    assert sorted(reader.files) == ["ckpt/epoch-1.pt", "model.pt"]
    (exp.path / "files" / "model.pt").write_bytes(b"tampered")
    with pytest.raises(UserError, match=r"model\.pt is corrupt"):
        reader.attachment_path("model.pt")
    with pytest.raises(UserError, match=r"no attachment 'nope\.pt'"):
        reader.attachment_path("nope.pt")
    with pytest.raises(UserError, match="relative path"):
        reader.attach(source, name="../escape")
    with pytest.raises(UserError, match="no such file"):
        reader.attach(tmp_path / "missing")
    with pytest.raises(UserError, match="it is a folder"):
        reader.attach(tmp_path)


def test_notes_are_mutable_text(repo: dbx.Repository) -> None:
    dbx.create("a", repo=repo).close()
    exp = dbx.open("a", repo=repo)
    assert exp.notes == ""
    exp.notes = "diverged at epoch 3\n"
    assert dbx.open("a", repo=repo).notes == "diverged at epoch 3\n"


def test_corrupt_files_give_one_line_errors(repo: dbx.Repository) -> None:
    with dbx.create("a", repo=repo) as exp:
        exp.results["x"] = 1
    (exp.path / "results.json").write_text("{", encoding="utf-8")
    with pytest.raises(UserError, match=r"results.json is not valid JSON \(") as info:
        dict(dbx.open("a", repo=repo).results)
    assert "\n" not in str(info.value)
    (exp.path / "meta.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(UserError, match=r"meta.json is not valid JSON"):
        dbx.open(exp.id, repo=repo)


def test_a_damaged_experiment_is_skipped_with_a_warning_or_an_error_when_strict(
    repo: dbx.Repository,
) -> None:
    good = dbx.create("good", repo=repo)
    good.close()
    bad = dbx.create("bad", repo=repo)
    bad.close()
    (bad.path / "meta.json").write_text("{oops", encoding="utf-8")
    with pytest.warns(DbxWarning, match=r"skipping an experiment: .*meta.json is not valid"):
        assert [exp.name for exp in repo.experiments()] == ["good"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DbxWarning)
        with pytest.raises(DbxWarning, match=r"meta\.json"):
            list(repo.experiments())


def test_verify_lists_problems(repo: dbx.Repository, tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    source.write_bytes(b"abc")
    with dbx.create("a", repo=repo) as exp:
        exp.log("e", x=1)
        exp.attach(source)
    assert repo.verify() == [] and repo.verify().checked == 1
    with (exp.path / "log-1.jsonl").open("a") as handle:
        handle.write('{"name": "e", "id": "1-2"')
    (exp.path / "files" / "f.bin").write_bytes(b"abd")
    (exp.path / "results.json").write_text("[", encoding="utf-8")
    broken = dbx.create("b", repo=repo)
    broken.close()
    (broken.path / "meta.json").unlink()
    problems = repo.verify()
    assert any("log-1.jsonl: torn" in p for p in problems)
    assert any("f.bin: attachment size or sha256" in p for p in problems)
    assert any("results.json: not valid JSON" in p for p in problems)
    assert any(p.endswith("meta.json: missing") for p in problems)
    assert len(problems) == 4 and problems.checked == 2


def test_frame_has_flat_columns(repo: dbx.Repository) -> None:
    with dbx.create("a", params={"opt": {"lr": 0.1}}, repo=repo) as exp:
        exp.results["acc"] = 0.9
    dbx.create("b", kind="prune", params={"opt": {"lr": 0.2}}, repo=repo).close()
    df = dbx.frame(repo.experiments())
    assert list(df["name"]) == ["a", "b"] and list(df["params.opt.lr"]) == [0.1, 0.2]
    assert df["results.acc"].iloc[0] == 0.9 and df["results.acc"].isna().iloc[1]
    assert list(dbx.frame([]).columns) == ["id", "name", "kind", "created"]


@pytest.mark.parametrize(
    ("key", "value"), [("eval.k", {1, 2}), ("eval.k", {"a.b": 1}), ("eval.acc.top1", 1)]
)
def test_a_refused_result_write_changes_nothing_that_reads_return(
    repo: dbx.Repository, key: str, value: object
) -> None:
    with dbx.create("a", repo=repo) as exp:
        exp.results["eval"] = {"acc": 0.9}
        assert exp.results.tree() == {"eval": {"acc": 0.9}}  # cached
        with pytest.raises(UserError):
            exp.results[key] = value
        assert exp.results.tree() == {"eval": {"acc": 0.9}}
        assert exp.results["eval"] == {"acc": 0.9}


def test_a_result_write_that_fails_on_disk_changes_nothing_that_reads_return(
    repo: dbx.Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from squeezr.dbx import views

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    with dbx.create("a", repo=repo) as exp:
        exp.results["eval"] = {"acc": 0.9}
        exp.results.tree()
        monkeypatch.setattr(views, "atomic_write", full)
        with pytest.raises(OSError, match="No space"):
            exp.results["eval.loss"] = 0.1
        assert exp.results.tree() == {"eval": {"acc": 0.9}}


def test_results_read_dotted_paths_like_value_does(repo: dbx.Repository) -> None:
    with dbx.create("a", params={"layers": [{"width": 16}, {"width": 32}]}, repo=repo) as exp:
        exp.results["curve"] = [0.5, 0.7]
    assert exp.results["curve.1"] == 0.7 == exp.value("results.curve.1")
    assert exp.params["layers.1.width"] == 32 == exp.value("params.layers.1.width")
    assert "curve.1" in exp.results and "curve.2" not in exp.results
    for key in ("curve.2", "curve.x", "", "curve..1"):
        with pytest.raises(KeyError):
            exp.results[key]
    with pytest.raises(UserError, match="an item of a list"):
        del exp.results["curve.0"]
    del exp.results["curve"]
    assert exp.results.tree() == {}


def test_attach_replaces_and_records_under_the_lock(
    repo: dbx.Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    from squeezr.dbx import fileio

    exp = dbx.create("a", repo=repo)
    held = {}
    real_replace = os.replace

    def replace(src, dst):
        probe = os.open(exp.path / ".lock", os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held[Path(dst).name] = False
        except BlockingIOError:
            held[Path(dst).name] = True
        finally:
            os.close(probe)
        real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", replace)
    source = tmp_path / "model.pt"
    source.write_bytes(b"weights")
    exp.attach(source)
    monkeypatch.undo()
    exp.close()
    assert held == {"model.pt": True, "attachments.json": True}


def _append(folder: str, count: int, who: str) -> None:
    exp = dbx.open(Path(folder).name, repo=Path(folder).parents[1])
    for i in range(count):
        exp.append_notes(f"{who}{i}")


def test_concurrent_note_appends_lose_nothing(repo: dbx.Repository) -> None:
    dbx.create("n", repo=repo).close()
    exp = dbx.open("n", repo=repo)
    exp.append_notes("first")
    assert exp.notes == "first"
    exp.append_notes("second")
    assert exp.notes == "first\n\nsecond"
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append, args=(str(exp.path), 30, w)) for w in "ab"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    paragraphs = exp.notes.split("\n\n")
    assert len(paragraphs) == 62 and {f"{w}{i}" for w in "ab" for i in range(30)} < set(paragraphs)


def test_create_without_repo_uses_the_repository_open_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    elsewhere = dbx.Repository.init(tmp_path / "shared")
    monkeypatch.setenv("DBX_REPO", str(elsewhere.path))
    with dbx.create("a") as exp:
        pass
    assert exp.repo.path == elsewhere.path and dbx.open("a").id == exp.id
    monkeypatch.delenv("DBX_REPO")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    with dbx.create("b") as exp:  # no repository here or above: ./experiments is created
        pass
    assert exp.repo.path == tmp_path / "sub" / "experiments"
