"""The tokenizer shared by conditions (``expr``) and computed columns (``query.arithmetic``)."""

from __future__ import annotations

import pytest

from squeezr.dbx import expr
from squeezr.dbx.query import arithmetic
from squeezr.dbx.tokens import ExpressionError, Tokenizer

TOKENIZER = Tokenizer(
    ("==", "-", "(", ")"),
    unexpected="no {char!r} here",
    strings=True,
    rejected={"=": "use '=='"},
)


def test_tokens_keep_their_kind_value_and_column() -> None:
    tokens = TOKENIZER.tokenize("a.b.0 == 'it\\'s' (`val-acc`) 2.5e1 - 7")
    assert [(t.kind, t.value, t.column) for t in tokens] == [
        ("name", "a.b.0", 1),
        ("op", "==", 7),
        ("str", "it's", 10),
        ("op", "(", 18),
        ("name", "val-acc", 19),
        ("op", ")", 28),
        ("num", 25.0, 30),
        ("op", "-", 36),
        ("num", 7, 38),
        ("end", None, 39),
    ]
    assert tokens[4].text == "`val-acc`"  # so a backticked name is never a keyword


def test_a_minus_is_part_of_a_number_only_where_the_language_says_so() -> None:
    signed = Tokenizer(("-",), unexpected="{char}", signed_numbers=True)
    assert [t.value for t in signed.tokenize("-1 - 2")][:-1] == [-1, "-", 2]
    assert [t.value for t in TOKENIZER.tokenize("-1")][:-1] == ["-", 1]


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("a = 1", 3, "use '=='"),
        ("a $ 1", 3, "no '$' here"),
        ("a == 'x", 6, "unterminated string starting with '"),
        ("a == `x", 6, "a `quoted field name` needs its closing `"),
    ],
)
def test_errors_name_the_column(text: str, column: int, reason: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        TOKENIZER.tokenize(text)
    assert (caught.value.column, caught.value.reason) == (column, reason)


def test_both_languages_read_numbers_and_names_alike() -> None:
    condition = expr.parse("`val-acc` >= 1.5e-1 and results.curve.0 < 2")
    computed = arithmetic.parse("`val-acc` * 1.5e-1 + results.curve.0 / 2")
    assert condition.paths() == set(computed.paths) == {"val-acc", "results.curve.0"}
    assert condition.evaluate(expr.mapping_lookup({"val-acc": 0.15, "results": {"curve": [1]}}))
    values = {"val-acc": 2.0, "results.curve.0": 1.0}
    assert computed.evaluate(values.__getitem__) == pytest.approx(0.8)
    with pytest.raises(ExpressionError, match="needs its closing `"):
        arithmetic.parse("`val-acc * 2")
