"""dbx sync through a server (SQLite and PostgreSQL): local -> server -> local gives an
identical repository, and syncing again in either direction does nothing."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_sync import _make, _state

from squeezr import dbx
from squeezr.dbx.sync import sync


def test_local_to_server_to_local(server, tmp_path: Path) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    _make(a, 3, 50, tmp_path)
    with dbx.create("grid/extra", repo=a) as exp:  # a second run on one experiment
        exp.log("x", v=float("inf"))
    exp = dbx.resume("grid/extra", repo=a)
    exp.log("y", v=1)
    exp.close()
    assert sync(str(a), server.url)
    assert sync(str(a), server.url) == []
    assert sync(server.url, str(b), {"prefix": "grid/"})
    assert _state(a) == _state(b)
    assert sync(server.url, str(b)) == []
    assert sync(str(b), server.url) == []
    assert dbx.Repository(b).verify() == []


def test_sync_calls_check_scope_and_blobs(server, tmp_path: Path) -> None:
    """``/sync/apply`` needs the write scope and uploaded blobs, and writes nothing of a
    chunk that fails; ``/sync/events`` reads many runs at once."""
    import pytest

    from squeezr.dbx.errors import UserError
    from squeezr.dbx.remote.client import Client

    meta = {"format": 1, "id": "5e5e5e5e5e51", "name": "chunk/a", "kind": "train"}
    event = {"name": "e", "id": "1-1", "ts": 1.0, "run": 1, "data": {"v": 1}}
    bundle = {"id": meta["id"], "meta": meta, "events": [event]}
    reader = Client(server.url, token=server.token("read"))
    with pytest.raises(UserError, match="scope"):
        reader.request("POST", "/sync/apply", [bundle])
    writer = Client(server.url)
    info = {"sha256": "ab" * 32, "size": 3}
    with pytest.raises(UserError, match="upload the bytes"):
        writer.request("POST", "/sync/apply", [{**bundle, "attachments": {"f": info}}])
    assert writer.request("POST", "/inventory", {"ids": [meta["id"]]}) == {}
    assert writer.request("POST", "/sync/apply", [bundle]) == {"added": {meta["id"]: 1}}
    found = reader.request("POST", "/sync/events", {"logs": [[meta["id"], 1], [meta["id"], 2]]})
    assert found == {meta["id"]: {"1": [event], "2": []}}
