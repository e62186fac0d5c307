"""The background log writer: ``log()`` costs the caller a deque append, nothing more.

The caller stamps the time and appends ``(name, ts, data)`` to a deque; one daemon thread
per run turns batches into JSON lines, appends them to ``log-<N>.jsonl`` with a single
``write`` and ``fsync``s. A batch goes out every ``interval`` seconds, as soon as ``batch``
events wait, or when :meth:`LogWriter.flush` asks (which returns once the events logged
before it are durable). A crash therefore loses at most the last unflushed events, and a
torn last line is the only damage a reader can meet.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from squeezr.dbx import jsonx

__all__ = ["LogWriter"]


class _Flush:
    """A marker in the queue: the writer sets ``done`` once everything before it is durable."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class LogWriter:
    """Appends the events of run ``run`` to ``path`` from a background thread.

    Event ids are ``"<run>-<seq>"`` with ``seq`` counting from 1 in logging order, so they
    are unique within an experiment (each run has its own number) and deterministic.
    """

    def __init__(
        self, path: Path, run: int, *, interval: float = 0.2, batch: int = 1000, first_seq: int = 1
    ) -> None:
        self.path = path
        self.run = run
        self.interval = interval
        self.batch = batch
        self._seq = first_seq
        self._queue: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._warned: set[str] = set()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._thread = threading.Thread(target=self._loop, name=f"dbx-log-{path}", daemon=True)
        self._thread.start()

    def log(self, name: str, data: dict[str, Any]) -> None:
        """Queue one event; returns at once (serialisation happens in the writer thread)."""
        self._queue.append((name, time.time(), data))
        if len(self._queue) >= self.batch:
            self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event logged so far is written and fsync'd; False on timeout."""
        if not self._thread.is_alive():
            self._drain()
            return True
        marker = _Flush()
        self._queue.append(marker)
        self._wake.set()
        return marker.done.wait(timeout)

    def close(self) -> None:
        """Flush, stop the thread and close the file; further calls do nothing."""
        if self._stopping:
            return
        self.flush()
        self._stopping = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._drain()
        os.close(self._fd)

    def _loop(self) -> None:
        while not self._stopping:
            self._wake.wait(self.interval)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        """Write and fsync everything queued now, then release the flush markers it passed."""
        lines: list[str] = []
        markers: list[_Flush] = []
        queue = self._queue
        while queue:
            item = queue.popleft()
            if isinstance(item, _Flush):
                markers.append(item)
                continue
            lines.append(self._line(*item))
        if lines:
            data = "".join(lines).encode("utf-8")
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
        if lines or markers:
            os.fsync(self._fd)
        for marker in markers:
            marker.done.set()

    def _line(self, name: str, ts: float, data: dict[str, Any]) -> str:
        event = {"name": name, "id": f"{self.run}-{self._seq}", "ts": ts, "run": self.run}
        self._seq += 1
        try:
            event["data"] = data
            text = jsonx.encode(event)
        except TypeError as exc:
            if name not in self._warned:
                self._warned.add(name)
                warnings.warn(f"dbx: event {name!r} data stored as text: {exc}", stacklevel=1)
            event["data"] = {key: _lenient(value) for key, value in data.items()}
            text = jsonx.encode(event)
        return text + "\n"


def _lenient(value: Any) -> Any:
    try:
        return jsonx.to_jsonable(value)
    except TypeError:
        return repr(value)
