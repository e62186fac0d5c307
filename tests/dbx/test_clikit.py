"""``squeezr.dbx.clikit``, the plumbing of both command lines: tables that print text as written,
and subcommands that take their options and positionals in any order."""

from __future__ import annotations

import argparse
import io
import random
from types import SimpleNamespace
from typing import Any

import pytest

from squeezr.dbx.clikit import _simple_text_table, build_parser, emit, run, text_table


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = io.StringIO()
    emit(rows, "table", file=out)
    return out.getvalue().splitlines()


def test_text_that_looks_like_a_number_prints_as_written() -> None:
    rows = [  # tabulate alone prints 2.50 as 2.5 and 1e3 as 1000 (0.9 also 1_000 as 1000)
        {"tag": "1_000", "price": "2.50", "capture": "nan", "code": "007", "exp": "1e3"},
        {"tag": "2_000", "price": "3", "capture": "inf", "code": "8", "exp": "1E4"},
    ]
    header, _rule, first, second = table_lines(rows)
    assert first.split() == ["1_000", "2.50", "nan", "007", "1e3"]
    assert second.split() == ["2_000", "3", "inf", "8", "1E4"]
    assert header.split() == list(rows[0])


def test_numbers_still_align_on_the_decimal_point() -> None:
    rows = [{"n": 1000, "x": 2.5}, {"n": 7, "x": 12.25}, {"n": None, "x": None}]
    _header, _rule, *lines = table_lines(rows)
    assert [line.rstrip() for line in lines] == [
        "1000   2.5",
        "   7  12.25",
        "",
    ]


def test_a_column_mixing_numbers_and_text_prints_every_cell_as_written() -> None:
    _header, _rule, *lines = table_lines([{"k": 3}, {"k": "final"}, {"k": "3.10"}])
    assert [line.rstrip() for line in lines] == ["3", "final", "3.10"]


def test_text_table_shows_nested_values_as_compact_json() -> None:
    text = text_table([("flags", [True, None]), ("opt", {"lr": float("nan")})], style="plain")
    assert text.splitlines() == ["flags  [true,null]", 'opt    {"lr":{"$numberDouble":"NaN"}}']


def test_plain_text_tables_are_laid_out_exactly_as_tabulate_lays_them_out() -> None:
    """text_table lays out tables of plain text itself (10,000-row study plans); every table,
    plain or not, must come out as tabulate makes it."""
    from tabulate import tabulate

    pool = ["", "a", "a b", "planned", "changed, ran", "True", "1.50", "nan", "007", "-", "x" * 30]
    odd = [
        " ",
        " lead",
        "trail ",
        "cr\r",
        "\x0b",
        "tab\tin",
        "caf\u00e9",
        "\x1b[31mred\x1b[0m",
        "two\nlines",
        3,
        2.5,
    ]
    rng = random.Random(15)
    fast = 0
    for _ in range(400):
        columns = rng.randint(1, 5)
        headers = [rng.choice(["id", "name", "status", "a", "detail"]) for _ in range(columns)]
        choices = pool + [None] + (odd if rng.random() < 0.3 else [])
        rows = [[rng.choice(choices) for _ in range(columns)] for _ in range(rng.randint(1, 6))]
        text_columns = sorted({i for row in rows for i, v in enumerate(row) if isinstance(v, str)})
        expected = tabulate(rows, headers=headers, disable_numparse=text_columns)
        assert text_table(rows, headers) == expected, (rows, headers)
        fast += _simple_text_table(rows, headers) is not None
    assert fast > 200  # most tables took the fast path


# -- subcommand parsing ---------------------------------------------------------------------


def _command(register: Any) -> SimpleNamespace:
    return SimpleNamespace(register=register)


def _query(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("query")
    parser.add_argument("query")
    parser.add_argument("prefix", nargs="?")
    parser.add_argument("--repo", default=argparse.SUPPRESS)
    parser.add_argument("--csv", action="store_true")
    parser.set_defaults(func=lambda args: print(sorted(vars(args).items())))


def _compare(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare")
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--step", type=int)
    parser.set_defaults(func=lambda args: print(args.experiments, args.step))


def _exec(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("exec")  # a REMAINDER positional cannot be intermixed
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    parser.set_defaults(func=lambda args: print(args.quiet, args.argv))


def _pick(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pick")  # nor a positional in a mutually exclusive group
    group = parser.add_mutually_exclusive_group()
    group.add_argument("name", nargs="?")
    group.add_argument("--all", action="store_true")
    parser.set_defaults(func=lambda args: print(args.name, args.all))


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    modules = [_command(f) for f in (_query, _compare, _exec, _pick)]
    built = build_parser("prog", "test program", modules, "1.0")
    built.add_argument("--repo", help="the dbx CLI adds this one before the subcommand")
    return built


@pytest.mark.parametrize(
    "argv",
    [
        ["query", "Q", "P", "--csv"],
        ["query", "Q", "--csv", "P"],
        ["query", "--csv", "Q", "P"],
        ["--repo", "R", "query", "Q", "--csv", "P"],
        ["query", "Q", "--repo", "R", "--csv", "P"],
    ],
)
def test_options_and_positionals_mix_in_any_order(
    parser: argparse.ArgumentParser, argv: list[str]
) -> None:
    args = parser.parse_args(argv)
    assert (args.query, args.prefix, args.csv) == ("Q", "P", True)
    assert args.repo == ("R" if "R" in argv else None)


def test_the_option_after_the_subcommand_wins(parser: argparse.ArgumentParser) -> None:
    args = parser.parse_args(["--repo", "top", "query", "Q", "--repo", "sub"])
    assert args.repo == "sub"
    assert parser.parse_args(["--repo", "top", "query", "Q"]).repo == "top"


def test_variadic_positionals_continue_after_an_option(parser: argparse.ArgumentParser) -> None:
    args = parser.parse_args(["compare", "A", "--step", "3", "B", "C"])
    assert (args.experiments, args.step) == (["A", "B", "C"], 3)


def test_subcommands_argparse_cannot_intermix_are_parsed_the_plain_way(
    parser: argparse.ArgumentParser,
) -> None:
    args = parser.parse_args(["exec", "--quiet", "python", "-u", "x.py", "--quiet"])
    assert (args.quiet, args.argv) == (True, ["python", "-u", "x.py", "--quiet"])
    assert parser.parse_args(["pick", "one"]).name == "one"
    assert parser.parse_args(["pick", "--all"]).all is True


def test_a_missing_positional_is_a_usage_error(
    parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        run(parser, ["query", "--csv"])
    assert done.value.code == 2
    assert "the following arguments are required: query" in capsys.readouterr().err


def test_run_dispatches_the_intermixed_arguments(
    parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(parser, ["compare", "A", "--step", "2", "B"]) == 0
    assert capsys.readouterr().out == "['A', 'B'] 2\n"
