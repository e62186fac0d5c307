"""Live listeners: a query kept up to date while experiments are still writing their logs.

Each poll reads only the bytes appended since the last one (``logs.Tail`` remembers offsets
and holds back a torn last line until its newline arrives), re-evaluates the query over the
events seen so far (queries merge, group and join across the whole log, so an incremental
answer would be wrong for most of them), and hands on the rows that are new or have changed.
Only events that one of the query's name patterns matches are kept, so memory grows with what
the query reads, not with the whole log. Experiments created while following are picked up,
because selection is redone each poll: it reads every experiment's ``meta.json`` (about
10 ms per thousand experiments once the OS caches them), which is noise at the default
one-second interval but would dominate a much shorter one on a large repository.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from squeezr.dbx.errors import UserError
from squeezr.dbx.query.engine import Engine, Source
from squeezr.dbx.query.language import Query, parse
from squeezr.dbx.query.logs import Event, Tail
from squeezr.dbx.query.pattern import Pattern
from squeezr.dbx.query.sources import experiment_sources
from squeezr.dbx.query.table import HIDDEN, Table
from squeezr.dbx.store import log_paths


class _Follower:
    """The growing logs of one experiment, read incrementally."""

    def __init__(self, experiment: Any, patterns: list[Pattern]) -> None:
        self.experiment = experiment
        self.patterns = patterns
        self.tails: dict[Path, Tail] = {}
        self.kept: dict[Path, list[tuple[int, Event]]] = {}  # (line in its file, event)
        self.tables: dict[tuple[str, str], Table] = {}  # extraction memo, valid until new events

    def source(self) -> Source:
        """This experiment's log so far (positions as a finished-log read would give them)."""
        try:
            paths = log_paths(self.experiment.path)
        except FileNotFoundError:  # deleted since it was selected: it leaves the next selection
            paths = []
        for path in paths:
            tail = self.tails.setdefault(path, Tail(path))
            new = [(line, event) for line, event in tail.read_new() if self._wanted(event)]
            if new:
                self.kept.setdefault(path, []).extend(new)
                self.tables.clear()
        log: list[tuple[int, Event]] = []
        offset = 0
        for path, tail in self.tails.items():
            log.extend((offset + line, event) for line, event in self.kept.get(path, []))
            offset += tail.lines
        return Source(experiment=self.experiment, events=log, tables=self.tables, timed=True)

    def _wanted(self, event: Event) -> bool:
        return any(pattern.match(event["name"]) is not None for pattern in self.patterns)


def follow(
    query: str | Query,
    repo: Any = None,
    *,
    prefix: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    where: str | None = None,
    raw: bool = False,
    interval: float = 1.0,
    stop: Callable[[], bool] | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield, once per poll, the result rows that are new or changed since the previous poll.

    The first poll yields the whole current result. Event rows are told apart by experiment
    and log position, so a merged event yields again when its data changes; rows after
    ``group`` by their values. Every batch with rows has the same columns: those of the first
    one (``exp.id``, ``exp.name`` first unless the query selects); a column appearing later
    is left out with a warning (select it to see it). A field not logged yet is an empty
    column, not an error. Polls every ``interval`` seconds until ``stop()`` returns true
    (forever if no ``stop``: end it with Ctrl-C or by closing the generator). Experiments are
    chosen like ``run`` (``prefix``, ``kind``, ``since``, ``where``).
    """
    if isinstance(repo, str) and repo.startswith(("http://", "https://")):  # server-side
        from squeezr.dbx.remote.repository import follow as remote_follow

        options = {"prefix": prefix, "kind": kind, "since": since, "where": where, "raw": raw}
        yield from remote_follow(repo, query, interval=interval, stop=stop, **options)
        return
    if not (math.isfinite(interval) and interval >= 0):
        raise UserError(
            f"the poll interval must be a finite number of seconds, 0 or more, not {interval}"
        )
    parsed = parse(query) if isinstance(query, str) else query
    patterns = parsed.patterns()
    followers: dict[str, _Follower] = {}
    previous: set[tuple[Any, ...]] = set()  # keys of the last poll's rows: bounded by the result
    columns: list[str] | None = None
    left_out: set[str] = set()
    while True:
        _, chosen = experiment_sources(repo, None, prefix, kind, since, where)
        ids = [str(source.experiment.id) for source in chosen]
        followers = {  # an experiment that left the selection is forgotten
            key: followers.get(key) or _Follower(source.experiment, patterns)
            for key, source in zip(ids, chosen, strict=True)
        }
        sources = [followers[key].source() for key in ids]
        engine = Engine(sources, merge=not raw, strict=False, experiment_columns=True)
        frame = engine.run(parsed, identity=True)
        visible = [column for column in frame.columns if column not in HIDDEN]
        if columns is None and len(frame):
            columns = visible
        elif columns is not None:
            new = [c for c in visible if c not in columns and c not in left_out]
            if new:
                left_out.update(new)
                warnings.warn(
                    f"column(s) {', '.join(new)} appeared after the first rows and are not "
                    "shown (a live listener keeps its columns); select them to see them",
                    stacklevel=2,
                )
        shown = frame[visible].reindex(columns=columns or visible)
        keys = _row_keys(frame, shown, ids)
        fresh = [key not in previous for key in keys]
        previous = set(keys)
        yield shown[fresh].reset_index(drop=True)
        if stop is not None and stop():
            return
        time.sleep(interval)


def _row_keys(frame: pd.DataFrame, shown: pd.DataFrame, ids: list[str]) -> list[tuple[Any, ...]]:
    """One key per row: what it shows, plus, for event rows, its experiment and position."""
    values = [tuple(map(repr, row)) for row in shown.itertuples(index=False, name=None)]
    if "_pos" not in frame.columns:
        return values
    places = zip(frame["_exp"].tolist(), frame["_pos"].tolist(), strict=True)
    return [(ids[exp], pos, *row) for (exp, pos), row in zip(places, values, strict=True)]
