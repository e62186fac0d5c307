"""``dbx query`` end to end on a real repository written with the public logging API."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx import query
from squeezr.dbx.cli import main

ACCURACY = {  # six initial models, test accuracy after k blocks removed
    seed: [0.93 - 0.01 * k - 0.002 * seed * k for k in range(4)] for seed in range(6)
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Written once (creating experiments captures git state, which is slow); tests only read."""
    root = tmp_path_factory.mktemp("query") / "experiments"
    for seed, accs in ACCURACY.items():
        with dbx.create(
            f"prune/oracle/m{seed}", kind="prune", params={"seed": seed}, repo=root
        ) as exp:
            for k, acc in enumerate(accs):  # eval names repeat at every step, as in a real run
                exp.log("finetune/epoch/0/eval", val_acc=acc)
                exp.log("finetune/epoch/1/eval", val_acc=acc + 0.01)
                exp.log(f"prune/step/{k}", test_acc=acc, block=10 + k)
    with dbx.create("train/base", kind="train", repo=root) as exp:
        exp.log("prune/step/0", test_acc=0.0)  # not a prune experiment: must be left out
    return root


def test_mean_and_standard_error_over_six_models_in_one_command(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "prune/step/:k | group k: mean(1 - test_acc) as err, se(1 - test_acc) as se, count()"
    assert main(["query", text, "--kind", "prune", "--repo", str(repo), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["k"] for row in rows] == [0, 1, 2, 3]
    for row in rows:
        errors = [1 - ACCURACY[seed][row["k"]] for seed in range(6)]
        assert row["count"] == 6
        assert row["err"] == pytest.approx(statistics.mean(errors))
        assert row["se"] == pytest.approx(statistics.stdev(errors) / math.sqrt(6), nan_ok=True)


@pytest.mark.parametrize("prefix_first", [True, False])
def test_prefix_selection_params_and_csv(
    repo: Path, capsys: pytest.CaptureFixture[str], prefix_first: bool
) -> None:
    text = (
        "prune/step/:k | before finetune/epoch/:e/eval as ft | last 1"
        " | select params.seed, k, ft.e, ft.val_acc"
    )
    options = ["--repo", str(repo), "--csv"]
    args = (
        [text, "prune/oracle/m1", *options] if prefix_first else [text, *options, "prune/oracle/m1"]
    )
    assert main(["query", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "params.seed,k,ft.e,ft.val_acc"
    assert len(lines) == 2 and lines[1].startswith("1,3,1,")
    assert float(lines[1].split(",")[3]) == pytest.approx(ACCURACY[1][3] + 0.01)


def test_before_sees_the_eval_of_each_step_although_its_name_repeats(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "prune/step/:k | before finetune/epoch/:e/eval as ft | select k, ft.e, ft.val_acc"
    assert main(["query", text, "prune/oracle/m2", "--repo", str(repo), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(row["k"], row["ft.e"]) for row in rows] == [(k, 1) for k in range(4)]
    expected = [ACCURACY[2][k] + 0.01 for k in range(4)]
    assert [row["ft.val_acc"] for row in rows] == pytest.approx(expected)


def test_json_shows_missing_values_as_null(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "prune/step/:k | after finetune/epoch/1/eval as ft | select k, ft.val_acc"
    assert main(["query", text, "prune/oracle/m0", "--repo", str(repo), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[-1] == {"k": 3, "ft.val_acc": None}


def test_a_repository_result_queried_again_keeps_its_experiments(repo: Path) -> None:
    table = query.run("prune/step/:k | select exp.name, name, k, test_acc", repo=repo, kind="prune")
    assert len(table) == 24
    again = query.run("prune/step/:j", events=table)
    assert len(again) == 24
    counts = query.run("prune/step/:j | group j: count()", events=table)
    assert counts["count"].tolist() == [6, 6, 6, 6]
    firsts = query.run("prune/step/:j | first 1 | select exp.name, j", events=table)
    assert firsts["exp.name"].tolist() == [f"prune/oracle/m{seed}" for seed in range(6)]


def test_requerying_keeps_reruns_that_share_a_name_apart(tmp_path: Path) -> None:
    """A selected result of several experiments keeps ``exp.id`` (first), so querying it
    again splits it by experiment even where re-runs share a name."""
    root = tmp_path / "experiments"
    for seed in range(2):
        with dbx.create("prune/m", kind="prune", repo=root) as exp:
            for k in range(3):
                exp.log(f"prune/step/{k}", acc=seed + k / 10)
    for columns in ("exp.name, name, k, acc", "name, k, acc"):
        table = query.run(f"prune/step/:k | select {columns}", repo=root)
        assert list(table.columns) == ["exp.id", *columns.split(", ")] and len(table) == 6
        counts = query.run("prune/step/:j | group j: count()", events=table)
        assert counts["count"].tolist() == [2, 2, 2]
    one = query.run("prune/step/:k | select k", repo=root, experiments=[exp])
    assert list(one.columns) == ["k"]  # one experiment: nothing to tell apart


def test_python_api_matches_selection(repo: Path) -> None:
    table = query.run("prune/step/:k | where k == 3", repo=repo, where="params.seed >= 4")
    assert sorted(table["exp.name"]) == ["prune/oracle/m4", "prune/oracle/m5"]
    one = query.run("prune/step/:k", repo=repo, experiments=["train/base"])
    assert one[["k", "test_acc"]].to_dict("records") == [{"k": 0, "test_acc": 0.0}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prune/step/:k | group k: avg(x)", "column 26 near 'avg(x)': unknown aggregate 'avg'"),
        ("prune/step/:k | group k: mean(test_acc) as k", "column 26 near 'mean(test_acc) as k'"),
        ("prune/step/:k | select (k | first 1", "column 24 near '(k | first 1'"),
        ("prune/step/:k | where k > 1) | select k", "column 28 near ') | select k'"),
        ("prune/step/:k | select test_acc as name | match x", "'match' needs event names"),
        ("prune/step/:k | where nope > 1", "unknown column 'nope'"),
        ("prune/step/:k | select exp.nope", "'exp.nope' is not a field of an experiment"),
    ],
)
def test_errors_are_one_line_and_exit_2(
    repo: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    assert main(["query", text, "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dbx: error: ") and err.count("\n") == 1 and message in err
