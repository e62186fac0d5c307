"""Query-language features a researcher expects from pandas: computing in ``where``, totals
over all rows, a global ``limit``, median/quantile/count_distinct, pivots, type-mismatch
warnings, integer columns with gaps, and errors that say what to write instead."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest

from squeezr import dbx
from squeezr.dbx import expr
from squeezr.dbx.cli import main
from squeezr.dbx.query import NoMatch, parse, run

ACC = {m: [0.9 - 0.1 * k - 0.01 * m for k in range(3)] for m in range(3)}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("features") / "experiments"
    for m, accs in ACC.items():
        params = {"method": ["oracle", "random", "oracle"][m], "lr": 0.1}
        with dbx.create(f"p/m{m}", kind="prune", params=params, repo=root) as exp:
            for k, acc in enumerate(accs):
                data = {"test_acc": acc, "chosen": [k % 2]}
                if k != 1:
                    data["blocks"] = 9 - k  # an integer column with a gap
                exp.log(f"prune/step/{k}", data)
    return root


def _table(root: Path, text: str, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    assert main(["query", text, "--repo", str(root), "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_where_computes(root: Path) -> None:
    table = run("prune/step/:k | where 1 - test_acc < 0.115 | select exp.name, k", repo=root)
    assert table["k"].tolist() == [0, 0]  # 0.9 and 0.89; 0.88 is not
    table = run(
        "prune/step/:k | where (1 - test_acc) * 100 >= 19.5 and k == 1 | select k", repo=root
    )
    assert table["k"].tolist() == [1, 1, 1]
    assert expr.parse("params.lr * 10 == 1").evaluate(expr.mapping_lookup({"params": {"lr": 0.1}}))
    # arithmetic on text, or a missing field, is missing: the comparison is false
    lookup = expr.mapping_lookup({"s": "x", "n": 0})
    assert not expr.parse("s + 1 > 0").evaluate(lookup)
    assert not expr.parse("missing * 2 < 1").evaluate(lookup)
    assert expr.parse("1 / n > 1e308 and -1 / n < 0 and not 0 / n == 0").evaluate(lookup)
    assert expr.parse("log(n) < 0 and sqrt(0 - 1) != sqrt(0 - 1)").evaluate(lookup)
    assert expr.parse("10 ** 10 ** 10 > 0").evaluate(lookup)  # a float power: inf, at once


def test_group_without_keys_aggregates_every_row(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _table(root, "prune/step/:k | group: count(), mean(test_acc), max(k)", capsys)
    every = [acc for accs in ACC.values() for acc in accs]
    assert rows == [
        {"count": 9, "mean_test_acc": pytest.approx(statistics.mean(every)), "max_k": 2}
    ]
    assert _table(root, "prune/step/:k | group : count()", capsys) == [{"count": 9}]
    with pytest.warns(NoMatch):
        empty = run("nothing | group: count(), mean(x)", repo=root)
    assert empty["count"].tolist() == [0] and empty["mean_x"].isna().all()


def test_median_quantile_count_distinct(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (
        "prune/step/:k | group k: median(test_acc), quantile(test_acc, 0.9), "
        "count_distinct(params.method) as methods, count_distinct(chosen)"
    )
    rows = _table(root, text, capsys)
    for row in rows:
        values = sorted(ACC[m][row["k"]] for m in ACC)
        assert row["median_test_acc"] == pytest.approx(values[1])
        assert row["p90_test_acc"] == pytest.approx(values[1] + 0.8 * (values[2] - values[1]))
        assert row["methods"] == 2 and row["count_distinct_chosen"] == 1


def test_limit_is_global_and_first_is_per_experiment(root: Path) -> None:
    text = "prune/step/:k | sort test_acc desc | {} | select exp.name, k, test_acc"
    best = run(text.format("limit 2"), repo=root)
    assert best["test_acc"].tolist() == pytest.approx([0.9, 0.89])
    per_experiment = run(text.format("first 2"), repo=root)
    assert len(per_experiment) == 6


def test_pivot_to_a_wide_table(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _table(root, "prune/step/:k | pivot k by exp.name: test_acc", capsys)
    assert [row["k"] for row in rows] == [0, 1, 2]
    for row in rows:
        assert [row[f"p/m{m}"] for m in ACC] == pytest.approx([ACC[m][row["k"]] for m in ACC])
    rows = _table(root, "prune/step/:k | pivot k by params.method: mean(test_acc)", capsys)
    assert rows[0]["oracle"] == pytest.approx((ACC[0][0] + ACC[2][0]) / 2)
    assert main(
        ["query", "prune/step/:k | pivot k by params.method: test_acc", "--repo", str(root)]
    )
    assert "aggregate them, e.g." in capsys.readouterr().err


def test_comparing_across_types_warns(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "prune/step/:k | where test_acc > '0.5'", "--repo", str(root)]) == 0
    err = capsys.readouterr().err
    assert "dbx: warning: where: test_acc holds numbers, not text" in err
    assert "drop the quotes" in err
    run("prune/step/:k | where test_acc > 0.5", repo=root)  # no warning for numbers


def test_integer_columns_with_gaps_print_as_integers(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", "prune/step/:k | select k, blocks", "--repo", str(root)]) == 0
    out = capsys.readouterr().out
    assert " 9" in out and "9.0" not in out and "7.0" not in out
    table = run("prune/step/:k | select k, blocks", repo=root)
    assert table["blocks"].tolist()[:3] == [9, None, 7] or str(table["blocks"].dtype) == "Int64"
    assert pd.isna(table["blocks"].iloc[1])
    rows = _table(root, "prune/step/:k | select k, blocks", capsys)
    assert [row["blocks"] for row in rows[:3]] == [9, None, 7]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("prune/step/:k | select test-acc", "in backticks: `test-acc`"),
        ("prune/step/:k | select test_ac", "did you mean 'test_acc'?"),
        ("prune/step/:k | selct k", "did you mean 'select'?"),
        ("prune/step/:k | gruop k", "did you mean 'group'?"),
        ("prune/step/:k || where k > 1", "'||' means 'or' inside a where condition"),
        ("prune/step/:k | group mean(test_acc)", "aggregates follow a ':'"),
        ("prune/step/:k | group", "group needs an argument"),
        ("prune/step/:k | group :", "group needs keys, aggregates or both"),
        ("prune/step/:k | group: quantile(test_acc)", "quantile needs a column and a fraction"),
        ("prune/step/:k | group: quantile(test_acc, 2)", "between 0 and 1"),
        ("prune/step/:k | pivot k: test_acc", "pivot looks like"),
        ("prune/step/:k | limit 0", "limit needs a positive whole number"),
    ],
)
def test_errors_say_what_to_write(
    root: Path, query: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", query, "--repo", str(root)]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err


def test_a_pattern_that_matches_nothing_says_so(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", "prune/stp/:k | select k", "--repo", str(root)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("dbx: warning: no event of the 3 experiments read matches 'prune/stp/:k'")
    assert "did you mean prune/step/" in err
    assert main(["query", "prune/step/:k", "--kind", "nope", "--repo", str(root)]) == 0
    assert "no experiment was read" in capsys.readouterr().err
    assert main(["query", "prune/step/:k | before nothing | select k", "--repo", str(root)]) == 0
    assert "matches 'nothing'" in capsys.readouterr().err
    assert parse("a | limit 3").stages[1].count == 3
    assert not math.isnan(run("prune/step/:k | group: count()", repo=root)["count"][0])
