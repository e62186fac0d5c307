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
            for k, acc in enumerate(accs):
                exp.log(f"finetune/{k}/eval", val_acc=acc + 0.01)
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


def test_prefix_selection_params_and_csv(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (
        "prune/step/:k | before finetune/*/eval as ft | last 1 | select params.seed, k, ft.val_acc"
    )
    assert main(["query", text, "prune/oracle/m1", "--repo", str(repo), "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "params.seed,k,ft.val_acc"
    assert lines[1].startswith("1,3,") and float(lines[1].split(",")[2]) == pytest.approx(0.904)


def test_python_api_matches_selection(repo: Path) -> None:
    table = query.run("prune/step/:k | where k == 3", repo=repo, where="params.seed >= 4")
    assert sorted(table["exp.name"]) == ["prune/oracle/m4", "prune/oracle/m5"]
    one = query.run("prune/step/:k", repo=repo, experiments=["train/base"])
    assert one[["k", "test_acc"]].to_dict("records") == [{"k": 0, "test_acc": 0.0}]


def test_syntax_error_is_one_line_and_exit_2(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", "prune/step/:k | group k: avg(x)", "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "column 26" in err and "unknown aggregate 'avg'" in err


def test_follow_emits_new_rows_as_events_arrive(tmp_path: Path) -> None:
    root = tmp_path / "live"
    exp = dbx.create("live/run", kind="train", repo=root)
    exp.log("train/epoch/0/eval", val_acc=0.5)
    exp.flush()
    polls = 0

    def stop() -> bool:
        nonlocal polls
        polls += 1
        if polls == 1:
            exp.log("train/epoch/1/eval", val_acc=0.6)
            exp.flush()
            with (exp.path / "log-1.jsonl").open("a") as log:  # a torn line, completed later
                log.write('{"name": "train/epoch/2/eval", "data": {"val_')
        if polls == 2:
            with (exp.path / "log-1.jsonl").open("a") as log:
                log.write('acc": 0.7}}\n')
        return polls == 3

    batches = list(
        query.follow("train/epoch/:e/eval | select e, val_acc", repo=root, interval=0, stop=stop)
    )
    exp.close()
    assert [b.to_dict("records") for b in batches] == [
        [{"e": 0, "val_acc": 0.5}],
        [{"e": 1, "val_acc": 0.6}],
        [{"e": 2, "val_acc": 0.7}],
    ]
