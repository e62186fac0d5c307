"""dbx serve over HTTP, against SQLite and PostgreSQL: streaming an experiment, reading it
back, tokens and scopes, names that would escape storage, size limits, error shape."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from serverkit import Server

from squeezr import dbx
from squeezr.dbx.errors import UserError
from squeezr.dbx.remote.client import Client


def _raw(url: str, method: str = "GET", token: str | None = None, body: bytes | None = None):
    """(status, decoded JSON) of one request, errors included."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_streamed_experiment_arrives_whole(server, tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights" * 1000)
    with dbx.create(
        "proj/a", kind="train", params={"lr": 0.1}, repo=tmp_path / "r", server=server.url
    ) as exp:
        for step in range(1200):
            exp.log("train/step", step=step, loss=1.0 / (step + 1))
        exp.log("eval", acc=float("nan"))
        exp.results["best"] = 0.9
        exp.notes = "first try"
        exp.attach(model)
    client = Client(server.url)
    shown = client.request("GET", f"/experiments/{exp.id}")
    assert shown["meta"]["params"] == {"lr": 0.1}
    assert shown["results"] == {"best": 0.9}
    assert shown["notes"] == "first try"
    assert shown["runs"]["1"]["status"] == "finished"
    assert shown["logs"]["1"] == [1201, 1201]
    events = client.request("GET", f"/experiments/{exp.id}/events")
    assert [e["id"] for e in events] == [e["id"] for e in exp.events()]
    assert events[-1]["data"]["acc"] != events[-1]["data"]["acc"]  # NaN round-trips
    data = b"".join(client.download(f"/experiments/{exp.id}/attachments/model.bin"))
    assert hashlib.sha256(data).hexdigest() == shown["attachments"]["model.bin"]["sha256"]


def test_same_batch_twice_is_stored_once_and_blobs_once(server, tmp_path: Path) -> None:
    client = Client(server.url)
    repo = dbx.Repository.init(tmp_path / "r")
    file = tmp_path / "same.txt"
    file.write_text("same bytes")
    ids = []
    for name in ("x/one", "x/two"):
        with dbx.create(name, repo=repo, server=server.url) as exp:
            exp.log("e", v=1)
            exp.attach(file)
        ids.append(exp.id)
    batch = [{"name": "extra", "id": "1-99", "ts": 1.0, "run": 1, "data": {}}]
    assert client.request("POST", f"/experiments/{ids[0]}/events", batch) == {"added": 1}
    assert client.request("POST", f"/experiments/{ids[0]}/events", batch) == {"added": 0}
    assert len(client.request("GET", f"/experiments/{ids[0]}/events")) == 2
    blobs = [p for p in (server.data / "blobs").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in blobs].count(b"same bytes") == 1


def test_tokens_scopes_and_names(server) -> None:
    api = server.url + "/api/v1"
    read = server.token("read")
    assert _raw(api + "/experiments")[0] == 401
    assert _raw(api + "/experiments", token="dbx_00000000_guess")[0] == 401
    assert _raw(api + "/experiments", token=read)[0] == 200
    meta = {
        "format": 1,
        "id": "0123456789ab",
        "name": "a/b",
        "kind": "train",
        "created": "2024-01-01T00:00:00+00:00",
        "params": {},
    }
    body = json.dumps(meta).encode()
    status, error = _raw(api + "/experiments/0123456789ab", "PUT", read, body)
    assert (status, error["status"]) == (403, 403) and "scope 'read'" in error["error"]
    assert _raw(api + "/experiments/0123456789ab", "PUT", server.write_token, body)[0] == 200
    bad = json.dumps({**meta, "id": "0123456789ac", "name": "../x"}).encode()
    status, error = _raw(api + "/experiments/0123456789ac", "PUT", server.write_token, bad)
    assert status == 400 and "may not start with '.'" in error["error"]
    info = json.dumps({"sha256": "0" * 64, "size": 1}).encode()
    for name in ("..%2Fx", "a/../../x", "%2E%2E/etc/passwd"):
        url = f"{api}/experiments/0123456789ab/attachments/{name}"
        status, error = _raw(url, "PUT", server.write_token, info)
        assert status in (400, 404), (name, status)
    assert _raw(api + "/blobs/..%2F..%2Fdbx.sqlite3", token=read)[0] in (400, 404)
    status, error = _raw(api + "/blobs/..", token=read)
    assert status == 400 and "not a sha256" in error["error"]
    assert _raw(api + "/tokens", token=server.write_token)[0] == 403
    admin = server.token("admin")
    status, listed = _raw(api + "/tokens", token=admin)
    assert status == 200 and {t["scope"] for t in listed} == {"read", "write", "admin"}
    assert all("hash" not in t for t in listed)
    token_id = read.split("_")[1]
    server.dbx("token", "revoke", token_id)
    status, error = _raw(api + "/experiments", token=read)
    assert status == 401 and "revoked" in error["error"]


def test_errors_have_one_shape_and_the_api_is_documented(server) -> None:
    status, error = _raw(server.url + "/api/v1/experiments/nosuch", token=server.write_token)
    assert status == 404 and error == {"error": error["error"], "status": 404}
    assert "no experiment 'nosuch'" in error["error"]
    with urllib.request.urlopen(server.url + "/openapi.json") as response:
        paths = json.loads(response.read())["paths"]
    assert "/api/v1/experiments/{exp_id}/events" in paths and "/api/v1/query" in paths
    with urllib.request.urlopen(server.url + "/docs") as response:
        assert b"swagger" in response.read().lower()


def test_request_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = Server(tmp_path / "small", None)  # the limit does not depend on the database
    monkeypatch.setenv("DBX_TOKEN", small.token("write"))
    small.start("--max-body", "0.01")  # about 10 kB
    try:
        client = Client(small.url)
        with pytest.raises(UserError, match="larger than this server accepts"):
            client.request("PUT", f"/blobs/{'a' * 64}", data=b"x" * 100_000)
        assert not any((small.data / "blobs").rglob("*/*"))
    finally:
        small.kill()
