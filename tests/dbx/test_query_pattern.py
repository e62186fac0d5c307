"""Name patterns: exact, prefix, *, **, :var captures with numeric conversion, bad patterns."""

from __future__ import annotations

import pytest

from squeezr.dbx.errors import UserError
from squeezr.dbx.query import pattern as patterns
from squeezr.dbx.query.pattern import Pattern, numeric


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("train/epoch/3/eval", "train/epoch/3/eval", ()),
        ("train/epoch/3/eval", "train/epoch/3", None),
        ("train/", "train", ()),
        ("train/", "train/epoch/3/eval", ()),
        ("train/**", "train/epoch", ()),
        ("train/**", "trainer/epoch", None),
        ("train/*/eval", "train/3/eval", ()),
        ("train/*/eval", "train/3/x/eval", None),
        ("train/ep*/eval", "train/epoch/eval", ()),
        ("a/**/b", "a/b", ()),
        ("a/**/b", "a/x/y/b", ()),
        ("a/**/b", "a/x/y/c", None),
        ("**/eval", "eval", ()),
        ("**/eval", "train/epoch/2/eval", ()),
        ("**", "anything/at/all", ()),
        ("train/epoch/:epoch/eval", "train/epoch/12/eval", (12,)),
        ("prune/:method/:k", "prune/oracle/0.5", ("oracle", 0.5)),
        ("prune/step/:k", "prune/step/3/extra", None),
    ],
)
def test_match(pattern: str, name: str, expected: tuple | None) -> None:
    assert Pattern(pattern).match(name) == expected


def test_numeric_captures_sort_as_numbers() -> None:
    assert [numeric(t) for t in ("10", "-2", "1e-3", "0.5", "v2", "1.2.3")] == [
        10,
        -2,
        0.001,
        0.5,
        "v2",
        "1.2.3",
    ]
    assert sorted(numeric(t) for t in ("10", "9", "100")) == [9, 10, 100]


def test_variables_and_literal_prefilter() -> None:
    pattern = Pattern("prune/step/:k/eval")
    assert pattern.variables == ["k"]
    assert pattern.literal == "prune/step"
    assert Pattern("**/:x").literal == ""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty level"),
        ("a//b", "empty level"),
        ("a/:k/:k", "used twice"),
        ("a/:1x", "not a variable"),
        ("a/**/**", "once"),
    ],
)
def test_bad_patterns(text: str, problem: str) -> None:
    with pytest.raises(UserError, match=problem):
        Pattern(text)


def test_the_name_memos_share_one_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pattern's memo counts against one budget, so many cached patterns cannot each
    keep a full memo."""
    monkeypatch.setattr(patterns, "MEMO_NAMES", 10)
    steps, evals = Pattern("train/step/:i"), Pattern("train/eval/:i")
    for i in range(25):
        assert steps.match(f"train/step/{i}") == (i,)
        assert evals.match(f"train/eval/{i}") == (i,)
        assert len(steps._memo) + len(evals._memo) <= 10
    assert steps.match("train/step/3") == (3,)  # forgotten names are matched again
