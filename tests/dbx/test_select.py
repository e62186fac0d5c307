"""Choosing experiments: prefix, kind, since, where, sort (missing last) and limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from squeezr import dbx
from squeezr.dbx.errors import UserError
from squeezr.dbx.select import select_experiments
from squeezr.dbx.timeutil import parse_since, to_datetime

SPECS = [  # name, kind, params, results
    ("idea45/a", "train", {"lr": 0.1, "opt": {"name": "sgd"}}, {"acc": 0.90}),
    ("idea45/b", "train", {"lr": 0.05, "opt": {"name": "adam"}}, {"acc": 0.95}),
    ("idea45/c", "prune", {"lr": 0.1, "opt": {"name": "sgd"}}, {}),
    ("other/d", "prune", {"lr": 0.01, "opt": {"name": "sgd"}}, {"acc": 0.70}),
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("select") / "experiments"
    for name, kind, params, results in SPECS:
        with dbx.create(name, kind=kind, params=params, repo=root) as exp:
            exp.results.update(results)
    return dbx.Repository.find(root)


def names(experiments) -> list[str]:
    return [exp.name for exp in experiments]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, ["idea45/a", "idea45/b", "idea45/c", "other/d"]),
        ({"prefix": "idea45/"}, ["idea45/a", "idea45/b", "idea45/c"]),
        ({"kind": "prune"}, ["idea45/c", "other/d"]),
        ({"where": "params.opt.name == 'sgd' and results.acc < 0.8"}, ["other/d"]),
        ({"where": "not exists(results.acc)"}, ["idea45/c"]),
        ({"where": "exp.kind == 'train' and name =~ 'b$'"}, ["idea45/b"]),
        ({"where": "params.lr in [0.1]", "kind": "train"}, ["idea45/a"]),
        ({"sort": "-results.acc"}, ["idea45/b", "idea45/a", "other/d", "idea45/c"]),
        ({"sort": "results.acc"}, ["other/d", "idea45/a", "idea45/b", "idea45/c"]),
        ({"sort": "-params.lr,name"}, ["idea45/a", "idea45/c", "idea45/b", "other/d"]),
        ({"sort": ["kind", "-name"]}, ["other/d", "idea45/c", "idea45/b", "idea45/a"]),
        ({"sort": "-results.acc", "limit": 2}, ["idea45/b", "idea45/a"]),
        ({"since": "1h"}, ["idea45/a", "idea45/b", "idea45/c", "other/d"]),
        ({"since": "2999-01-01"}, []),
    ],
)
def test_select(repo, options, expected) -> None:
    chosen = select_experiments(repo, **options)
    if "sort" in options:
        assert names(chosen) == expected
    else:
        assert sorted(names(chosen)) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"where": "params.lr = 1"}, "bad expression at column 11"),
        ({"since": "yesterday"}, "cannot read --since 'yesterday'"),
        ({"sort": "results.acc desc"}, "cannot sort by 'results.acc desc'"),
        ({"limit": 0}, "--limit must be a positive number"),
    ],
)
def test_bad_selection(repo, options, message) -> None:
    with pytest.raises(UserError, match=message):
        select_experiments(repo, **options)


def test_parse_since_durations_and_dates() -> None:
    now = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("12h", now) == now - timedelta(hours=12)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    assert parse_since("1.5h", now) == now - timedelta(minutes=90)
    assert parse_since("2024-05-31T10:00+00:00") == datetime(2024, 5, 31, 10, tzinfo=UTC)
    naive = parse_since("2024-05-31")
    assert naive.tzinfo is not None and naive.replace(tzinfo=None) == datetime(2024, 5, 31)


def test_since_excludes_older_experiments(repo) -> None:
    newest = max(exp.created for exp in repo.experiments())
    later = select_experiments(repo, since=newest + timedelta(seconds=1))
    assert later == []
    assert len(select_experiments(repo, since=newest - timedelta(days=1))) == len(SPECS)


@pytest.mark.parametrize("text", ["0001-01-01", "0001-01-01T00:00:00", "not a time"])
def test_unreadable_times_are_none(text: str) -> None:
    assert to_datetime(text) is None


@pytest.mark.parametrize("since", ["0001-01-01", datetime(1, 1, 1)])
def test_since_before_year_one_in_utc_is_a_user_error(repo, since) -> None:
    with pytest.raises(UserError, match="cannot read --since"):
        select_experiments(repo, since=since)
