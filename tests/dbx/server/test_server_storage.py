"""Server storage without HTTP, on SQLite and PostgreSQL: versioned migrations, idempotent
writes, reference resolution; and the server commands' one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from serverkit import run_dbx

from squeezr.dbx.errors import Ambiguous, NotFound, UserError
from squeezr.dbx.server.settings import Settings
from squeezr.dbx.server.storage import open_storage
from squeezr.dbx.server.storage.migrations import latest


def _meta(exp_id: str, name: str) -> dict:
    return {
        "format": 1,
        "id": exp_id,
        "name": name,
        "kind": "train",
        "created": "2024-01-01T00:00:00+00:00",
        "params": {"lr": float("nan")},
    }


def test_migrations_idempotent_writes_and_lookup(tmp_path: Path, database: str | None) -> None:
    settings = Settings(data=tmp_path, database=database)
    storage = open_storage(settings)
    assert storage.schema_version() == latest()
    assert storage.put_experiment(_meta("aaaaaaaaaaa1", "x/a")) is True
    assert storage.put_experiment(_meta("aaaaaaaaaaa1", "x/a")) is False
    with pytest.raises(UserError, match="never change"):
        storage.put_experiment(_meta("aaaaaaaaaaa1", "x/other"))
    storage.put_experiment(_meta("aaaaaaaaaab2", "x/a"))
    events = [
        {"name": "e", "id": f"1-{i}", "ts": float(i), "run": 1, "data": {"i": i}}
        for i in range(1, 6)
    ]
    assert storage.add_events("aaaaaaaaaaa1", events) == 5
    assert storage.add_events("aaaaaaaaaaa1", [*events, {**events[0], "id": "1-6"}]) == 1
    assert storage.log_sizes("aaaaaaaaaaa1") == {1: (6, 6)}
    with pytest.raises(UserError, match="<run>-<seq>"):
        storage.add_events("aaaaaaaaaaa1", [{**events[0], "id": "2-1"}])  # id of another run
    assert storage.resolve("aaaaaaaaaab") == "aaaaaaaaaab2"
    with pytest.raises(Ambiguous):
        storage.resolve("x/a")
    with pytest.raises(NotFound):
        storage.resolve("nothing")
    record = storage.experiment("aaaaaaaaaaa1")
    assert record["meta"]["params"]["lr"] != record["meta"]["params"]["lr"]  # NaN kept
    storage.close()
    reopened = open_storage(settings)  # migrations are not applied twice
    assert reopened.schema_version() == latest()
    with reopened._transaction() as cursor:
        cursor.execute("INSERT INTO schema_version VALUES (99)")
    reopened.close()
    with pytest.raises(UserError, match="newer than this dbx"):
        open_storage(settings)


def test_server_commands_fail_in_one_line(tmp_path: Path) -> None:
    done = run_dbx(
        "serve",
        "--data",
        str(tmp_path),
        "--db",
        "postgresql://nobody@127.0.0.1:1/none",
        check=False,
    )
    assert done.returncode == 2 and done.stderr.startswith("dbx: error: cannot connect")
    assert done.stderr.count("\n") == 1
    done = run_dbx("token", "revoke", "feedbeef", "--data", str(tmp_path), check=False)
    assert (done.returncode, done.stderr) == (
        2,
        "dbx: error: no token feedbeef; list them with `dbx token list`\n",
    )
    done = run_dbx("sync", str(tmp_path / "none"), str(tmp_path / "b"), check=False)
    assert done.returncode == 2 and "is not a dbx repository" in done.stderr
