"""Inputs at the limits of the expression and query languages: deep nesting, huge numbers,
regexes that would backtrack forever. Each gets a one-line error or an answer, never a
traceback (RecursionError, OverflowError, ValueError) or a hang."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx import expr
from squeezr.dbx.cli import main
from squeezr.dbx.query import arithmetic, language


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("limits") / "experiments"
    with dbx.create("m", kind="train", repo=root) as exp:
        for step in range(3):
            exp.log(f"train/step/{step}", loss=1.0 / (step + 1), label="a" * 30 + "b")
        exp.log("huge/" + "7" * 5000, v=1)  # a level of 5,000 digits
        exp.log("w/" + "a" * 40 + "b", v=2)  # where wildcards inside a level could backtrack
    return root


def _fails_cleanly(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("dbx: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("depth", [200, 2000])
def test_deeply_nested_conditions_are_one_line_errors(
    root: Path, depth: int, capsys: pytest.CaptureFixture[str]
) -> None:
    nested = "(" * depth + "loss > 0" + ")" * depth
    err = _fails_cleanly(["ls", "--where", nested, "--repo", str(root)], capsys)
    assert "nested too deeply" in err
    err = _fails_cleanly(["query", f"train/step/:k | where {nested}", "--repo", str(root)], capsys)
    assert "nested too deeply" in err
    for deep in ("not " * depth + "true", "x in " + "[" * depth, "! " * depth + "x"):
        with pytest.raises(expr.ExpressionError, match="nested too deeply"):
            expr.parse(deep)


def test_deeply_nested_computations_are_one_line_errors(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nested = "(" * 300 + "loss" + ")" * 300
    err = _fails_cleanly(["query", f"train/step/:k | select {nested}", "--repo", str(root)], capsys)
    assert "nested too deeply" in err
    for deep in ("-" * 500 + "x", "log(" * 300 + "x" + ")" * 300, "x" + "**x" * 300):
        with pytest.raises(expr.ExpressionError, match="nested too deeply"):
            arithmetic.parse(deep)


def test_a_long_flat_chain_is_fine(root: Path) -> None:
    """Thousands of terms are not nesting: they parse and evaluate without recursion."""
    table = dbx.query.run(
        "train/step/:k | select k, " + " + ".join(["loss"] * 3000) + " as s", repo=root
    )
    assert table["s"].tolist() == pytest.approx([3000.0, 1500.0, 1000.0])
    assert expr.parse(" or ".join(["loss > 5"] * 3000)).evaluate(lambda p: 1) is False


def test_integer_literals_beyond_the_limit(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = "9" * 5000
    err = _fails_cleanly(["ls", "--where", f"params.x > {big}", "--repo", str(root)], capsys)
    assert "too long" in err
    err = _fails_cleanly(
        ["query", f"train/step/:k | select {big} + k", "--repo", str(root)], capsys
    )
    assert "too long" in err
    assert expr.parse("x < " + "9" * 300).evaluate(lambda p: 1)  # long, but a number


@pytest.mark.parametrize("count", ["²", "٣", "0", "-1", "1.5", "x"])
def test_first_and_last_need_ascii_digits(
    root: Path, count: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _fails_cleanly(["query", f"train/step/:k | first {count}", "--repo", str(root)], capsys)
    assert "positive whole number" in err


def test_first_and_last_with_huge_counts_take_everything(root: Path) -> None:
    for count in ("9" * 30, "9" * 5000, "12345678901234567890"):
        assert len(dbx.query.run(f"train/step/:k | last {count}", repo=root)) == 3
    assert language.parse("a | first 9" + "9" * 40).stages[1].count == language.MAX_ROWS


def test_a_level_of_thousands_of_digits_breaks_no_query(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", "huge/:n | select n, v", "--repo", str(root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"n": "7" * 5000, "v": 1}]  # kept as text: too long for a number
    assert len(dbx.query.run("**", repo=root)) == 5  # and the other queries still work


@pytest.mark.parametrize(
    ("regex", "says"),
    [
        ("a{99999999999}", "repeats more than 1000"),
        ("a{2,99999999999999999999999}", "repeats more than 1000"),
        ("a{1001}", "repeats more than 1000"),
        ("(", "missing )"),
        ("(?=a)b", "lookaround"),
        (r"(a)\1", "backreferences"),
    ],
)
def test_bad_regexes_are_regex_errors(
    root: Path, regex: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _fails_cleanly(
        ["query", f"train/step/:k | where label =~ '{regex}'", "--repo", str(root)], capsys
    )
    assert "invalid regular expression" in err and says in err


def test_catastrophic_regexes_do_not_hang(root: Path) -> None:
    """``(a+)+$`` against 60 a's and a b is 2**60 steps for a backtracking engine. Run in a
    child process, so that a regression fails with a timeout instead of hanging the suite."""
    code = (
        "from squeezr.dbx import expr, query\n"
        "import sys\n"
        "assert not expr.parse(\"x =~ '(a+)+$'\").evaluate(lambda p: 'a' * 60 + 'b')\n"
        "t = query.run(\"train/step/:k | where label =~ '(a+)+$'\", repo=sys.argv[1])\n"
        "assert t.empty\n"
        "t = query.run('*/*a*a*a*a*a*a*a*a*a*a*a*a*c', repo=sys.argv[1])\n"
        "assert t.empty\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
