"""Query evaluation over in-memory logs: merge, filters, selectors, position, aggregates."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from squeezr.dbx import query
from squeezr.errors import UserError


def pruning_log() -> list[dict]:
    """A small pruning run: fine-tuning evals, then a prune step; step 2 amended later."""
    events = []
    for k in range(4):
        for epoch in range(2):
            acc = 0.5 + k / 10 + epoch / 100
            events.append({"name": f"finetune/{k}/epoch/{epoch}/eval", "data": {"val_acc": acc}})
        data = {"test_acc": 0.9 - k / 20, "block": 3 * k}
        events.append({"name": f"prune/step/{k}", "ts": 100.0 + k, "run": 1, "data": data})
    events.append(
        {"name": "prune/step/2", "ts": 200.0, "run": 2, "data": {"test_acc": 0.7, "x": 1}}
    )
    return events


def test_merging_is_default_and_latest_wins() -> None:
    table = query.run("prune/step/:k", events=pruning_log())
    assert list(table.columns) == ["name", "k", "test_acc", "block", "x"]
    assert table["k"].tolist() == [0, 1, 2, 3]
    assert table["test_acc"].tolist() == [0.9, 0.85, 0.7, 0.75]
    assert table.loc[2, "block"] == 6 and table.loc[2, "x"] == 1
    merged = query.run("prune/step/2 | select ts, run", events=pruning_log())
    assert merged.to_dict("records") == [{"ts": 200.0, "run": 2}]


def test_raw_keeps_every_event() -> None:
    table = query.run("prune/step/:k", events=pruning_log(), raw=True)
    assert len(table) == 5
    assert {"ts", "run"} <= set(table.columns)
    assert table["test_acc"].tolist()[2:] == [0.8, 0.75, 0.7]


def test_where_on_fields_variables_and_name() -> None:
    log = pruning_log()
    assert query.run("prune/step/:k | where k >= 2", events=log)["k"].tolist() == [2, 3]
    kept = query.run("prune/** | where test_acc < 0.8 or not exists(block)", events=log)
    assert kept["name"].tolist() == ["prune/step/2", "prune/step/3"]
    kept = query.run('** | where name =~ "^prune" and exists(x)', events=log)
    assert kept["name"].tolist() == ["prune/step/2"]
    assert query.run("prune/step/:k | where missing > 1", events=log).empty


def test_select_renames_and_computes() -> None:
    table = query.run(
        "prune/step/:k | select k, test_acc as acc, 1 - test_acc as err", events=pruning_log()
    )
    assert list(table.columns) == ["k", "acc", "err"]
    assert table["err"].round(3).tolist() == [0.1, 0.15, 0.3, 0.25]
    with pytest.raises(UserError, match="unknown column 'nope'"):
        query.run("prune/step/:k | select nope", events=pruning_log())


def test_nested_data_and_data_prefix() -> None:
    log = [{"name": "s", "data": {"sal": {"b1": 0.5}, "name": "clash"}}]
    table = query.run("s | select sal.b1, data.name, name", events=log)
    assert table.to_dict("records") == [{"sal.b1": 0.5, "data.name": "clash", "name": "s"}]


def test_before_and_after_join_nearest_events() -> None:
    log = pruning_log()
    before = query.run("prune/step/:k | before finetune/*/epoch/:e/eval as ft", events=log)
    assert before["ft.val_acc"].round(3).tolist() == [0.51, 0.61, 0.71, 0.81]
    assert before["ft.e"].tolist() == [1, 1, 1, 1]
    after = query.run(
        "prune/step/:k | after finetune/*/epoch/:e/eval | select k, after.val_acc", events=log
    )
    assert after["after.val_acc"].round(3).tolist()[:3] == [0.6, 0.7, 0.8]
    assert math.isnan(after["after.val_acc"].iloc[3])


def test_first_last_and_sort() -> None:
    log = pruning_log()
    assert query.run("prune/step/:k | last 2", events=log)["k"].tolist() == [2, 3]
    assert query.run("prune/step/:k | first 1", events=log)["k"].tolist() == [0]
    ordered = query.run("prune/step/:k | sort test_acc desc | first 2", events=log)
    assert ordered["k"].tolist() == [0, 1]


def test_group_aggregates() -> None:
    log = [
        {"name": f"run{r}/step/{k}", "data": {"acc": acc}}
        for r, accs in enumerate([[0.9, 0.8], [0.7, 0.6], [0.8, 0.4]])
        for k, acc in enumerate(accs)
    ]
    table = query.run(
        "*/step/:k | group k: mean(acc), se(1 - acc) as se_err, std(acc), min(acc), max(acc),"
        " first(acc), last(acc), count()",
        events=log,
    )
    row = table.iloc[1]
    assert table["k"].tolist() == [0, 1]
    assert row["mean_acc"] == pytest.approx(0.6)
    assert row["std_acc"] == pytest.approx(0.2)
    assert row["se_err"] == pytest.approx(0.2 / math.sqrt(3))
    assert (row["min_acc"], row["max_acc"], row["first_acc"], row["last_acc"]) == (
        0.4,
        0.8,
        0.8,
        0.4,
    )
    assert row["count"] == 3


def test_aggregating_text_is_a_user_error() -> None:
    log = [{"name": "a", "data": {"v": "high"}}, {"name": "b", "data": {"v": 1}}]
    with pytest.raises(UserError, match=r"mean\(v\) needs numbers"):
        query.run("* | group name: mean(v)", events=log)


def test_a_result_is_a_log_that_can_be_queried_again() -> None:
    first = query.run("prune/step/:k | select name, k, test_acc", events=pruning_log())
    again = query.run("prune/step/:j | where test_acc < 0.8 | select j, test_acc", events=first)
    assert again.to_dict("records") == [{"j": 2, "test_acc": 0.7}, {"j": 3, "test_acc": 0.75}]
    with pytest.raises(UserError, match="needs a 'name' column"):
        query.run("x", events=pd.DataFrame({"a": [1]}))


def test_pipe_stages_compose() -> None:
    table = query.run(
        "** | where exists(test_acc) | match prune/step/:k | where k > 0 | select k | last 1",
        events=pruning_log(),
    )
    assert table.to_dict("records") == [{"k": 3}]


def test_empty_result_keeps_selected_columns() -> None:
    table = query.run("nothing/:k | select k, acc | group k: mean(acc)", events=pruning_log())
    assert table.empty and list(table.columns) == ["k", "mean_acc"]


def test_bad_events_are_rejected() -> None:
    with pytest.raises(UserError, match="event 1 is not a log event"):
        query.run("**", events=[{"name": "a", "data": {}}, {"data": {}}])
