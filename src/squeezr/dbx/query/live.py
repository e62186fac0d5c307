"""Live listeners: a query kept up to date while experiments are still writing their logs.

Each poll reads only the bytes appended since the last one (``logs.Tail`` remembers offsets
and holds back a torn last line until its newline arrives), re-evaluates the query over the
events seen so far (queries merge, group and join across the whole log, so an incremental
answer would be wrong for most of them), and hands on the rows that are new or have changed.
Experiments created while following are picked up, because selection is redone each poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from squeezr.dbx.query.engine import Engine, Source
from squeezr.dbx.query.language import Query, parse
from squeezr.dbx.query.logs import Event, Tail
from squeezr.dbx.query.sources import experiment_sources
from squeezr.dbx.query.table import log_files


class _Follower:
    """The growing logs of one experiment, read incrementally."""

    def __init__(self, experiment: Any) -> None:
        self.experiment = experiment
        self.tails: dict[Path, Tail] = {}
        self.events: dict[Path, list[Event]] = {}
        self.memo: dict[tuple[str, bool, int], Any] = {}

    def source(self) -> Source:
        """This experiment's log so far; extraction is reused until new events arrive."""
        for path in log_files(Path(self.experiment.path)):
            tail = self.tails.setdefault(path, Tail(path))
            self.events.setdefault(path, []).extend(tail.read_new())
        log = [event for path in self.tails for event in self.events[path]]
        if self.memo and next(iter(self.memo))[2] != len(log):
            self.memo.clear()
        return Source(experiment=self.experiment, events=list(enumerate(log)), memo=self.memo)


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
    """Yield, once per poll, the result rows that are new or changed since the last poll.

    The first poll yields the whole current result. Polls every ``interval`` seconds until
    ``stop()`` returns true (forever if no ``stop``: end it with Ctrl-C or by closing the
    generator). Experiments are chosen like ``run`` (``prefix``, ``kind``, ``since``, ``where``).
    """
    parsed = parse(query) if isinstance(query, str) else query
    followers: dict[str, _Follower] = {}
    seen: set[tuple[str, ...]] = set()
    while True:
        _, chosen = experiment_sources(repo, None, prefix, kind, since, where)
        sources = []
        for source in chosen:
            key = str(source.experiment.id)
            follower = followers.setdefault(key, _Follower(source.experiment))
            sources.append(follower.source())
        frame = Engine(sources, merge=not raw).run(parsed)
        keys = [tuple(map(repr, row)) for row in frame.itertuples(index=False, name=None)]
        fresh = [key not in seen for key in keys]
        seen.update(keys)
        yield frame[fresh].reset_index(drop=True)
        if stop is not None and stop():
            return
        time.sleep(interval)
