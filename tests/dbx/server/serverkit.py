"""Helpers of the server tests: free ports, ``dbx`` subprocesses and a restartable
``dbx serve`` (imported by conftest.py and by tests that start their own server)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[3] / "src")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``dbx serve`` in a subprocess; restartable on the same data and port."""

    def __init__(self, data: Path, database: str | None) -> None:
        self.data, self.database = data, database
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def dbx(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``dbx ARGS --data ... [--db ...]`` (server administration) and check it."""
        argv = [*args, "--data", str(self.data)] + (
            ["--db", self.database] if self.database else []
        )
        return run_dbx(*argv)

    def token(self, scope: str) -> str:
        import json

        out = self.dbx("token", "create", "--name", f"test-{scope}", "--scope", scope, "--json")
        return json.loads(out.stdout)[0]["token"]

    def start(self, *extra: str) -> None:
        argv = ["serve", "--data", str(self.data), "--port", str(self.port), *extra]
        if self.database:
            argv += ["--db", self.database]
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from squeezr.dbx.cli import main; raise SystemExit(main())",
                *argv,
            ],
            env={**os.environ, "PYTHONPATH": SRC},
        )
        deadline = time.monotonic() + 300  # a loaded CI machine can be very slow
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "dbx serve exited"
            with contextlib.suppress(OSError):
                urllib.request.urlopen(self.url + "/openapi.json", timeout=2).close()
                return
            time.sleep(0.1)
        raise AssertionError("dbx serve did not start in 300 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run_dbx(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", "from squeezr.dbx.cli import main; raise SystemExit(main())", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=120,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"dbx {' '.join(args)} failed: {done.stderr}")
    return done
