"""``--repo URL``: the commands and the Python API give the same answers for a server as for
the folder it was synced from; queries run server-side, ``--follow`` streams over SSE."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx import query
from squeezr.dbx.cli import main
from squeezr.dbx.errors import NotFound, UserError
from squeezr.dbx.remote.client import Client
from squeezr.dbx.sync import sync


def _out(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def pair(server, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A local repository and the server (one per module) holding the same experiments."""
    local = tmp_path_factory.mktemp("pair") / "A"
    for i, opt in enumerate(["adam", "sgd", "adam"]):
        with dbx.create(
            f"grid/{opt}{i}", params={"lr": 0.1 * (i + 1), "opt": opt}, repo=local
        ) as exp:
            for epoch in range(3):
                exp.log(f"train/epoch/{epoch}/eval", acc=0.5 + 0.1 * epoch + i / 100)
            exp.results["best"] = i
    sync(str(local), server.url)
    return str(local), server.url


def test_commands_agree_on_folder_and_server(pair, capsys) -> None:
    local, url = pair
    for argv in (
        ["ls", "--where", "params.opt == 'adam'", "--columns", "id,name,params.lr", "--json"],
        ["diff", "grid/adam0", "grid/sgd1", "--json"],
        ["like", "grid/adam0", "--json"],
        ["cmd", "grid/sgd1"],
        ["query", "train/epoch/:epoch/eval | group epoch: mean(acc), count(acc)", "--json"],
        ["query", "train/epoch/:e/eval", "grid/", "--where", "params.lr > 0.15", "--csv"],
    ):
        assert _out(capsys, *argv, "--repo", local) == _out(capsys, *argv, "--repo", url), argv
    shown = [json.loads(_out(capsys, "show", "grid/adam2", "--json", "--repo", r)) for r in pair]
    assert shown[1].pop("path").startswith(url) and shown[0].pop("path")
    assert shown[0] == shown[1]


def test_python_api_returns_the_same_objects(pair) -> None:
    local, url = pair
    remote = dbx.open("grid/sgd1", repo=url)
    assert isinstance(remote, dbx.Experiment)
    here = dbx.open("grid/sgd1", repo=local)
    assert (remote.id, remote.params, remote.results["best"]) == (here.id, here.params, 1)
    assert remote.events() == here.events() and remote.runs() == here.runs()
    found = dbx.find(where="results.best >= 1", repo=url)
    assert [e.id for e in found] == [e.id for e in dbx.find(where="results.best >= 1", repo=local)]
    with pytest.raises(UserError, match="read-only"):
        remote.results["x"] = 1
    with pytest.raises(UserError, match="read-only"):
        dbx.resume("grid/sgd1", repo=url)
    with pytest.raises(NotFound, match="no experiment 'nosuch'"):
        dbx.open("nosuch", repo=url)


def test_follow_over_server_sent_events(pair, tmp_path: Path) -> None:
    _, url = pair
    batches: list = []
    done = threading.Event()

    def listen() -> None:
        for batch in query.follow("train/epoch/:epoch/eval", url, interval=0.2, stop=done.is_set):
            batches.append(batch)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    for _ in range(300):  # the listener has answered once before anything changes
        if batches:
            break
        threading.Event().wait(0.1)
    with dbx.create("grid/live", repo=tmp_path / "L", server=url) as exp:
        exp.log("train/epoch/0/eval", acc=0.99)
    for _ in range(200):
        if any((b["acc"] == 0.99).any() for b in batches):
            break
        threading.Event().wait(0.1)
    done.set()
    assert len(batches[0]) == 9  # the whole result first
    assert any((b["acc"] == 0.99).any() and len(b) == 1 for b in batches[1:])


def test_repeated_query_sees_new_events(pair) -> None:
    _, url = pair
    q = "train/epoch/:epoch/eval | group epoch: count(acc)"
    before = query.run(q, url)
    exp = dbx.open("grid/adam0", repo=url)
    event = {"name": "train/epoch/7/eval", "id": "9-1", "ts": 2e9, "run": 9, "data": {"acc": 1}}
    Client(url).request("POST", f"/experiments/{exp.id}/events", [event])
    after = query.run(q, url)  # the server's cached tables of that experiment are rebuilt
    assert len(after) == len(before) + 1 and after["epoch"].tolist()[-1] == 7


def test_bad_remote_query_is_one_line(pair, capsys) -> None:
    _, url = pair
    assert main(["query", "train/[", "--repo", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dbx: error:") and err.count("\n") == 1, err
