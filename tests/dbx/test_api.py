"""The ``dbx`` command line's operations in Python: find, frame, diff, like, missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx.errors import UserError

SPECS = [  # name, kind, params, results, events
    ("s/a", "train", {"lr": 0.1, "opt": {"name": "sgd"}}, {"acc": 0.9}, ["eval/test"]),
    ("s/b", "train", {"lr": 0.2, "opt": {"name": "sgd"}}, {"acc": 0.8}, []),
    ("s/c", "prune", {"lr": 0.1, "opt": {"name": "adam"}, "k": 4}, {}, ["eval/test/top5"]),
]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dbx.Repository:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = dbx.Repository.init(tmp_path / "experiments")
    for name, kind, params, results, events in SPECS:
        with dbx.create(name, kind=kind, params=params, repo=root) as exp:
            exp.results.update(results)
            for event in events:
                exp.log(event, x=1)
    monkeypatch.setenv("DBX_REPO", str(root.path))
    return root


def names(experiments) -> list[str]:
    return [exp.name for exp in experiments]


def test_find_is_dbx_ls(repo: dbx.Repository) -> None:
    assert names(dbx.find()) == ["s/a", "s/b", "s/c"]
    assert names(dbx.find("s/", kind="train", sort="-results.acc")) == ["s/a", "s/b"]
    assert names(dbx.find(where="params.opt.name == 'sgd' and results.acc < 0.85")) == ["s/b"]
    assert names(dbx.find(since="1h", limit=1, repo=repo.path)) == ["s/a"]
    with pytest.raises(UserError, match=r"'param\.lr' is not a field"):
        dbx.find(where="param.lr > 0")


def test_frame_of_a_selection_with_chosen_columns(repo: dbx.Repository) -> None:
    df = dbx.frame(kind="train", columns=["name", "params.lr", "results.acc", "created"])
    assert list(df.columns) == ["name", "params.lr", "results.acc", "created"]
    assert df.to_dict("list")["params.lr"] == [0.1, 0.2]
    assert df["created"].iloc[0].tzinfo is not None
    full = dbx.frame(repo)
    assert {"params.opt.name", "params.k", "results.acc"} <= set(full.columns)
    with pytest.raises(TypeError, match="not both"):
        dbx.frame(repo.experiments(), kind="train")


def test_diff_like_and_missing(repo: dbx.Repository) -> None:
    a, b, c = (dbx.open(name) for name in ("s/a", "s/b", "s/c"))
    rows = dbx.diff([a, b], results=True)
    assert [row["key"] for row in rows] == ["params.lr", "results.acc"]
    assert rows[0][f"{a.id[:8]} s/a"] == 0.1 and rows[0][f"{b.id[:8]} s/b"] == 0.2
    assert [row["key"] for row in dbx.diff([a, c])] == ["params.k", "params.opt.name"]
    with pytest.raises(UserError, match="at least two"):
        dbx.diff([a])
    closest = dbx.like(a, dbx.find())
    assert [(row["name"], row["distance"]) for row in closest] == [("s/b", 1), ("s/c", 2)]
    assert closest[1]["differs"] == "k=4, opt.name=adam"
    lacking = dbx.missing(dbx.find(), events=["eval/test"], results=["acc"])
    assert [(exp.name, what) for exp, what in lacking] == [
        ("s/b", ["event eval/test"]),
        ("s/c", ["result acc"]),
    ]
    with pytest.raises(UserError, match="--event NAME and/or --result KEY"):
        dbx.missing([a])


def test_nan_equals_nan_in_diff_and_like(tmp_path: Path) -> None:
    nan = float("nan")
    made = []
    for name, wd in (("n/a", nan), ("n/b", nan), ("n/c", 0.1)):
        params = {"lr": 0.1, "wd": wd, "curve": [nan, 1.0]}
        with dbx.create(name, params=params, repo=tmp_path / "experiments") as exp:
            exp.results["loss"] = nan
        made.append(exp)
    a, b, c = made
    assert dbx.diff([a, b], results=True) == []
    assert [row["key"] for row in dbx.diff([a, c])] == ["params.wd"]
    rows = dbx.like(a, [b, c])
    assert [(row["name"], row["distance"], row["differs"]) for row in rows] == [
        ("n/b", 0, ""),
        ("n/c", 1, "wd=0.1"),
    ]
