"""Real services for the server tests: a PostgreSQL cluster in a temp dir (Debian's
binaries, run as an unprivileged user, on 127.0.0.1 and a free port) and ``dbx serve`` in a
subprocess, parametrized over SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverkit import Server, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


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


def _new_database(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    import psycopg

    base = request.getfixturevalue("postgres")
    name = f"t{os.getpid()}_{next(_databases)}"
    with psycopg.connect(base + "postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base + name


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str | None:
    """A fresh database URL for one test (None: the SQLite default in the data folder)."""
    return _new_database(request)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_database(request: pytest.FixtureRequest) -> str | None:
    """A fresh database for one test module's server."""
    return _new_database(request)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, module_database: str | None
) -> Iterator[Server]:
    """A running server (SQLite and PostgreSQL), shared by one test module (experiment ids
    are random, so tests do not meet each other's data), with a write token in
    ``$DBX_TOKEN``. A test that kills it starts it again before it ends."""
    srv = Server(tmp_path_factory.mktemp("server"), module_database)
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
