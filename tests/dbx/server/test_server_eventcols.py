"""Events stored as columns (storage/eventcols.py), on SQLite and PostgreSQL: a query table
built from the blocks equals the one ``extract`` builds from the same events as JSON, in
every mode and for every kind of value; resent and repeated events are stored once; many
small blocks are compacted; migration 2 writes the blocks of a database made before them;
and many experiments are written in one transaction (``Storage.apply``)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from squeezr.dbx.errors import NotFound, UserError
from squeezr.dbx.query.pattern import Pattern
from squeezr.dbx.query.table import MERGED, OCCURRENCES, RAW, extract
from squeezr.dbx.server.settings import Settings
from squeezr.dbx.server.storage import base, open_storage
from squeezr.dbx.server.storage.migrations import MIGRATIONS, latest

VALUES: list[Any] = [1, 2.5, -3, "s", None, True, [1, 2], {"a": 1}, float("nan"), 2**70]


def _meta(exp_id: str) -> dict[str, Any]:
    return {"format": 1, "id": exp_id, "name": "cols/x", "kind": "train", "created": None}


def _events(rng: random.Random, count: int, distinct: bool) -> list[dict[str, Any]]:
    """Events of two runs with times out of order, names repeated (or all distinct), data
    keys that collide with the row fields, and every kind of JSON value."""
    out = []
    for i in range(count):
        run = rng.choice([1, 2])
        seq = i + 1 if distinct else rng.randint(1, count)
        name = f"train/step/{i}" if distinct else rng.choice(["train/step/1", "eval/2", "x"])
        keys = rng.sample(["loss", "acc", "name", "run", "_pos", "lr"], rng.randint(0, 3))
        data = {k: rng.random() if k == "loss" else rng.choice(VALUES) for k in keys}
        if distinct and i % 3 == 0:
            data = {"loss": float(i), "acc": i}  # numeric columns: raw numbers in the block
        out.append(
            {
                "name": name,
                "id": f"{run}-{seq}",
                "ts": float(rng.randint(0, 9)),
                "run": run,
                "data": data,
            }
        )
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and np.array_equal(a, b, equal_nan=True)
        )
    return repr(a) == repr(b)


def _check_tables(storage: Any, exp_id: str) -> None:
    events = storage.events([exp_id])[exp_id]
    log = storage.log(exp_id)
    assert repr(log.events()) == repr(events)
    for text in ["train/step/:step", "eval/:k", "x", "**", "train/", "nothing"]:
        for mode in (MERGED, RAW, OCCURRENCES):
            want = extract(list(enumerate(events)), Pattern(text), mode)
            got = log.table(Pattern(text), mode)
            assert (got.names, got.length) == (want.names, want.length), (text, mode)
            for name in want.names:
                assert _same(got.column(name), want.column(name)), (text, mode, name)


@pytest.mark.parametrize("distinct", [False, True])
def test_tables_from_blocks_equal_tables_from_json(
    tmp_path: Path, database: str | None, distinct: bool
) -> None:
    storage = open_storage(Settings(data=tmp_path, database=database))
    # two experiments logging the same names (with other data): the second is built from
    # what the first left in the memo of name sequences, and must still be its own
    for exp_id in ("c0c0c0c0c0c1", "c0c0c0c0c0ca"):
        rng = random.Random(16)
        storage.put_experiment(_meta(exp_id))
        for _ in range(4):
            batch = _events(rng, 40, distinct)
            if exp_id.endswith("a"):
                batch = [{**e, "data": {"other": i}} for i, e in enumerate(batch)]
            storage.add_events(exp_id, batch)
            assert storage.add_events(exp_id, batch) == 0  # a resent batch adds nothing
        _check_tables(storage, exp_id)
    storage.close()


def test_many_blocks_are_compacted(tmp_path: Path, database: str | None) -> None:
    storage = open_storage(Settings(data=tmp_path, database=database))
    exp_id = "c0c0c0c0c0c2"
    storage.put_experiment(_meta(exp_id))
    for seq in range(1, base.COMPACT_BLOCKS + 3):
        event = {"name": f"s/{seq}", "id": f"1-{seq}", "ts": 1.0, "run": 1, "data": {"v": seq}}
        storage.add_events(exp_id, [event])
    before = storage.log(exp_id).events()
    assert storage._query("SELECT COUNT(*) FROM event_blocks WHERE exp_id = ?", (exp_id,)) == [(1,)]
    assert storage.log(exp_id).events() == before
    _check_tables(storage, exp_id)
    storage.close()


def test_migration_2_writes_blocks_of_an_existing_database(
    tmp_path: Path, database: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data=tmp_path, database=database)
    monkeypatch.setattr(base, "MIGRATIONS", MIGRATIONS[:1])
    old = open_storage(settings)  # a database as the first release made it
    assert old.schema_version() == 1
    exp_id = "c0c0c0c0c0c3"
    old.put_experiment(_meta(exp_id))
    rows = [
        (exp_id, 1, seq, f"train/step/{seq}", float(seq), '{"loss":%s}' % (1 / seq))
        for seq in range(1, 201)
    ]
    with old._transaction() as cursor:
        cursor.executemany(
            old._sql(
                "INSERT INTO events (exp_id, run, seq, name, ts, data) VALUES (?, ?, ?, ?, ?, ?)"
            ),
            rows,
        )
    old.close()
    monkeypatch.undo()
    storage = open_storage(settings)
    assert storage.schema_version() == latest() == 2
    assert len(storage.log(exp_id).events()) == 200
    _check_tables(storage, exp_id)
    storage.close()


def test_apply_writes_many_experiments_in_one_transaction(
    tmp_path: Path, database: str | None
) -> None:
    storage = open_storage(Settings(data=tmp_path, database=database))
    event = {"name": "e", "id": "1-1", "ts": 1.0, "run": 1, "data": {"x": float("inf")}}
    run = {"run": 1, "status": "done", "start": "2024-01-01T00:00:00+00:00"}
    bundles = [
        {"id": "c0c0c0c0c0d1", "meta": _meta("c0c0c0c0c0d1"), "events": [event]},
        {
            "id": "c0c0c0c0c0d2",
            "meta": {**_meta("c0c0c0c0c0d2"), "name": "cols/y"},
            "events": [event, {**event, "id": "1-2"}],
            "runs": {"1": run},
            "results": {"acc": 0.5},
            "notes": "n",
        },
    ]
    broken = [*bundles, {"id": "c0c0c0c0c0d3", "events": [{**event, "id": "oops"}]}]
    with pytest.raises(UserError, match="<run>-<seq>"):
        storage.apply(broken)
    assert storage.experiments(prefix="cols/") == []  # checked before anything is written
    with pytest.raises(NotFound):  # an experiment the server lacks needs its meta
        storage.apply([{"id": "c0c0c0c0c0d4", "events": [event]}])
    assert storage.experiments(prefix="cols/") == []  # and the failure wrote nothing
    assert storage.apply(bundles) == {"c0c0c0c0c0d1": 1, "c0c0c0c0c0d2": 2}
    assert storage.apply(bundles) == {"c0c0c0c0c0d1": 0, "c0c0c0c0c0d2": 0}
    second = storage.experiment("c0c0c0c0c0d2")
    assert (second["results"], second["notes"]) == ({"acc": 0.5}, "n")
    assert storage.runs("c0c0c0c0c0d2")[1]["status"] == "done"
    assert storage.log("c0c0c0c0c0d1").events()[0]["data"]["x"] == float("inf")
    storage.close()
