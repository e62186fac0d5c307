"""The database schema as numbered migrations, applied in order at start-up.

A database records the highest version applied in ``schema_version``; :func:`pending` gives
what is left to apply. Never edit a released migration: add the next one. The SQL is the
common subset of SQLite and PostgreSQL (``?`` placeholders are translated per backend).
JSON values are stored as text written by ``jsonx`` so that NaN and infinities round-trip.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

__all__ = ["MIGRATIONS", "latest"]

# Events per block that migration 2 writes (one experiment's events are read at a time).
BACKFILL_BLOCK = 100_000


def _blocks_from_events(cursor: Any, sql: Callable[[str], str]) -> None:
    """Migration 2's data step: every experiment's stored events written as blocks."""
    from squeezr.dbx import jsonx
    from squeezr.dbx.server.storage.eventcols import encode_block

    cursor.execute("SELECT id FROM experiments ORDER BY id")
    for (exp_id,) in cursor.fetchall():
        cursor.execute(
            sql("SELECT run, seq, name, ts, data FROM events WHERE exp_id = ? ORDER BY run, seq"),
            (exp_id,),
        )
        rows = cursor.fetchall()
        for start in range(0, len(rows), BACKFILL_BLOCK):
            chunk = rows[start : start + BACKFILL_BLOCK]
            block = [(exp_id, r, s, n, t, jsonx.loads(d), d) for r, s, n, t, d in chunk]
            cursor.execute(
                sql("INSERT INTO event_blocks (exp_id, block, events, body) VALUES (?, ?, ?, ?)"),
                (exp_id, secrets.token_hex(8), len(block), encode_block(block)),
            )


MIGRATIONS: list[tuple[int, list[Any]]] = [
    (
        1,
        [
            """CREATE TABLE experiments (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                created TEXT,
                meta TEXT NOT NULL,
                results TEXT NOT NULL,
                notes TEXT NOT NULL
            )""",
            "CREATE INDEX experiments_name ON experiments (name)",
            """CREATE TABLE runs (
                exp_id TEXT NOT NULL REFERENCES experiments (id),
                run INTEGER NOT NULL,
                record TEXT NOT NULL,
                PRIMARY KEY (exp_id, run)
            )""",
            """CREATE TABLE events (
                exp_id TEXT NOT NULL REFERENCES experiments (id),
                run INTEGER NOT NULL,
                seq BIGINT NOT NULL,
                name TEXT NOT NULL,
                ts DOUBLE PRECISION NOT NULL,
                data TEXT NOT NULL,
                PRIMARY KEY (exp_id, run, seq)
            )""",
            """CREATE TABLE attachments (
                exp_id TEXT NOT NULL REFERENCES experiments (id),
                name TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                size BIGINT NOT NULL,
                run INTEGER,
                added TEXT,
                PRIMARY KEY (exp_id, name)
            )""",
            """CREATE TABLE tokens (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                scope TEXT NOT NULL,
                hash TEXT NOT NULL,
                created TEXT NOT NULL,
                revoked TEXT
            )""",
        ],
    ),
    (
        # Events also stored as columns, one block per batch written (storage/eventcols.py),
        # so that a log query reads arrays instead of parsing every event's JSON.
        2,
        [
            """CREATE TABLE event_blocks (
                exp_id TEXT NOT NULL REFERENCES experiments (id),
                block TEXT NOT NULL,
                events BIGINT NOT NULL,
                body BYTEA NOT NULL,
                PRIMARY KEY (exp_id, block)
            )""",
            _blocks_from_events,
        ],
    ),
]


def latest() -> int:
    """The schema version this code writes."""
    return MIGRATIONS[-1][0]
