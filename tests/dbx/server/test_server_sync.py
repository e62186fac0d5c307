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
