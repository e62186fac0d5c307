"""The database schema as numbered migrations, applied in order at start-up.

A database records the highest version applied in ``schema_version``; :func:`pending` gives
what is left to apply. Never edit a released migration: add the next one. The SQL is the
common subset of SQLite and PostgreSQL (``?`` placeholders are translated per backend).
JSON values are stored as text written by ``jsonx`` so that NaN and infinities round-trip.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "latest"]

MIGRATIONS: list[tuple[int, list[str]]] = [
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
]


def latest() -> int:
    """The schema version this code writes."""
    return MIGRATIONS[-1][0]
