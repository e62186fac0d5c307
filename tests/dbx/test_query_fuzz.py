"""Fuzzing the query and where languages through the CLI: thousands of malformed inputs, each
answered (exit 0) or refused with a one-line error (exit 2) — never a traceback or a hang.

Inputs come from a seeded generator (reproducible: a failure names its seed and input):
random token soups over both grammars' vocabulary, including the inputs that once broke
them (deep nesting, 5,000-digit numbers, ``first ²``, ``a{99999999999}``, ``(a+)+$``), and
single-character mutations of valid queries.
"""

from __future__ import annotations

import random
import signal
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx.cli import main

SEED = 20261202
QUERIES = 1400
CONDITIONS = 700
HANG_SECONDS = 60  # far beyond any answer; only a hang (or a catastrophic regex) reaches it

VALID_QUERIES = [
    "prune/step/:k | select k, acc",
    "prune/step/:k | where k > 1 && acc < 0.9 | select k, 100 * acc as pct",
    "prune/step/:k | group k: mean(acc), se(acc), quantile(acc, 0.5)",
    "prune/step/:k | before train/epoch/:e as t | select k, t.e",
    "train/epoch/:e | sort loss desc | limit 2",
    "prune/step/:k | pivot k by exp.name: acc",
    "** | group: count(), count_distinct(name)",
    "prune/step/:k | where `odd-name` == 'x' | last 1",
]
VALID_CONDITIONS = [
    "params.lr < 0.1 and not exists(results.acc)",
    "kind == 'train' || name =~ '^m[0-9]'",
    "(1 - results.acc) * 100 < 20",
    "params.seed in [0, 1, -2]",
]
TOKENS = [
    *("match", "where", "select", "before", "after", "first", "last", "limit", "sort"),
    *("group", "pivot", "by", "as", "asc", "desc", "and", "or", "not", "in", "exists"),
    *("true", "false", "null", "count", "mean", "quantile", "median", "count_distinct", "log"),
    *("|", "||", "&&", ":", ",", "(", ")", "[", "]", "{", "}", "==", "=", "!=", "<", ">="),
    *("=~", "!~", "+", "-", "*", "/", "//", "%", "**", "!", "`", "'", '"', "\\", ".", "*/"),
    *("k", "acc", "loss", "exp.name", "params.lr", "results.acc", "`odd-name`", "data.k"),
    *("prune/step/:k", "train/epoch/:e", "**", "*", "a/*b*/c", ":k", ":1", "/", "//a"),
    *("0", "1", "-1", "2.5", "1e308", "1e999", "0.", ".5", "²", "٣", "9" * 5000, "1" * 25),
    *("'(a+)+$'", "'a{99999999999}'", "'(?=a)'", "'['", "'\\\\1'", "'é+'", "'\\x00'"),
    *("(" * 200, ")" * 200, "[" * 100, "not " * 100, "- " * 300, "a" * 300, "\n", "\t"),
    *("\x00", "\ud800", "🙂", "é", " ", "  "),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "experiments"
    for seed in range(2):
        with dbx.create(f"m{seed}", kind="prune", params={"lr": 0.1, "seed": seed}, repo=root) as e:
            for step in range(3):
                e.log(f"train/epoch/{step}", loss=1.0 / (step + 1))
                e.log(f"prune/step/{step}", acc=0.9 - step / 10, chosen=[step], **{"odd-name": "x"})
            e.results["acc"] = 0.8
    return root


def _soup(rng: random.Random) -> str:
    words = [rng.choice(TOKENS) for _ in range(rng.randint(1, 14))]
    return "".join(word + rng.choice(["", " ", " ", "  "]) for word in words)


def _mutation(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(text) + 1)
        action = rng.randrange(3)
        if action == 0:  # insert a character or a token
            text = (
                text[:at]
                + rng.choice([rng.choice(TOKENS), chr(rng.randrange(32, 127))])
                + text[at:]
            )
        elif action == 1 and text:  # delete
            text = text[:at] + text[at + 1 :]
        else:  # duplicate a slice
            end = min(len(text), at + rng.randint(1, 8))
            text = text[:end] + text[at:end] + text[end:]
    return text


def inputs(count: int, valid: list[str], rng: random.Random) -> list[str]:
    return [_soup(rng) if i % 2 else _mutation(rng, rng.choice(valid)) for i in range(count)]


@contextmanager
def no_hang(text: str) -> Iterator[None]:
    def hung(*_: object) -> None:
        raise AssertionError(f"no answer within {HANG_SECONDS} s to {text[:200]!r}")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _check(args: list[str], text: str, capsys: pytest.CaptureFixture[str]) -> int:
    with no_hang(text), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # notes about empty results are answers too
        try:
            status = main(args)
        except Exception as exc:  # a traceback: the bug this test exists to find
            raise AssertionError(f"{type(exc).__name__}: {exc} for input {text[:200]!r}") from exc
    err = capsys.readouterr().err
    assert status in (0, 1, 2), (status, text[:200], err)
    assert "Traceback" not in err, (text[:200], err)
    if status == 1:  # dbx ls: nothing matched (exit 1, like grep)
        assert err == "dbx: no experiments match\n", (text[:200], err)
    if status == 2:
        assert err.startswith("dbx: error: ") and err.count("\n") == 1, (text[:200], err)
    return status


@pytest.mark.slow
def test_malformed_queries_get_answers_or_one_line_errors(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(SEED)
    statuses = [
        _check(["query", text, "--repo", str(root)], text, capsys)
        for text in inputs(QUERIES, VALID_QUERIES, rng)
    ]
    assert statuses.count(2) > QUERIES // 2  # they are malformed: most are refused


@pytest.mark.slow
def test_malformed_conditions_get_answers_or_one_line_errors(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(SEED + 1)
    for index, text in enumerate(inputs(CONDITIONS, VALID_CONDITIONS, rng)):
        if index % 2:
            _check(["ls", "--where", text, "--repo", str(root)], text, capsys)
        else:
            query = f"prune/step/:k | where {text}"
            _check(["query", query, "--repo", str(root)], query, capsys)
