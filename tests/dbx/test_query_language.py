"""Query parsing: stages, lists, renames, aggregates, and errors that point at the column."""

from __future__ import annotations

import pytest

from squeezr.dbx.errors import UserError
from squeezr.dbx.query.language import (
    Group,
    Match,
    Near,
    Select,
    Sort,
    Take,
    Where,
    parse,
    split_top,
)


def test_full_pipeline() -> None:
    query = parse(
        "prune/step/:k | where test_acc > 0.5 | select k, test_acc as acc, 1 - test_acc as err"
        " | before finetune/*/eval as ft | sort k desc, acc | last 2"
        " | group k: mean(acc), se(1 - acc) as se_err, count()"
    )
    kinds = [type(stage) for stage in query.stages]
    assert kinds == [Match, Where, Select, Near, Sort, Take, Group]
    match, where, select, near, sort, take, group = query.stages
    assert match.pattern.variables == ["k"]
    assert where.condition.paths() == {"test_acc"}
    assert [(c.source, c.name, c.is_path) for c in select.columns] == [
        ("k", "k", True),
        ("test_acc", "acc", True),
        ("1 - test_acc", "err", False),
    ]
    assert select.columns[2].paths() == {"test_acc"}
    assert (near.direction, near.pattern.text, near.prefix) == ("before", "finetune/*/eval", "ft")
    assert sort.keys == (("k", False), ("acc", True))
    assert (take.end, take.count) == ("last", 2)
    assert group.keys == ("k",)
    assert [(a.func, a.name) for a in group.aggregates] == [
        ("mean", "mean_acc"),
        ("se", "se_err"),
        ("count", "count"),
    ]


def test_defaults() -> None:
    near = parse("a | after b/:i").stages[1]
    assert near.prefix == "after"
    group = parse("a/:k | group k").stages[1]
    assert [(a.func, a.name) for a in group.aggregates] == [("count", "count")]
    assert isinstance(parse("match where").stages[0], Match)
    assert isinstance(parse("where x > 1").stages[0], Where)
    multiline = parse("prune/step/:k\n  | select\tk,\n    acc as a")
    assert [c.name for c in multiline.stages[1].columns] == ["k", "a"]


def test_split_top_respects_quotes_brackets_and_or() -> None:
    pieces = split_top('a | where x =~ "p|q" | group k: mean(f(a, b))', "|", 0)
    assert [p for p, _ in pieces] == ["a", 'where x =~ "p|q"', "group k: mean(f(a, b))"]
    assert [o for _, o in pieces] == [0, 4, 23]
    pieces = split_top("a | where k <= 1 || k > 3 | select `x|y`, 'a|b'", "|")
    assert [p for p, _ in pieces] == ["a", "where k <= 1 || k > 3", "select `x|y`, 'a|b'"]


def test_or_in_a_where_stage() -> None:
    where = parse("a/:k | where k <= 1 || k > 3 | select k").stages[1]
    assert isinstance(where, Where) and where.condition.paths() == {"k"}


def test_backticks_and_quoted_patterns() -> None:
    query = parse(
        "'my step/:k' | select `val-acc` as va, `val-acc` * 2 as twice | sort `va` desc"
        ' | group `va`: mean(`val-acc`) | before "x y/*" as p'
    )
    match, select, sort, group, near = query.stages
    assert match.pattern.match("my step/3") == (3,)
    assert [(c.path, c.name) for c in select.columns] == [("val-acc", "va"), (None, "twice")]
    assert select.columns[1].paths() == {"val-acc"}
    assert sort.keys == (("va", False),)
    assert group.keys == ("va",) and group.aggregates[0].name == "mean_val-acc"
    assert near.pattern.text == "x y/*" and near.prefix == "p"


def test_as_inside_backticks_or_brackets_is_no_rename() -> None:
    select = parse("a | select `a as b`, `a as b` as c, 1 - `x as y` as d, `as`").stages[1]
    assert [(c.source, c.name, c.path) for c in select.columns] == [
        ("`a as b`", "a as b", "a as b"),
        ("`a as b`", "c", "a as b"),
        ("1 - `x as y`", "d", None),
        ("`as`", "as", "as"),
    ]
    group = parse("a | group k: mean(`p as q`) as m, max(`p as q`)").stages[1]
    assert [a.name for a in group.aggregates] == ["m", "max_p as q"]


def test_patterns_lists_what_the_query_reads() -> None:
    texts = [p.text for p in parse("a/:k | before b/* | after c as x").patterns()]
    assert texts == ["a/:k", "b/*", "c"]
    assert [p.text for p in parse("where x > 1").patterns()] == ["**"]


@pytest.mark.parametrize(
    ("text", "column", "problem"),
    [
        ("", None, "empty query"),
        ("a | | b", 5, "empty stage"),
        ("a || b", 3, "'||' means 'or' inside a where condition"),
        ("a | selec k", 5, "'selec' is not a stage"),
        ("a | select k,", 14, "empty item"),
        ("a | where x >", 14, "expected a value"),
        ("a | first 0", 11, "positive whole number"),
        ("a | group k: avg(x)", 14, "unknown aggregate 'avg'"),
        ("a | group k: mean()", 19, "needs a column"),
        ("a | group 1: mean(x)", 11, "not a column to group by"),
        ("a | sort k up", 10, "column desc"),
        ('a | select "x', 12, 'unclosed " quote'),
        ("a | before b as 1x", 14, "as NAME"),
        ("a//b", 1, "empty level"),
        # computed columns are parsed with the query, so their errors point into it too
        ("a | select k +", 15, "expected a number, a column or '\\(' \\(got the end\\)"),
        ("a | select (k", 12, "'\\(' is never closed"),
        ("a | select (k | first 1", 12, "'\\(' is never closed"),
        ("a | where k > 1) | select k", 16, "'\\)' without a matching opening one"),
        ("a | select k as", 16, "expected a column name after 'as'"),
        ("a | select k, k", 15, "duplicate column 'k'"),
        ("a | select k, x as k", 15, "duplicate column 'k'"),
        ("a | group k: count(), count()", 23, "duplicate column 'count'"),
        ("a | group k: mean(x) as k", 14, "duplicate column 'k'"),
        ("a | select x[0]", 13, "unexpected '\\['"),
        ("a | select foo(x)", 12, "unknown function 'foo'"),
        ("a | select 2 * (x", 16, "'\\(' is never closed"),
        ("a | select x y", 14, "expected an operator"),
        ("a | group k: mean(1 - )", 22, "expected a number"),
        ("a | select `x", 12, "unclosed ` quote"),
        ("a | before 'b c as x", 12, "unclosed ' quote"),
        ("'a b' c", 7, "unexpected 'c' after the quoted name pattern"),
        ("a b", 1, "'a' is not a stage .* a name pattern with spaces must be quoted"),
        ("a | where `x > 1", 11, "unclosed ` quote"),
        ("a | before b | after c | before d", 26, "duplicate prefix 'before'"),
        ("a | before b as p | after c as p", 21, "duplicate prefix 'p'"),
    ],
)
def test_errors_name_the_column(text: str, column: int | None, problem: str) -> None:
    with pytest.raises(UserError, match=problem) as info:
        parse(text)
    if column is not None:
        assert f"at column {column}" in str(info.value)
