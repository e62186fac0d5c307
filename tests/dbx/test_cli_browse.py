"""``dbx ls / show / diff / like / missing`` on a small repository built with the public API."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx import jsonx
from squeezr.dbx.cli import COMMANDS, main

SPECS = [  # name, kind, params, results, events
    ("idea45/a", "train", {"lr": 0.1, "epochs": 10, "opt": {"name": "sgd"}}, {"acc": 0.9}, 3),
    ("idea45/b", "train", {"lr": 0.1, "epochs": 20, "opt": {"name": "sgd"}}, {"acc": 0.95}, 0),
    ("idea45/c", "train", {"lr": 0.2, "epochs": 20, "opt": {"name": "adam"}}, {}, 1),
    (
        "other/d",
        "prune",
        {"lr": 0.1, "epochs": 10, "opt": {"name": "sgd"}, "k": 4},
        {"acc": 0.7},
        0,
    ),
]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # outside any git tree: runs need not capture a patch
    root = tmp_path / "experiments"
    for name, kind, params, results, events in SPECS:
        with dbx.create(name, kind=kind, params=params, repo=root) as exp:
            exp.results.update(results)
            for epoch in range(events):
                exp.log(f"train/epoch/{epoch}/eval", val_acc=0.5 + epoch / 10)
    monkeypatch.setenv("DBX_REPO", str(root))
    return root


def ids(root: Path) -> dict[str, str]:
    return {exp.name: exp.id for exp in dbx.Repository.find(root).experiments()}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict]:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert f"usage: dbx {command}" in capsys.readouterr().out


# -- ls -----------------------------------------------------------------------------------


def test_ls_table_lists_everything(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ls")
    assert code == 0
    header, _rule, *rows = out.splitlines()
    assert header.split() == ["id", "name", "kind", "created", "status", "metric", "value"]
    assert sorted(row.split()[1] for row in rows) == [spec[0] for spec in SPECS]
    assert all(len(row.split()[0]) == 8 for row in rows)  # short ids in tables


def test_ls_filters_sorts_and_picks_columns(repo: Path, capsys) -> None:
    rows = run_json(
        capsys,
        "ls",
        "idea45/",
        "--kind",
        "train",
        "--where",
        "params.opt.name == 'sgd' or not exists(results.acc)",
        "--sort",
        "-results.acc",
        "--columns",
        "id,name,params.epochs,results.acc",
    )
    assert [r["name"] for r in rows] == ["idea45/b", "idea45/a", "idea45/c"]
    assert rows[2]["results.acc"] is None  # missing sorts last, shows as null
    assert rows[0]["id"] == ids(repo)["idea45/b"]  # JSON keeps full ids
    assert list(rows[0]) == ["id", "name", "params.epochs", "results.acc"]


def test_ls_limit_csv_and_since(repo: Path, capsys) -> None:
    code, out, _ = run(
        capsys, "ls", "--sort", "name", "--limit", "2", "--columns", "name,params.opt", "--csv"
    )
    assert code == 0
    assert out.splitlines() == [
        "name,params.opt",
        'idea45/a,"{""name"":""sgd""}"',
        'idea45/b,"{""name"":""sgd""}"',
    ]
    assert len(run_json(capsys, "ls", "--since", "1d")) == len(SPECS)


def test_ls_shows_status_and_a_headline_and_filters_by_status(repo: Path, capsys) -> None:
    with pytest.raises(KeyboardInterrupt), dbx.create("idea45/stopped", repo=repo) as exp:
        exp.results["test_acc"] = 0.5
        raise KeyboardInterrupt
    repo_obj = dbx.Repository(repo)
    repo_obj.create_experiment("idea45/planned", "train", {})
    rows = {r["name"]: r for r in run_json(capsys, "ls", "idea45/")}
    assert {name: r["status"] for name, r in rows.items()} == {
        "idea45/a": "done",
        "idea45/b": "done",
        "idea45/c": "done",
        "idea45/stopped": "interrupted",
        "idea45/planned": "planned",
    }
    assert (rows["idea45/b"]["metric"], rows["idea45/b"]["value"]) == ("acc", 0.95)
    assert (rows["idea45/stopped"]["metric"], rows["idea45/stopped"]["value"]) == ("test_acc", 0.5)
    assert rows["idea45/c"]["metric"] is None
    picked = run_json(capsys, "ls", "--status", "interrupted,planned", "--sort", "-name")
    assert [r["name"] for r in picked] == ["idea45/stopped", "idea45/planned"]
    assert [r["name"] for r in run_json(capsys, "ls", "--status", "done", "--limit", "1")] == [
        "idea45/a"
    ]
    code, _, err = run(capsys, "ls", "--status", "finished")
    assert code == 2 and "use one or more of planned, running, done, failed, interrupted" in err


def test_ls_nothing_matches_exits_1(repo: Path, capsys) -> None:
    code, out, err = run(capsys, "ls", "--where", "params.lr > 1")
    assert (code, out) == (1, "")
    assert "no experiments match" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ls", "--where", "params.lr == )"], "bad expression at column 14: expected a value"),
        (["ls", "--since", "last week"], "cannot read --since 'last week'"),
        (["ls", "--limit", "0"], "--limit must be a positive number"),
        (["ls", "--columns", ","], "--columns is empty"),
        (["ls", "--sort", "a b"], "cannot sort by 'a b'"),
        (["show", "nosuchexperiment"], "nosuchexperiment"),
        (["show", "idea45/a", "-n", "-1"], "--events must be 0 or more"),
        (["diff", "idea45/a"], "diff needs at least two experiments"),
        (["diff", "idea45/a", "nosuch"], "nosuch"),
        (["like", "idea45/a", "-n", "0"], "-n must be a positive number"),
        (["missing"], "--event NAME and/or --result KEY"),
        (["missing", "--event", ""], "event name '' is empty"),
        (["ls", "--since", "99999999d"], "reaches back before year 1"),
        (["ls", "--where", "param.lr == 0.1"], "'param.lr' is not a field of an experiment"),
        (["ls", "--where", "meta.kind == 'x'"], "use params.<key>, results.<key>, id, name"),
        (["ls", "--where", "exists(status)"], "'status' is not a field"),
        (["ls", "--sort=-result.acc"], "--sort key 'result.acc' is not a field"),
        (["ls", "--columns", "name,lr"], "column 'lr' is not a field"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(repo: Path, capsys, argv, message) -> None:
    code, _out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("dbx: error: ") and message in err
    assert err.count("\n") == 1


def test_ambiguous_prefix_is_a_user_error(repo: Path, capsys) -> None:
    code, _, err = run(capsys, "show", "idea45")
    assert code == 2 and err.startswith("dbx: error: ")


def test_repo_option_before_or_after_the_command(
    repo: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.delenv("DBX_REPO")
    monkeypatch.chdir(tmp_path.parent)
    for argv in (["--repo", str(repo), "ls"], ["ls", "--repo", str(repo)]):
        code, out, err = run(capsys, *argv, "--json")
        assert code == 0, err
        assert len(json.loads(out)) == len(SPECS)
    other = dbx.Repository.init(tmp_path / "other")
    code, _, _ = run(capsys, "--repo", str(repo), "ls", "--repo", str(other.path))
    assert code == 1  # the one after the command wins: the other repository is empty


def test_json_and_csv_hold_nan_and_nested_values_faithfully(repo: Path, capsys) -> None:
    with dbx.create("nan/x", params={"flags": [True, None]}, repo=repo) as exp:
        exp.results.update({"loss": float("nan"), "best": float("inf"), "ok": True})
    columns = "name,params.flags,results.loss,results.best,results.ok,results.none"
    code, out, _ = run(capsys, "ls", "nan/", "--columns", columns, "--json")
    assert code == 0
    strict = json.loads(out, parse_constant=lambda token: pytest.fail(f"bare {token} in JSON"))
    assert strict[0]["results.loss"] == {"$numberDouble": "NaN"}
    row = jsonx.loads(out)[0]
    assert math.isnan(row["results.loss"]) and row["results.best"] == math.inf
    assert row["params.flags"] == [True, None] and row["results.none"] is None
    code, out, _ = run(capsys, "ls", "nan/", "--columns", columns, "--csv")
    assert out.splitlines()[1] == 'nan/x,"[true,null]",NaN,Infinity,true,'
    code, out, _ = run(capsys, "show", "nan/x", "--json")
    report = json.loads(out, parse_constant=lambda token: pytest.fail(f"bare {token}"))
    assert report["results"]["loss"] == {"$numberDouble": "NaN"}


def test_ls_since_before_year_one_is_a_one_line_error(repo: Path, capsys) -> None:
    code, _, err = run(capsys, "ls", "--since", "0001-01-01")
    assert code == 2 and "cannot read --since '0001-01-01'" in err and err.count("\n") == 1


def test_show_an_experiment_created_in_year_one(repo: Path, capsys) -> None:
    exp = dbx.open("idea45/a")
    meta = json.loads((exp.path / "meta.json").read_text())
    (exp.path / "meta.json").write_text(json.dumps({**meta, "created": "0001-01-01"}))
    assert dbx.open("idea45/a").created is None
    code, out, _ = run(capsys, "show", "idea45/a")
    assert code == 0 and "created    None" in out


def test_show_tells_a_dead_running_run(repo: Path, capsys) -> None:
    exp = dbx.open("idea45/a")
    record = json.loads((exp.path / "run-1.json").read_text())
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    record.update(status="running", end=None, pid=int(dead.stdout))
    (exp.path / "run-1.json").write_text(json.dumps(record))
    code, out, _ = run(capsys, "show", "idea45/a", "--json")
    assert code == 0 and json.loads(out)["runs"][0]["status"] == "running (process gone?)"


def test_no_repository_found(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("DBX_REPO", raising=False)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "ls")
    assert code == 2 and err.startswith("dbx: error: ")
    code, _, err = run(capsys, "ls", "--repo", str(tmp_path / "nowhere"))
    assert code == 2 and err.startswith("dbx: error: ")


# -- show ---------------------------------------------------------------------------------


def test_show_text(repo: Path, capsys) -> None:
    ref = ids(repo)["idea45/a"]
    code, out, _ = run(capsys, "show", ref[:6], "-n", "2")
    assert code == 0
    assert out.startswith(f"experiment {ref}  idea45/a\n")
    for section in ("params:", "results:", "runs:", "last 2 of 3 events:"):
        assert section in out
    assert "opt.name  sgd" in out
    assert "train/epoch/2/eval" in out and "train/epoch/0/eval" not in out


def test_show_and_ls_print_text_as_written(repo: Path, capsys) -> None:
    with dbx.create("text/x", params={"ratio": "2.50", "seed": "007"}, repo=repo) as exp:
        exp.log("note", text="1e3")
    code, out, _ = run(capsys, "show", "text/x")
    assert code == 0
    assert "  ratio  2.50" in out.splitlines() and "  seed   007" in out.splitlines()
    assert "note    text=1e3" in out  # event data as key=value, text as written
    code, out, _ = run(capsys, "ls", "text/", "--columns", "params.ratio,params.seed")
    assert out.splitlines()[2].split() == ["2.50", "007"]


def test_show_json(repo: Path, capsys) -> None:
    code, out, _ = run(capsys, "show", "idea45/c", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["params"] == SPECS[2][2] and report["results"] == {}
    assert report["events_total"] == 1 and report["events"][0]["data"] == {"val_acc": 0.5}
    assert len(report["runs"]) == 1 and report["runs"][0]["run"] == 1
    assert report["attachments"] == []


# -- diff / like --------------------------------------------------------------------------


def test_diff_prints_only_differing_params(repo: Path, capsys) -> None:
    rows = run_json(capsys, "diff", "idea45/a", "idea45/c")
    assert [row["key"] for row in rows] == ["params.epochs", "params.lr", "params.opt.name"]
    a, c = ids(repo)["idea45/a"][:8], ids(repo)["idea45/c"][:8]
    assert rows[1] == {"key": "params.lr", f"{a} idea45/a": 0.1, f"{c} idea45/c": 0.2}


def test_diff_table_prefix_absent_and_results(repo: Path, capsys) -> None:
    code, out, _ = run(capsys, "diff", "other/d", "idea45/a", "--results")
    assert code == 0
    keys = [line.split()[0] for line in out.splitlines()[2:]]
    assert keys == ["params.k", "results.acc"]
    assert "(absent)" in out
    rows = run_json(capsys, "diff", "idea45/")  # one argument: every experiment under a prefix
    assert len(rows[0]) == 4  # key + three experiments


def test_diff_identical_params_exit_1(repo: Path, capsys) -> None:
    with dbx.create("idea45/a", kind="train", params=SPECS[0][2], repo=repo):
        pass
    first, second = [e.id for e in dbx.Repository.find(repo).experiments(prefix="idea45/a")]
    code, _, err = run(capsys, "diff", first, second)
    assert code == 1 and "no params differ" in err


def test_like_orders_by_number_of_differing_params(repo: Path, capsys) -> None:
    rows = run_json(capsys, "like", "idea45/a")
    assert [r["distance"] for r in rows] == [1, 1, 3]
    assert {r["name"] for r in rows[:2]} == {"idea45/b", "other/d"}
    assert rows[2]["differs"] == "epochs=20, lr=0.2, opt.name=adam"
    assert {r["differs"] for r in rows[:2]} == {"epochs=20", "k=4"}
    assert [
        r["name"] for r in run_json(capsys, "like", "idea45/a", "-n", "1", "--kind", "prune")
    ] == ["other/d"]


def test_like_with_nothing_to_compare_exits_1(repo: Path, capsys) -> None:
    code, _, err = run(capsys, "like", "other/d", "--kind", "prune")
    assert code == 1 and "no other experiments" in err


# -- missing ------------------------------------------------------------------------------


def test_missing_events_and_results(repo: Path, capsys) -> None:
    rows = run_json(capsys, "missing", "--event", "train/epoch/2")
    assert sorted(r["name"] for r in rows) == ["idea45/b", "idea45/c", "other/d"]
    rows = run_json(capsys, "missing", "idea45/", "--event", "train", "--result", "acc")
    assert [(r["name"], r["missing"]) for r in rows] == [
        ("idea45/b", "event train"),
        ("idea45/c", "result acc"),
    ]
    assert (
        run_json(capsys, "missing", "--result", "results.acc", "--kind", "train")[0]["name"]
        == "idea45/c"
    )


def test_missing_nothing_exits_1(repo: Path, capsys) -> None:
    code, out, err = run(capsys, "missing", "--result", "acc", "--where", "exists(results.acc)")
    assert (code, out) == (1, "")
    assert "nothing missing" in err
