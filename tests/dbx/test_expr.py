"""The where-language: semantics table, paths, and every syntax error path."""

from __future__ import annotations

import pytest

from squeezr.dbx import expr
from squeezr.dbx.errors import UserError

ROW = {
    "kind": "prune",
    "name": "prune/oracle/4x",
    "params": {
        "lr": 0.1,
        "epochs": 60,
        "seed": 1,
        "method": "activation",
        "augment": True,
        "tags": ["a", "b"],
        "nothing": None,
        "optimizer": {"name": "sgd", "momentum": 0.9},
    },
    "results": {"best_val_acc": 0.95, "nan": float("nan"), "curve": [0.1, 0.5]},
    "val-acc": 0.5,
    "and": "kw",
}

CASES = [
    # the brief's examples
    ("params.lr == 0.1 and (results.best_val_acc > 0.9 or params.method =~ 'act.*')", True),
    ("not exists(results.test_acc)", True),
    ("kind != 'train'", True),
    ("params.epochs >= 50 && params.seed in [0, 1, 2]", True),
    # numbers: ints and floats compare numerically, both sides may be fields or literals
    ("params.epochs == 60.0", True),
    ("params.epochs < 60", False),
    ("params.epochs <= 60", True),
    ("params.lr > 0.01", True),
    ("60 == params.epochs", True),
    ("params.lr < params.epochs", True),
    ("params.lr == 1e-1", True),
    ("params.seed > -1", True),
    ("params.optimizer.momentum >= .9", True),
    # strings compare lexically; both quote styles; escapes of the quote character
    ("params.method > 'abc'", True),
    ("params.method < 'b'", True),
    ('params.method == "activation"', True),
    (r"'it\'s' == " + '"it\'s"', True),
    # mixed types: unequal and unordered
    ("params.epochs == '60'", False),
    ("params.epochs != '60'", True),
    ("params.method > 5", False),
    ("params.augment == 1", False),
    ("params.augment == true", True),
    ("params.augment > false", False),
    # null is a value for ==, but exists() wants a value: absent and null are alike there
    ("params.nothing == null", True),
    ("exists(params.nothing)", False),
    ("not exists(params.nothing)", True),
    ("exists(params.lr)", True),
    ("params.absent == null", False),
    # anything that touches a missing field is false, and its negation is true
    ("params.absent == 1", False),
    ("params.absent != 1", False),
    ("not params.absent == 1", True),
    ("!(params.absent > 0)", True),
    ("params.absent =~ 'x'", False),
    ("params.absent !~ 'x'", False),
    ("params.absent in [1]", False),
    ("params.lr == params.absent", False),
    # NaN follows IEEE comparisons
    ("results.nan > 0", False),
    ("results.nan == results.nan", False),
    # regex search (not full match); non-strings never match
    ("name =~ 'oracle'", True),
    ("name =~ '^oracle'", False),
    ("name !~ '^train/'", True),
    (r"name =~ '\d+x$'", True),
    ("params.epochs =~ '6'", False),
    # in / not in: lists with typed equality, substrings of strings, list-valued fields
    ("params.seed in [1.0, 'x']", True),
    ("params.augment in [1]", False),
    ("params.seed not in [0, 2]", True),
    ("'b' in params.tags", True),
    ("'act' in params.method", True),
    ("params.tags == ['a', 'b']", True),
    ("params.seed in []", False),
    ("results.curve.1 == 0.5", True),
    # boolean structure, precedence (not > and > or), aliases
    ("kind == 'train' or kind == 'prune' and params.seed == 1", True),
    ("(kind == 'train' or kind == 'prune') and params.seed == 2", False),
    ("kind == 'x' || kind == 'y' || kind == 'prune'", True),
    ("params.seed == 1 and params.epochs == 60 and kind == 'prune'", True),
    ("not not kind == 'prune'", True),
    ("! exists(params.lr)", False),
    # a bare value holds only when it is boolean true
    ("params.augment", True),
    ("params.method", False),
    ("not params.absent", True),
    ("true", True),
    # backticks quote a field name that is not an identifier, or is a keyword
    ("`val-acc` > 0.4", True),
    ("`and` == 'kw' and `val-acc` < 0.4", False),
    ("exists(`val-acc`)", True),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_evaluate(text: str, expected: bool) -> None:
    assert expr.parse(text).evaluate(expr.mapping_lookup(ROW)) is expected


def test_paths_lists_every_field_read() -> None:
    parsed = expr.parse("a.b == 1 and (not exists(c) or 'x' in d.e) and f =~ 'y' and 2 < g")
    assert parsed.paths() == {"a.b", "c", "d.e", "f", "g"}
    assert parsed.compared_paths() == {"a.b", "d.e", "f", "g"}  # c is only tested by exists
    assert expr.parse("exists(x) and x > 1").compared_paths() == {"x"}
    assert expr.parse("`val-acc` > 1 or exists(`a b`)").paths() == {"val-acc", "a b"}


def test_lookup_is_caller_supplied() -> None:
    seen: list[str] = []

    def lookup(path: str):
        seen.append(path)
        return 3 if path == "epoch" else expr.MISSING

    parsed = expr.parse("epoch == 3 and not exists(val_acc)")
    assert parsed.evaluate(lookup) is True
    assert seen == ["epoch", "val_acc"]


def test_missing_sentinel_and_dig() -> None:
    assert repr(expr.MISSING) == "MISSING" and not expr.MISSING
    assert expr.dig({"a": {"b": [1, 2]}}, "a.b.1") == 2
    assert expr.dig({"a": {"b": [1, 2]}}, "a.b.5") is expr.MISSING
    assert expr.dig({"a": 1}, "a.b") is expr.MISSING
    assert expr.dig({"a": 1}, "") == {"a": 1}


ERRORS = [
    ("params.lr == )", "column 14: expected a value after '==' (got ')')"),
    ("a ==", "column 5: expected a value after '==' (got end of expression)"),
    ("", "column 1: the expression is empty"),
    ("   ", "column 1: the expression is empty"),
    ("(a == 1", "column 8: expected ')' to close the '(' at column 1 (got end of expression)"),
    ("a == 1)", "column 7: unexpected ')' after a complete condition"),
    ("a == 1 b == 2", "column 8: unexpected 'b' after a complete condition"),
    ("a = 1", "column 3: '=' is not an operator; use '=='"),
    ("a == $x", "column 6: unexpected character '$'"),
    ("a == 'abc", "column 6: unterminated string starting with '"),
    ("a in [1, 2", "column 11: the '[' at column 6 is never closed"),
    ("a in [1 2]", "column 9: expected ',' between list items (got '2')"),
    ("a in [1,", "column 9: expected a list item (got end of expression)"),
    ("a in [b]", "column 7: expected a list item (got 'b')"),
    ("a =~ b", "column 6: expected a quoted regular expression after '=~' (got 'b')"),
    ("a !~ '('", "column 6: invalid regular expression '('"),
    ("exists a", "column 8: expected '(' after 'exists' (got 'a')"),
    ("exists(1)", "column 8: exists() needs a field path (got '1')"),
    ("exists(a b)", "column 10: expected ')' to close exists( (got 'b')"),
    ("and a == 1", "column 1: expected a condition (got 'and')"),
    ("a == 1 and", "column 11: expected a condition (got end of expression)"),
    ("not", "column 4: expected a condition (got end of expression)"),
    ("a == in", "column 6: expected a value after '==' (got 'in')"),
    ("`val-acc > 1", "column 1: a `quoted field name` needs its closing `"),
    ("a > 1 || `x", "column 10: a `quoted field name` needs its closing `"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_syntax_errors_name_the_column(text: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        expr.parse(text)
    text_of_error = str(caught.value)
    assert text_of_error.startswith("bad expression at ")
    assert message in text_of_error
    assert "\n" not in text_of_error
    # the column and the reason are also kept apart, for callers that embed expressions
    assert isinstance(caught.value, expr.ExpressionError)
    assert message == f"column {caught.value.column}: {caught.value.reason}"[: len(message)]
