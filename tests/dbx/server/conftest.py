"""Real services for the server tests: a PostgreSQL cluster in a temp dir (Debian's
binaries, run as an unprivileged user, on 127.0.0.1 and a free port) and ``dbx serve`` in a
subprocess, parametrized over SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SRC = str(Path(__file__).resolve().parents[3] / "src")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(argv: list[str]) -> list[str]:
    """Run as the ``postgres`` user when we are root (PostgreSQL refuses to run as root)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A running PostgreSQL cluster; yields its URL prefix ``postgresql://dbx@127.0.0.1:P/``."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 binaries not installed (.ci/run installs them)")
    root = Path(tempfile.mkdtemp(prefix="dbx-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    subprocess.run(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "dbx", "--auth=trust"]),
        check=True,
        capture_output=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off"
    subprocess.run(
        _as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-w",
                "-l",
                str(root / "log"),
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://dbx@127.0.0.1:{port}/"
    finally:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


_databases = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str | None:
    """A fresh database URL for one test (None: the SQLite default in the data folder)."""
    if request.param == "sqlite":
        return None
    import psycopg

    base = request.getfixturevalue("postgres")
    name = f"t{os.getpid()}_{next(_databases)}"
    with psycopg.connect(base + "postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base + name


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
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "dbx serve exited"
            with contextlib.suppress(OSError):
                urllib.request.urlopen(self.url + "/openapi.json", timeout=2).close()
                return
            time.sleep(0.1)
        raise AssertionError("dbx serve did not start in 60 s")

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


@pytest.fixture
def server(tmp_path: Path, database: str | None) -> Iterator[Server]:
    """A running server (SQLite and PostgreSQL) with a write token in ``$DBX_TOKEN``."""
    srv = Server(tmp_path / "server", database)
    srv.write_token = srv.token("write")
    srv.start()
    old = os.environ.get("DBX_TOKEN")
    os.environ["DBX_TOKEN"] = srv.write_token
    try:
        yield srv
    finally:
        srv.kill()
        if old is None:
            os.environ.pop("DBX_TOKEN", None)
        else:
            os.environ["DBX_TOKEN"] = old
