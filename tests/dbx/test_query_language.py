"""Query parsing: stages, lists, renames, aggregates, and errors that point at the column."""

from __future__ import annotations

import pytest

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
from squeezr.errors import UserError


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


def test_split_top_respects_quotes_and_brackets() -> None:
    pieces = split_top('a | where x =~ "p|q" | group k: mean(f(a, b))', "|", 0)
    assert [p for p, _ in pieces] == ["a", 'where x =~ "p|q"', "group k: mean(f(a, b))"]
    assert [o for _, o in pieces] == [0, 4, 23]


@pytest.mark.parametrize(
    ("text", "column", "problem"),
    [
        ("", None, "empty query"),
        ("a || b", 4, "empty stage"),
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
    ],
)
def test_errors_name_the_column(text: str, column: int | None, problem: str) -> None:
    with pytest.raises(UserError, match=problem) as info:
        parse(text)
    if column is not None:
        assert f"at column {column}" in str(info.value)
