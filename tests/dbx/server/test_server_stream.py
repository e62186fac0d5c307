"""Streaming survives the server: killed while 4 clients stream, restarted, and every event
is on it exactly once (the local logs are the write-ahead log)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from serverkit import SRC

from squeezr import dbx
from squeezr.dbx.remote.client import Client

CLIENT = """
import sys, time
from squeezr import dbx
exp = dbx.create(f"stream/{sys.argv[1]}", repo=sys.argv[2], server=sys.argv[3])
for k in range(int(sys.argv[4])):
    exp.log("tick", k=k)
    if k % 10 == 0:
        exp.results["last"] = k
        time.sleep(0.02)
exp.close()
"""


def test_kill_and_restart_while_four_clients_stream(server, tmp_path: Path) -> None:
    repo = dbx.Repository.init(tmp_path / "r")
    count = 1500
    env = {**os.environ, "PYTHONPATH": SRC, "DBX_SERVER_WAIT": "90"}
    clients = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(i), str(repo.path), server.url, str(count)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    time.sleep(2.0)
    server.kill()  # SIGKILL: no graceful shutdown
    time.sleep(1.5)
    server.start()
    errors = []
    for client in clients:
        _, err = client.communicate(timeout=180)
        assert client.returncode == 0, err
        errors.append(err)
    assert any("retrying" in err for err in errors)  # the server was down mid-stream
    client = Client(server.url)
    for exp in repo.experiments():
        local = [e["id"] for e in exp.events()]
        remote = client.request("GET", f"/experiments/{exp.id}/events")
        assert len(local) == count
        assert sorted(e["id"] for e in remote) == sorted(local)  # each once, none missing
        shown = client.request("GET", f"/experiments/{exp.id}")
        assert shown["results"] == {"last": count - 10}
        assert shown["runs"]["1"]["status"] == "finished"
    assert len(list(repo.experiments())) == 4
