"""What a server stores and how: the storage interface and its SQL, shared by the backends.

Experiments, runs, results, notes, events, attachment records and tokens live in one
database; attachment bytes live in :class:`~squeezr.dbx.server.storage.blobs.Blobs`. The
backends (``sqlite.py``, ``postgres.py``) only open connections; the SQL here is the subset
both speak (``INSERT ... ON CONFLICT``), written with ``?`` placeholders.

Every call runs in one transaction on the storage's single connection, under one lock, so
writes are serialised through one writer (as ``logger.py`` serialises a run's log) and a
reader never sees half of a write. Idempotence is what makes streaming and sync safe to
retry: an experiment is put once by id, a run record is replaced, and an event is inserted
only if its ``(experiment, run, seq)`` is new, so sending the same batch twice stores it once.
"""

from __future__ import annotations

import contextlib
import math
import re
import secrets
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from squeezr.dbx import jsonx, records
from squeezr.dbx.errors import Ambiguous, NotFound, UserError
from squeezr.dbx.records import ID_RE
from squeezr.dbx.server.storage.eventcols import Log, Row, encode_block, read_log
from squeezr.dbx.server.storage.migrations import MIGRATIONS
from squeezr.dbx.store import validate_kind, validate_name

__all__ = ["Storage", "check_id"]

_EVENT_ID = re.compile(r"^(\d+)-(\d+)$")
_EXP_COLUMNS = "id, name, kind, created, meta, results, notes"
# An experiment whose log has more blocks than this is rewritten as one block when a query
# reads it (a slow stream sends many small batches; reading thousands of blocks is slow).
COMPACT_BLOCKS = 32


def check_id(exp_id: str) -> str:
    """``exp_id`` if it is an experiment id (12 hex digits), else UserError."""
    if not isinstance(exp_id, str) or not ID_RE.match(exp_id):
        raise UserError(f"{exp_id!r} is not an experiment id (12 lowercase hex digits)")
    return exp_id


class Storage:
    """A server's database. Subclasses implement :meth:`_connect` and set ``placeholder``."""

    placeholder = "?"
    url = ""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generations: dict[str, int] = {}  # events added, per experiment (see generation)
        self._conn = self._connect()
        self.migrate()

    # --- plumbing -------------------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _lost(self) -> bool:
        """Whether the connection is gone (only a networked database loses it)."""
        return False

    def _sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction, holding the storage's lock; committed on success,
        rolled back on any error."""
        with self._lock:
            if self._lost():  # the database restarted or dropped us: connect again
                self._conn = self._connect()
            cursor = self._conn.cursor()
            try:
                yield cursor
            except BaseException:
                self._conn.rollback()
                raise
            else:
                self._conn.commit()
            finally:
                cursor.close()

    def _query(self, text: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._transaction() as cursor:
            cursor.execute(self._sql(text), tuple(params))
            return list(cursor.fetchall())

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def migrate(self) -> int:
        """Apply the migrations this database lacks, each in its own transaction; returns the
        schema version. A database from a newer dbx is refused."""
        with self._transaction() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            cursor.execute("SELECT MAX(version) FROM schema_version")
            current = cursor.fetchone()[0] or 0
        if current > MIGRATIONS[-1][0]:
            raise UserError(
                f"the database {self.url} has schema version {current}, newer than this dbx "
                f"knows ({MIGRATIONS[-1][0]}); upgrade squeezr"
            )
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            with self._transaction() as cursor:
                for statement in statements:
                    if callable(statement):  # a data migration, written in Python
                        statement(cursor, self._sql)
                    else:
                        cursor.execute(statement)
                cursor.execute(self._sql("INSERT INTO schema_version VALUES (?)"), (version,))
            current = version
        return current

    def schema_version(self) -> int:
        return self._query("SELECT MAX(version) FROM schema_version")[0][0] or 0

    # --- experiments ----------------------------------------------------------------------
    def put_experiment(self, meta: dict[str, Any]) -> bool:
        """Store a new experiment from its ``meta.json`` content; True if it was new. The same
        id again with the same name and kind is a no-op (meta is immutable); with another
        name or kind it is a UserError (status 409)."""
        text = _check_meta(meta)
        with self._transaction() as cursor:
            return self._put_experiment(cursor, meta, text)

    def _put_experiment(self, cursor: Any, meta: dict[str, Any], text: str) -> bool:
        exp_id = meta["id"]
        cursor.execute(self._sql("SELECT name, kind FROM experiments WHERE id = ?"), (exp_id,))
        row = cursor.fetchone()
        if row is not None:
            if tuple(row) != (meta["name"], meta["kind"]):
                raise _Conflict(
                    f"experiment {exp_id} already exists as {row[0]!r} ({row[1]}); "
                    "an experiment's name and kind never change"
                )
            return False
        cursor.execute(
            self._sql(f"INSERT INTO experiments ({_EXP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"),
            (exp_id, meta["name"], meta["kind"], meta.get("created"), text, "{}", ""),
        )
        return True

    def _require(self, cursor: Any, exp_id: str) -> None:
        cursor.execute(self._sql("SELECT 1 FROM experiments WHERE id = ?"), (exp_id,))
        if cursor.fetchone() is None:
            raise NotFound(f"no experiment {exp_id} on this server")

    def experiments(
        self, prefix: str | None = None, kind: str | None = None, ids: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Experiment records ``{"meta", "results", "notes"}`` ordered by name then id, those
        whose name starts with ``prefix``, of ``kind``, or among ``ids``."""
        conditions, params = [], []
        if prefix:
            conditions.append("substr(name, 1, ?) = ?")
            params += [len(prefix), prefix]
        if kind:
            conditions.append("kind = ?")
            params.append(kind)
        if ids is not None:
            ids = [check_id(i) for i in ids]
            if not ids:
                return []
            conditions.append(f"id IN ({', '.join('?' * len(ids))})")
            params += ids
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._query(
            f"SELECT {_EXP_COLUMNS} FROM experiments{where} ORDER BY name, id", params
        )
        return [_experiment(row) for row in rows]

    def experiment(self, exp_id: str) -> dict[str, Any]:
        """One experiment record by id; NotFound if absent."""
        found = self.experiments(ids=[exp_id])
        if not found:
            raise NotFound(f"no experiment {exp_id} on this server")
        return found[0]

    def resolve(self, ref: str) -> str:
        """The id of the one experiment ``ref`` names (id, unique id prefix, or name), as
        ``Repository.get`` resolves it: NotFound or Ambiguous otherwise."""
        if not isinstance(ref, str) or not ref:
            raise UserError("give an experiment id, id prefix or name")
        rows = self._query(
            "SELECT id, name FROM experiments WHERE id = ? OR name = ? OR substr(id, 1, ?) = ?",
            (ref, ref, len(ref), ref),
        )
        if any(row[0] == ref for row in rows):
            return ref
        by_name = sorted(row[0] for row in rows if row[1] == ref)
        by_prefix = sorted(row[0] for row in rows if row[1] != ref)
        for found in (by_name, by_prefix):
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise Ambiguous(
                    f"{ref!r} matches {len(found)} experiments ({', '.join(found)}); give an id"
                )
        raise NotFound(f"no experiment {ref!r} on this server; list them with `dbx ls`")

    def set_results(self, exp_id: str, results: dict[str, Any]) -> None:
        """Replace the results of ``exp_id`` (a JSON object with dot-free keys)."""
        text = _check_results(results)
        with self._transaction() as cursor:
            self._update(cursor, exp_id, "results", text)

    def set_notes(self, exp_id: str, notes: str) -> None:
        _check_notes(notes)
        with self._transaction() as cursor:
            self._update(cursor, exp_id, "notes", notes)

    def _update(self, cursor: Any, exp_id: str, column: str, value: str) -> None:
        cursor.execute(
            self._sql(f"UPDATE experiments SET {column} = ? WHERE id = ?"), (value, exp_id)
        )
        if cursor.rowcount == 0:
            raise NotFound(f"no experiment {exp_id} on this server")

    # --- runs -----------------------------------------------------------------------------
    def put_run(self, exp_id: str, number: int, record: dict[str, Any]) -> None:
        """Store (or replace: a run record is rewritten when the run ends) run ``number``."""
        text = _check_run(number, record)
        with self._transaction() as cursor:
            self._require(cursor, exp_id)
            self._put_run(cursor, exp_id, number, text)

    def _put_run(self, cursor: Any, exp_id: str, number: int, text: str) -> None:
        cursor.execute(
            self._sql(
                "INSERT INTO runs (exp_id, run, record) VALUES (?, ?, ?) "
                "ON CONFLICT (exp_id, run) DO UPDATE SET record = excluded.record"
            ),
            (exp_id, number, text),
        )

    def runs(self, exp_id: str) -> dict[int, dict[str, Any]]:
        rows = self._query("SELECT run, record FROM runs WHERE exp_id = ? ORDER BY run", (exp_id,))
        return {row[0]: jsonx.loads(row[1]) for row in rows}

    # --- events ---------------------------------------------------------------------------
    def add_events(self, exp_id: str, events: list[dict[str, Any]]) -> int:
        """Insert the events not stored yet (by id); returns how many were new."""
        rows = event_rows(exp_id, events)
        if not rows:
            return 0
        with self._transaction() as cursor:
            self._require(cursor, exp_id)
            return self._add_events(cursor, exp_id, rows)

    def _add_events(self, cursor: Any, exp_id: str, rows: list[Row]) -> int:
        """Insert the rows whose ``(run, seq)`` is new, and a block of them (eventcols)."""
        unique: dict[tuple[int, int], Row] = {}
        for row in rows:
            unique.setdefault((row[1], row[2]), row)
        runs: dict[int, list[int]] = {}
        for run, seq in unique:
            runs.setdefault(run, []).append(seq)
        for run, seqs in runs.items():  # what is stored already: one index range per run
            cursor.execute(
                self._sql(
                    "SELECT seq FROM events WHERE exp_id = ? AND run = ? AND seq BETWEEN ? AND ?"
                ),
                (exp_id, run, min(seqs), max(seqs)),
            )
            for (seq,) in cursor.fetchall():
                unique.pop((run, seq), None)
        new = list(unique.values())
        if not new:
            return 0
        cursor.executemany(
            self._sql(
                "INSERT INTO events (exp_id, run, seq, name, ts, data) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (exp_id, run, seq) DO NOTHING"
            ),
            [(exp_id, run, seq, name, ts, text) for _, run, seq, name, ts, _, text in new],
        )
        cursor.execute(
            self._sql("INSERT INTO event_blocks (exp_id, block, events, body) VALUES (?, ?, ?, ?)"),
            (exp_id, secrets.token_hex(8), len(new), encode_block(new)),
        )
        self._generations[exp_id] = self._generations.get(exp_id, 0) + 1
        return len(new)

    def log(self, exp_id: str) -> Log:
        """The experiment's events as columns, read from its blocks (see eventcols); more
        than COMPACT_BLOCKS blocks are rewritten as one."""
        rows = self._query("SELECT block, body FROM event_blocks WHERE exp_id = ?", (exp_id,))
        log = read_log([bytes(body) for _, body in rows])
        if len(rows) > COMPACT_BLOCKS:
            merged = [
                (exp_id, e["run"], int(e["id"].split("-")[1]), e["name"], e["ts"], e["data"], "")
                for e in log.events()
            ]
            with self._transaction() as cursor:
                cursor.executemany(
                    self._sql("DELETE FROM event_blocks WHERE exp_id = ? AND block = ?"),
                    [(exp_id, block) for block, _ in rows],
                )
                cursor.execute(
                    self._sql(
                        "INSERT INTO event_blocks (exp_id, block, events, body) VALUES (?, ?, ?, ?)"
                    ),
                    (exp_id, secrets.token_hex(8), len(merged), encode_block(merged)),
                )
        return log

    def generation(self, exp_id: str) -> int:
        """A number that changes whenever events are added to ``exp_id`` through this
        storage object (what the server's query cache checks)."""
        return self._generations.get(exp_id, 0)

    def events(
        self,
        exp_ids: Iterable[str],
        run: int | None = None,
        after: int = 0,
    ) -> dict[str, list[dict[str, Any]]]:
        """The events of each experiment in log order ``(ts, run, seq)``; with ``run``, only
        that run's events with ``seq > after``, in ``seq`` order (what a sync reads)."""
        ids = [check_id(i) for i in exp_ids]
        found: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        if not ids:
            return found
        sql = "SELECT exp_id, run, seq, name, ts, data FROM events WHERE exp_id IN "
        sql += f"({', '.join('?' * len(ids))})"
        params: list[Any] = list(ids)
        if run is not None:
            sql += " AND run = ? AND seq > ? ORDER BY exp_id, seq"
            params += [run, after]
        else:
            sql += " ORDER BY exp_id, ts, run, seq"
        rows = self._query(sql, params)
        # one parse for all the data objects: far cheaper than one json call per event
        datas = jsonx.loads_bulk(("[" + ",".join(row[5] for row in rows) + "]").encode())
        for (exp_id, number, seq, name, ts, _), data in zip(rows, datas, strict=True):
            found[exp_id].append(
                {"name": name, "id": f"{number}-{seq}", "ts": ts, "run": number, "data": data}
            )
        return found

    def runs_json(self, logs: list[tuple[str, int]]) -> bytes:
        """The events of many runs as the JSON ``{id: {run: [events in seq order]}}`` (what a
        sync reads), in one statement, written from the stored JSON text of each event's
        data without parsing it: the cost of a sync from a server is then the database's."""
        wanted: dict[str, set[int]] = {}
        for exp_id, run in logs:
            wanted.setdefault(check_id(exp_id), set()).add(run)
        found: dict[str, dict[int, list[str]]] = {
            i: {r: [] for r in runs} for i, runs in wanted.items()
        }
        if wanted:
            rows = self._query(
                "SELECT exp_id, run, seq, name, ts, data FROM events WHERE exp_id IN "
                f"({', '.join('?' * len(wanted))}) ORDER BY exp_id, run, seq",
                list(wanted),
            )
            for exp_id, run, seq, name, ts, data in rows:
                lines = found[exp_id].get(run)
                if lines is not None:
                    ts_text = repr(ts) if math.isfinite(ts) else jsonx.encode(ts)
                    lines.append(
                        f'{{"name":{orjson.dumps(name).decode()},"id":"{run}-{seq}",'
                        f'"ts":{ts_text},"run":{run},"data":{data}}}'
                    )
        text = ",".join(
            f'"{exp_id}":{{'
            + ",".join(f'"{run}":[{",".join(lines)}]' for run, lines in runs.items())
            + "}"
            for exp_id, runs in found.items()
        )
        return ("{" + text + "}").encode()

    def describe(self, exp_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Each experiment's record with its ``runs``, ``logs`` (per run: events, highest
        seq) and ``attachments`` — what a sync compares — in four statements per 500
        experiments rather than four per experiment. Ids not stored are left out."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(exp_ids), 500):
            ids = [check_id(i) for i in exp_ids[start : start + 500]]
            marks = f"({', '.join('?' * len(ids))})"
            for record in self.experiments(ids=ids):
                record.update(runs={}, logs={}, attachments={})
                found[record["meta"]["id"]] = record
            rows = self._query(f"SELECT exp_id, run, record FROM runs WHERE exp_id IN {marks}", ids)
            for exp_id, run, record in sorted(rows):
                found[exp_id]["runs"][run] = jsonx.loads(record)
            rows = self._query(
                "SELECT exp_id, run, COUNT(*), MAX(seq) FROM events "
                f"WHERE exp_id IN {marks} GROUP BY exp_id, run",
                ids,
            )
            for exp_id, run, count, highest in rows:
                found[exp_id]["logs"][run] = (count, highest)
            rows = self._query(
                "SELECT exp_id, name, sha256, size, run, added FROM attachments "
                f"WHERE exp_id IN {marks} ORDER BY exp_id, name",
                ids,
            )
            for exp_id, name, sha, size, run, added in rows:
                found[exp_id]["attachments"][name] = {
                    "path": f"files/{name}",
                    "size": size,
                    "sha256": sha,
                    "run": run,
                    "added": added,
                }
        return {i: found[i] for i in exp_ids if i in found}

    def log_sizes(self, exp_id: str) -> dict[int, tuple[int, int]]:
        """Per run: ``(number of events, highest seq)``."""
        rows = self._query(
            "SELECT run, COUNT(*), MAX(seq) FROM events WHERE exp_id = ? GROUP BY run", (exp_id,)
        )
        return {row[0]: (row[1], row[2]) for row in rows}

    # --- attachments ----------------------------------------------------------------------
    def put_attachment(self, exp_id: str, name: str, info: dict[str, Any]) -> None:
        """Record attachment ``name`` of ``exp_id`` as the blob ``info["sha256"]`` (the caller
        has stored the bytes); replaces an attachment of the same name."""
        with self._transaction() as cursor:
            self._require(cursor, exp_id)
            self._put_attachment(cursor, exp_id, name, info)

    def _put_attachment(self, cursor: Any, exp_id: str, name: str, info: dict[str, Any]) -> None:
        cursor.execute(
            self._sql(
                "INSERT INTO attachments (exp_id, name, sha256, size, run, added) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (exp_id, name) DO UPDATE SET "
                "sha256 = excluded.sha256, size = excluded.size, run = excluded.run, "
                "added = excluded.added"
            ),
            (exp_id, name, info["sha256"], info["size"], info.get("run"), info.get("added")),
        )

    def attachments(self, exp_id: str) -> dict[str, dict[str, Any]]:
        """The attachment list as ``attachments.json`` holds it locally."""
        rows = self._query(
            "SELECT name, sha256, size, run, added FROM attachments WHERE exp_id = ? ORDER BY name",
            (exp_id,),
        )
        return {
            name: {"path": f"files/{name}", "size": size, "sha256": sha, "run": run, "added": added}
            for name, sha, size, run, added in rows
        }

    # --- tokens ---------------------------------------------------------------------------
    def add_token(self, token_id: str, name: str, scope: str, digest: str, created: str) -> None:
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "INSERT INTO tokens (id, name, scope, hash, created) VALUES (?, ?, ?, ?, ?)"
                ),
                (token_id, name, scope, digest, created),
            )

    def token(self, token_id: str) -> dict[str, Any] | None:
        rows = self._query(
            "SELECT id, name, scope, hash, created, revoked FROM tokens WHERE id = ?", (token_id,)
        )
        return _token(rows[0]) if rows else None

    def tokens(self) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT id, name, scope, hash, created, revoked FROM tokens ORDER BY created"
        )
        return [_token(row) for row in rows]

    def revoke_token(self, token_id: str, when: str) -> None:
        with self._transaction() as cursor:
            cursor.execute(
                self._sql("UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL"),
                (when, token_id),
            )
            if cursor.rowcount == 0 and self._token_missing(cursor, token_id):
                raise NotFound(f"no token {token_id}; list them with `dbx token list`")

    def _token_missing(self, cursor: Any, token_id: str) -> bool:
        cursor.execute(self._sql("SELECT 1 FROM tokens WHERE id = ?"), (token_id,))
        return cursor.fetchone() is None

    # --- many experiments at once (sync) ---------------------------------------------------
    def apply(self, bundles: list[dict[str, Any]]) -> dict[str, int]:
        """Write several experiments' changes in one transaction (what a sync sends): each
        bundle has ``id`` and any of ``meta`` (created if new), ``attachments`` (name ->
        info; the blobs are stored already), ``events``, ``runs`` (number -> record),
        ``results`` and ``notes``, each written as the single-item calls write it. All is
        checked before anything is written; returns the number of new events per id."""
        if not isinstance(bundles, list) or not all(isinstance(b, dict) for b in bundles):
            raise UserError("the request body must be a JSON list of experiment bundles")
        checked = [_check_bundle(bundle) for bundle in bundles]
        added: dict[str, int] = {}
        with self._transaction() as cursor:
            for exp_id, meta, attachments, rows, runs, results, notes in checked:
                if meta is not None:
                    self._put_experiment(cursor, meta[0], meta[1])
                else:
                    self._require(cursor, exp_id)
                for name, info in attachments:
                    self._put_attachment(cursor, exp_id, name, info)
                added[exp_id] = self._add_events(cursor, exp_id, rows) if rows else 0
                for number, text in runs:
                    self._put_run(cursor, exp_id, number, text)
                if results is not None:
                    self._update(cursor, exp_id, "results", results)
                if notes is not None:
                    self._update(cursor, exp_id, "notes", notes)
        return added


class _Conflict(UserError):
    status = 409


def encode_data(value: Any, what: str) -> str:
    """``value`` as stored JSON text; a value nested too deep is a UserError naming ``what``."""
    try:
        return jsonx.encode(value)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{what} cannot be stored: {exc}") from None


def _check_meta(meta: Any) -> str:
    if not isinstance(meta, dict):
        raise UserError("an experiment's meta must be a JSON object")
    records.require(records.meta_problems(meta), "meta", "experiment metadata")
    check_id(meta["id"])
    validate_name(meta["name"])
    validate_kind(meta["kind"])
    return encode_data(meta, "meta")


def _check_results(results: Any) -> str:
    if not isinstance(results, dict):
        raise UserError("results must be a JSON object")
    from squeezr.dbx.views import check_keys

    check_keys(results, "result")
    return encode_data(results, "results")


def _check_notes(notes: Any) -> None:
    if not isinstance(notes, str):
        raise UserError("notes must be text")


def _check_run(number: Any, record: Any) -> str:
    if not isinstance(record, dict):
        raise UserError("a run record must be a JSON object")
    records.require(records.run_problems(record), f"run {number}", "run record")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise UserError(f"run number must be a positive integer, not {number!r}")
    return encode_data({**record, "run": number}, f"run {number}")


def _event_data(data: dict[str, Any], event_id: str) -> str:
    """An event's data as stored JSON text, by orjson (several times faster than json) where
    that writes the same values: not for NaN/±Infinity (orjson would write ``null``; any
    ``null`` sends the event to ``jsonx``, which keeps them), integers beyond 64 bits
    (orjson refuses them) or nesting deeper than jsonx allows."""
    try:
        raw = orjson.dumps(data)
    except TypeError:
        return encode_data(data, f"event {event_id}")
    deep = len(raw) > 2 * jsonx.MAX_DEPTH and raw.count(b"[") + raw.count(b"{") > jsonx.MAX_DEPTH
    if b"null" in raw or deep:  # (nesting deeper than MAX_DEPTH needs that many brackets)
        return encode_data(data, f"event {event_id}")
    return raw.decode()


def event_rows(exp_id: str, events: list[dict[str, Any]]) -> list[Row]:
    """Checked events as rows to insert; a UserError names the first bad one."""
    rows: list[Row] = []
    for event in events:
        problem = records.event_problem(event)
        match = _EVENT_ID.match(event.get("id", "")) if problem is None else None
        if match is None or int(match.group(1)) != event["run"]:
            raise UserError(
                f"not a dbx event: {problem or 'its id must be <run>-<seq>'}: "
                f"{jsonx.encode(event)[:200]}"
            )
        data = event["data"]
        rows.append(
            (
                exp_id,
                event["run"],
                int(match.group(2)),
                event["name"],
                float(event["ts"]),
                data,
                _event_data(data, event["id"]),
            )
        )
    return rows


def _check_bundle(bundle: dict[str, Any]) -> tuple[Any, ...]:
    """One bundle of :meth:`Storage.apply`, checked and encoded."""
    exp_id = check_id(bundle.get("id"))
    meta = bundle.get("meta")
    if meta is not None:
        text = _check_meta(meta)
        if meta["id"] != exp_id:
            raise UserError(f"meta id {meta['id']!r} differs from the bundle's {exp_id}")
        meta = (meta, text)
    attachments = []
    for name, info in (bundle.get("attachments") or {}).items():
        from squeezr.dbx.store import _attachment_name

        if not isinstance(info, dict) or not {"sha256", "size"} <= set(info):
            raise UserError(f"attachment {name!r} of {exp_id}: give sha256 and size")
        attachments.append((_attachment_name(name), info))
    events = bundle.get("events") or []
    if not isinstance(events, list):
        raise UserError(f"events of {exp_id} must be a JSON list")
    runs = [
        (int(n) if isinstance(n, str) and n.isdigit() else n, r)
        for n, r in (bundle.get("runs") or {}).items()
    ]
    runs = [(n, _check_run(n, r)) for n, r in runs]
    results = bundle.get("results")
    results = None if results is None else _check_results(results)
    notes = bundle.get("notes")
    if notes is not None:
        _check_notes(notes)
    return exp_id, meta, attachments, event_rows(exp_id, events), runs, results, notes


def _experiment(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "meta": jsonx.loads(row[4]),
        "results": jsonx.loads(row[5]),
        "notes": row[6],
    }


def _token(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = ("id", "name", "scope", "hash", "created", "revoked")
    return dict(zip(keys, row, strict=True))
