"""The background log writer: ``log()`` costs the caller a deque append, nothing more.

The caller stamps the time and appends ``(name, ts, data)`` to a deque; one daemon thread
per run turns batches into JSON lines, appends them to ``log-<N>.jsonl`` with ``write`` and
``fsync``s. A batch goes out every ``interval`` seconds, as soon as ``batch`` events wait, or
when :meth:`LogWriter.flush` asks (which returns once the events logged before it are
durable). A crash therefore loses at most the last unflushed events, and a torn last line is
the only damage a reader can meet.

Writing can fail (disk full, a quota, an NFS server gone). The writer then keeps the encoded
lines that did not reach the file, in order and with their ids, and tries again every
``interval``; the file never gets a duplicate or a gap, because a partial ``write`` resumes
at the first byte that did not land. A :meth:`~LogWriter.flush` or :meth:`~LogWriter.close`
that cannot make the events durable raises a one-line UserError naming the file and the OS
error instead of waiting forever, so neither a training loop nor the exit of the process can
hang on a full disk.

A writer belongs to the process that created it. A forked child (``os.fork``, a ``fork``
multiprocessing pool, DataLoader workers) inherits the writer's queue and file but not its
thread; there the writer never writes: :meth:`~LogWriter.log` raises a UserError (a child
that logged into its parent's run would duplicate its event ids, and silently dropping the
events would lose them), and flush and close leave the file to the parent. A child that has
events to record gives itself its own run with ``dbx.resume``.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

from squeezr.dbx import jsonx
from squeezr.dbx.errors import UserError

__all__ = ["LogWriter"]


class _Flush:
    """A marker in the queue: the writer sets ``done`` once everything before it is durable,
    or once it has tried and failed (then ``error`` says why)."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class LogWriter:
    """Appends the events of run ``run`` to ``path`` from a background thread.

    Event ids are ``"<run>-<seq>"`` with ``seq`` counting from 1 in logging order, so they
    are unique within an experiment (each run has its own number) and deterministic.
    """

    def __init__(self, path: Path, run: int, *, interval: float = 0.2, batch: int = 1000) -> None:
        self.path = path
        self.run = run
        self.interval = interval
        self.batch = batch
        self._seq = 1
        self._queue: collections.deque[Any] = collections.deque()
        self._pending = b""  # encoded events that have not reached the file yet
        self._error: BaseException | None = None  # the last write failure, until one succeeds
        self._wake = threading.Event()
        self._drain_lock = threading.Lock()  # the thread and a synchronous drain never overlap
        self._stopping = False
        self._closed = False
        self._warned: set[str] = set()
        self.pid = os.getpid()  # the process that owns the log
        self._forked = False  # set in a forked child (see _disown_in_child)
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot open log {path}: {exc.strerror or exc}") from None
        _writers.add(self)
        self._thread = threading.Thread(target=self._loop, name=f"dbx-log-{path}", daemon=True)
        self._thread.start()

    @property
    def owned(self) -> bool:
        """False in a forked child: the log, and the run it belongs to, are the parent's."""
        return not self._forked

    def log(self, name: str, data: dict[str, Any]) -> None:
        """Queue one event; returns at once (serialisation happens in the writer thread).
        A UserError in a forked child: the log is its parent's."""
        if self._forked:
            raise UserError(
                f"cannot log to {self.path} from process {os.getpid()}: its run belongs to "
                f"process {self.pid}, which forked this one; log from that process, or give "
                "this one its own run with dbx.resume(...)"
            )
        self._queue.append((name, time.time(), data))
        if len(self._queue) >= self.batch:
            self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event logged so far is written and fsync'd; False on timeout.

        Raises a UserError naming the file and the OS error when the events cannot be
        written; they stay queued and the writer keeps trying. In a forked child there is
        nothing of its own to write (see :meth:`log`).
        """
        if self._forked:
            return True
        if self._closed:
            self._raise_if_failed()
            return True
        if not self._thread.is_alive():
            self._drain()
            self._raise_if_failed()
            return True
        marker = _Flush()
        self._queue.append(marker)
        self._wake.set()
        if not marker.done.wait(timeout):
            return False
        if marker.error is not None:
            raise self._failure(marker.error)
        return True

    def close(self) -> None:
        """Flush, stop the thread and close the file; further calls do nothing.

        If the events cannot be written even now, the file is closed anyway and a UserError
        says how much was lost: a run must be able to end on a full disk. In a forked child
        only the child's copy of the file descriptor is closed; the events queued before the
        fork are the parent's to write.
        """
        if self._closed:
            return
        if self._forked:
            self._closed = True
            self._queue.clear()
            os.close(self._fd)
            return
        with contextlib.suppress(UserError):  # one more try below, once the thread has stopped
            self.flush()
        self._stopping = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._closed = True
        try:
            self._drain()
        finally:
            os.close(self._fd)
        if self._error is not None:
            lost = self._pending.count(b"\n")
            raise UserError(
                f"cannot write log {self.path}: {_reason(self._error)}; "
                f"the last {lost:,} events were not written"
            )

    def _loop(self) -> None:
        while not self._stopping:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self._drain()
            except BaseException as exc:  # a bug, not I/O: never leave a flush waiting
                self._error = exc
                self._release(exc)
                return

    def _drain(self) -> None:
        """Encode what is queued, write and fsync it, then release the flush markers it
        passed: with success, or with the error when the file refused the bytes."""
        with self._drain_lock:
            markers: list[_Flush] = []
            chunks = [self._pending]
            queue = self._queue
            while queue:
                item = queue.popleft()
                if isinstance(item, _Flush):
                    markers.append(item)
                else:
                    chunks.append(self._line(*item).encode("utf-8"))
            self._pending = b"".join(chunks)
            error = self._write() if (self._pending or markers) else None
            for marker in markers:
                marker.error = error
                marker.done.set()

    def _write(self) -> OSError | None:
        """Append and fsync the pending bytes; keep what did not land. The error, or None."""
        try:
            while self._pending:
                written = os.write(self._fd, self._pending)
                self._pending = self._pending[written:]
            os.fsync(self._fd)
        except OSError as exc:
            if self._error is None:
                print(
                    f"dbx: warning: cannot write log {self.path}: {_reason(exc)}; "
                    f"keeping the events in memory and retrying every {self.interval:g} s",
                    file=sys.stderr,
                )
            self._error = exc
            return exc
        self._error = None
        return None

    def _release(self, error: BaseException) -> None:
        """Wake every flush waiting in the queue with ``error`` (the thread is ending)."""
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, _Flush):
                item.error = error
                item.done.set()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._failure(self._error)

    def _failure(self, error: BaseException) -> UserError:
        return UserError(
            f"cannot write log {self.path}: {_reason(error)}; the events are kept in memory "
            "and retried; free space or fix the file system, then flush again"
        )

    def _line(self, name: str, ts: float, data: dict[str, Any]) -> str:
        event = {"name": name, "id": f"{self.run}-{self._seq}", "ts": ts, "run": self.run}
        self._seq += 1
        try:
            event["data"] = data
            text = jsonx.encode(event)
        except Exception as exc:  # a type JSON lacks, a cycle (ValueError, RecursionError)
            if name not in self._warned:
                self._warned.add(name)
                warnings.warn(f"dbx: event {name!r} data stored as text: {exc}", stacklevel=1)
            event["data"] = {str(key): _lenient(value) for key, value in data.items()}
            text = jsonx.encode(event)
        return text + "\n"


# The writers alive in this process, so that a forked child can disown the ones it inherited.
_writers: weakref.WeakSet[LogWriter] = weakref.WeakSet()


def _disown_in_child() -> None:
    for writer in list(_writers):
        writer._forked = True


os.register_at_fork(after_in_child=_disown_in_child)


def _reason(error: BaseException) -> str:
    """An OS error as ``strerror`` (``No space left on device``), anything else as text."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return f"{type(error).__name__}: {error}"


def _lenient(value: Any) -> Any:
    """``value`` as JSON if it can be, else its text: one odd value never loses an event."""
    try:
        return jsonx.to_jsonable(value)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"
