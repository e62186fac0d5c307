"""Query evaluation over in-memory logs: merge, filters, selectors, position, aggregates."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from squeezr.dbx import query
from squeezr.dbx.errors import UserError


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
    kept = query.run("prune/step/:k | where k <= 0 || k > 2 | select k", events=log)
    assert kept["k"].tolist() == [0, 3]


def test_where_rejects_a_field_no_row_has_but_exists_may_ask() -> None:
    log = pruning_log()
    with pytest.raises(UserError, match="unknown column 'missing'; available: name, k"):
        query.run("prune/step/:k | where missing > 1", events=log)
    everything = query.run("prune/step/:k | where not exists(missing) | select k", events=log)
    assert everything["k"].tolist() == [0, 1, 2, 3]
    assert query.run("prune/step/:k | where exists(missing)", events=log).empty
    # a field some rows lack is fine: those rows just fail the comparison
    assert query.run("prune/step/:k | where x == 1 | select k", events=log)["k"].tolist() == [2]


def test_exists_is_false_for_null_as_in_the_expression_language() -> None:
    log = [
        {"name": "a", "data": {"x": None}},
        {"name": "b", "data": {"x": 1}},
        {"name": "c", "data": {}},
    ]
    assert query.run("* | where exists(x) | select name", events=log)["name"].tolist() == ["b"]
    lacking = query.run("* | where not exists(x) | select name", events=log)
    assert lacking["name"].tolist() == ["a", "c"]


def test_select_renames_and_computes() -> None:
    table = query.run(
        "prune/step/:k | select k, test_acc as acc, 1 - test_acc as err", events=pruning_log()
    )
    assert list(table.columns) == ["k", "acc", "err"]
    assert table["err"].round(3).tolist() == [0.1, 0.15, 0.3, 0.25]
    with pytest.raises(UserError, match="unknown column 'nope'"):
        query.run("prune/step/:k | select nope", events=pruning_log())


def test_computed_columns() -> None:
    log = [{"name": f"s/{k}", "data": {"acc": 0.5 + k / 4, "n": k}} for k in range(3)]
    table = query.run(
        "s/:k | select k, -acc * 100 as neg, n ** 2 as sq, n // 2 as half, n % 2 as odd,"
        " sqrt(n) as root, log10(100 * acc) as lg, abs(1 - 2 * acc) as dev, 1 / n as inv",
        events=log,
    )
    assert table["neg"].tolist() == [-50.0, -75.0, -100.0]
    assert table["sq"].tolist() == [0, 1, 4]
    assert table["half"].tolist() == [0, 0, 1] and table["odd"].tolist() == [0, 1, 0]
    assert table["root"].tolist() == pytest.approx([0, 1, math.sqrt(2)])
    assert table["lg"].tolist() == pytest.approx([math.log10(50), math.log10(75), 2])
    assert table["dev"].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert table["inv"].tolist() == [math.inf, 1.0, 0.5]  # numpy rules, not an exception
    constant = query.run("s/:k | select k, 2 ** -1 as c, 1 / 0 as z", events=log)
    assert constant["c"].tolist() == [0.5] * 3 and constant["z"].tolist() == [math.inf] * 3
    text = [{"name": "s/1", "data": {"tag": "a"}}]
    with pytest.raises(UserError, match="'tag \\* 2' needs numbers"):
        query.run("s/:k | select tag * 2", events=text)


def test_backticks_reach_any_data_key_and_quotes_any_event_name() -> None:
    log = [{"name": "my step/1", "data": {"val-acc": 0.5, "and": 1}}]
    table = query.run(
        "'my step/:k' | where `val-acc` > 0.1 || k > 2 | select k, `val-acc` as va,"
        " `val-acc` * 2 as twice, `and`",
        events=log,
    )
    assert table.to_dict("records") == [{"k": 1, "va": 0.5, "twice": 1.0, "and": 1}]
    grouped = query.run("'my step/:k' | group `val-acc`: mean(`val-acc`)", events=log)
    assert grouped.to_dict("records") == [{"val-acc": 0.5, "mean_val-acc": 0.5}]
    assert len(query.run('match "my step/*"', events=log)) == 1
    only = query.run("'my step/:k' | select `val-acc`", events=log)  # kept by column pruning
    assert only.to_dict("records") == [{"val-acc": 0.5}]


def test_experiment_fields_must_exist() -> None:
    with pytest.raises(UserError, match=r"'exp\.nope' is not a field of an experiment; use"):
        query.run("prune/step/:k | select exp.nope", events=pruning_log())
    with pytest.raises(UserError, match=r"unknown column 'params\.seed'"):
        query.run("prune/step/:k | select params.seed", events=pruning_log())


def test_match_needs_text_names() -> None:
    with pytest.raises(UserError, match="'match' needs event names \\(text\\)"):
        query.run("prune/step/:k | select test_acc as name | match x", events=pruning_log())


def test_nested_data_and_data_prefix() -> None:
    log = [{"name": "s", "data": {"sal": {"b1": 0.5}, "name": "clash"}}]
    table = query.run("s | select sal.b1, data.name, name", events=log)
    assert table.to_dict("records") == [{"sal.b1": 0.5, "data.name": "clash", "name": "s"}]


def repeated_names_log() -> list[dict]:
    """Fine-tuning evals reuse their names at every pruning step (finetune/epoch/:e/eval),
    as a pruning loop naturally logs them; then an add-on run (run 2) adds test_acc."""
    events = []
    for k in range(4):
        for epoch in range(2):
            acc = round(0.9 - k / 100 - (1 - epoch) / 1000, 4)
            events.append(
                {"name": f"finetune/epoch/{epoch}/eval", "run": 1, "data": {"val_acc": acc}}
            )
        events.append({"name": f"prune/step/{k}", "run": 1, "data": {"test_acc": 0.8 - k / 100}})
    events.append({"name": "finetune/epoch/1/eval", "run": 2, "data": {"test_acc": 0.5}})
    return events


def test_before_and_after_use_real_positions_when_names_repeat() -> None:
    log = repeated_names_log()
    text = "prune/step/:k | before finetune/epoch/:e/eval as ft | select k, ft.e, ft.val_acc"
    for raw in (False, True):
        before = query.run(text, events=log, raw=raw)
        assert before["ft.val_acc"].tolist() == [0.9, 0.89, 0.88, 0.87]
        assert before["ft.e"].tolist() == [1, 1, 1, 1]
    after = query.run(
        "prune/step/:k | after finetune/epoch/:e/eval as ft | select k, ft.e, ft.val_acc",
        events=log,
    )
    assert after["ft.val_acc"].tolist()[:3] == [0.889, 0.879, 0.869]
    assert after["ft.e"].tolist()[:3] == [0, 0, 0]
    assert math.isnan(after["ft.val_acc"].iloc[3])  # the add-on amends, it does not follow
    # The left side merges by name (the spec's default): one row per name, newest data.
    merged = query.run("finetune/epoch/:e/eval | select e, val_acc", events=log)
    assert merged.to_dict("records") == [{"e": 0, "val_acc": 0.869}, {"e": 1, "val_acc": 0.87}]


def test_an_add_on_run_amends_the_latest_occurrence_unless_raw() -> None:
    log = repeated_names_log()
    text = "prune/step/:k | before finetune/epoch/:e/eval as ft | select k, ft.test_acc"
    amended = query.run(text, events=log)
    assert amended["ft.test_acc"].isna().tolist() == [True, True, True, False]
    assert amended["ft.test_acc"].iloc[3] == 0.5
    assert query.run(text, events=log, raw=True)["ft.test_acc"].isna().all()


def test_before_with_no_matching_event_gives_empty_columns() -> None:
    with pytest.warns(query.NoMatch, match="matches 'nothing/:z'"):
        table = query.run(
            "prune/step/:k | before nothing/:z as b | select k, b.z, b.name, b.val_acc",
            events=pruning_log(),
        )
    assert table["k"].tolist() == [0, 1, 2, 3]
    assert table[["b.z", "b.name", "b.val_acc"]].isna().all().all()
    with pytest.raises(UserError, match=r"unknown column 'ft\.nope'"):  # matched: a typo
        query.run("prune/step/:k | before finetune/** as ft | select ft.nope", events=pruning_log())


def test_where_and_sort_do_not_add_the_fields_they_read() -> None:
    log = [{"name": f"s/{i}", "data": {"sal": {"b": i}, "_exp": 7}} for i in range(3)]
    table = query.run("s/:k | where sal.b > 0 | sort sal.b desc", events=log)
    assert list(table.columns) == ["name", "k", "sal", "data._exp"]  # _exp is reserved
    assert table["k"].tolist() == [2, 1]


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


def test_sort_and_group_on_captures_mixing_numbers_and_text() -> None:
    log = [{"name": f"s/{x}", "data": {"v": i}} for i, x in enumerate(["3", "final", "10", "2"])]
    assert query.run("s/:x | sort x", events=log)["x"].tolist() == [2, 3, 10, "final"]
    assert query.run("s/:x | sort x desc", events=log)["x"].tolist() == ["final", 10, 3, 2]
    grouped = query.run("s/:x | group x: sum(v)", events=log)
    assert grouped.to_dict("records") == [
        {"x": 2, "sum_v": 3},
        {"x": 3, "sum_v": 0},
        {"x": 10, "sum_v": 2},
        {"x": "final", "sum_v": 1},
    ]


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


def test_group_by_lists_and_objects_and_aggregate_booleans() -> None:
    log = [
        {"name": f"a/{i}", "data": {"tags": ["x", i % 2], "cfg": {"x": i % 2}, "ok": i % 3 == 0}}
        for i in range(4)
    ]
    by_list = query.run("a/:i | group tags: count(), sum(ok)", events=log)
    assert by_list.to_dict("records") == [
        {"tags": '["x", 0]', "count": 2, "sum_ok": 1},
        {"tags": '["x", 1]', "count": 2, "sum_ok": 1},
    ]
    by_object = query.run("a/:i | group cfg: max(i)", events=log)
    assert by_object["max_i"].tolist() == [2, 3]
    flags = query.run("a/:i | select i, 1 - ok as bad", events=log)
    assert flags["bad"].tolist() == [0, 1, 1, 0]  # booleans compute as 0 and 1


def test_min_and_max_need_one_kind_of_value() -> None:
    log = [{"name": f"a/{i}", "data": {"v": [1, "x"][i % 2], "t": "abc"[i]}} for i in range(3)]
    assert query.run("a/:i | group t: max(t)", events=log)["max_t"].tolist() == ["a", "b", "c"]
    with pytest.raises(UserError, match=r"min\(v\) needs numbers or text \(not a mix"):
        query.run("a/:i | group name: min(v)", events=log)


def test_aggregating_text_is_a_user_error() -> None:
    log = [{"name": "a", "data": {"v": "high"}}, {"name": "b", "data": {"v": 1}}]
    with pytest.raises(UserError, match=r"mean\(v\) needs numbers"):
        query.run("* | group name: mean(v)", events=log)


def test_requerying_a_multi_experiment_result_keeps_the_experiments_apart() -> None:
    rows = [
        {"exp.id": f"id{e}", "exp.name": f"m{e % 2}", "name": f"prune/step/{k}", "err": e + k / 10}
        for e in range(3)
        for k in range(2)
    ]
    table = pd.DataFrame(rows)
    again = query.run("prune/step/:j", events=table)
    assert len(again) == 6
    assert list(again.columns)[:2] == ["exp.id", "exp.name"]
    assert again["exp.name"].tolist() == ["m0", "m0", "m1", "m1", "m0", "m0"]
    grouped = query.run("prune/step/:j | group j: count(), mean(err)", events=table)
    assert grouped["count"].tolist() == [3, 3]
    assert grouped["mean_err"].tolist() == pytest.approx([1.0, 1.1])
    last = query.run("prune/step/:j | last 1 | select exp.id, j, err", events=table)
    assert last.to_dict("records") == [
        {"exp.id": f"id{e}", "j": 1, "err": e + 0.1} for e in range(3)
    ]
    by_name = query.run("prune/step/:j", events=table.drop(columns="exp.id"))
    assert len(by_name) == 4  # without exp.id, exp.name tells the logs apart (m0 merges)


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
    with pytest.warns(query.NoMatch, match="no event of the 1 experiment read matches"):
        table = query.run("nothing/:k | select k, acc | group k: mean(acc)", events=pruning_log())
    assert table.empty and list(table.columns) == ["k", "mean_acc"]


def test_bad_events_are_rejected() -> None:
    with pytest.raises(UserError, match="event 1 is not a log event"):
        query.run("**", events=[{"name": "a", "data": {}}, {"data": {}}])
    # checked as log lines are (records.event_problem), where the fields are given
    with pytest.raises(UserError, match=r"event 0 is not a log event .*run must be an integer"):
        query.run("**", events=[{"name": "a", "run": "1"}])


def test_a_column_mixing_numbers_with_booleans_or_lists_keeps_each_value() -> None:
    flags = [{"name": "a", "data": {"x": 1}}, {"name": "b", "data": {"x": True}}]
    assert [type(x) for x in query.run("*", events=flags)["x"]] == [int, bool]
    assert query.run("* | where x == true | select name", events=flags)["name"].tolist() == ["b"]
    for second in ([2], {"a": 1}, [2, 3], 2**64):
        log = [{"name": "a/1", "data": {"x": 1}}, {"name": "a/2", "data": {"x": second}}]
        assert query.run("a/:k | select x", events=log)["x"].tolist() == [1, second]
    mixed = [{"name": f"a/{i}", "data": {"x": x}} for i, x in enumerate([1, 2.5])]
    assert query.run("a/:k | select x", events=mixed)["x"].tolist() == [1.0, 2.5]


def test_selected_or_grouped_ts_and_run_are_kept_even_when_missing() -> None:
    log = [{"name": "a", "data": {"x": 1}}]
    assert list(query.run("a | select name, ts, run", events=log).columns) == ["name", "ts", "run"]
    assert list(query.run("a | group run: count()", events=log).columns) == ["run", "count"]
    assert list(query.run("a", events=log, raw=True).columns) == ["name", "x"]  # none to show
    timed = [{"name": "a", "ts": 5.0, "data": {"x": 1}}]
    assert list(query.run("a | where x > 5", events=timed, raw=True).columns) == [
        "name",
        "ts",
        "x",
    ]


def test_two_joins_with_the_same_prefix_are_rejected() -> None:
    log = [{"name": "a/1", "data": {"v": 1}}, {"name": "b/2", "data": {"w": 2}}, {"name": "s/0"}]
    with pytest.raises(UserError, match=r"column 22 near 'before b/:y'.*duplicate prefix 'before'"):
        query.run("s/:k | before a/:x | before b/:y", events=log)
    both = query.run(
        "s/:k | before a/:x | before b/:y as b | select b.name, before.name", events=log
    )
    assert both.to_dict("records") == [{"b.name": "b/2", "before.name": "a/1"}]


def test_a_backticked_name_may_hold_as() -> None:
    log = [{"name": "s", "data": {"a as b": 1, "x": 2}}]
    table = query.run("s | select `a as b`, `a as b` as c, x as y", events=log)
    assert table.to_dict("records") == [{"a as b": 1, "c": 1, "y": 2}]
