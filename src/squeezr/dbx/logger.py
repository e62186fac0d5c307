"""The background log writer: ``log()`` encodes one JSON line and appends it to a deque.

The caller stamps the time, numbers the event and encodes it, so a value JSON cannot hold
(an int beyond Python's 4,300-digit limit, nesting deeper than
:data:`squeezr.dbx.jsonx.MAX_DEPTH`) is a UserError to the caller at ``log()`` and nothing
else is lost; the writer thread only appends finished lines to ``log-<N>.jsonl`` and
``fsync``s them, then appends the batch's segment to the log's columnar copy (the columns
queries read; :mod:`squeezr.dbx.logcopy`), laid out from the values each line was encoded
from rather than by parsing the lines back. It writes at most ``batch`` events at a time: a batch goes out every
``interval`` seconds, as soon as ``batch`` events wait, or when :meth:`LogWriter.flush` asks
(which returns once the events logged before it are durable). A crash therefore loses at most
the last unflushed events, and a torn last line is the only damage a reader can meet.

The queue is bounded (``max_queue`` events). A program that logs faster than the disk takes
the lines waits in ``log()`` until the writer has made room (back-pressure) rather than
growing without bound; if the writer cannot write at all (see below) a full queue makes
``log()`` raise the writer's UserError instead of waiting forever.

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
import math
import os
import sys
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import orjson

from squeezr.dbx import jsonx
from squeezr.dbx.errors import DbxWarning, UserError
from squeezr.dbx.fileio import fsync_dir
from squeezr.dbx.logcopy import CopyWriter, Event

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

    def __init__(
        self,
        path: Path,
        run: int,
        *,
        interval: float = 0.2,
        batch: int = 1000,
        max_queue: int = 100_000,
    ) -> None:
        self.path = path
        self.run = run
        self.interval = interval
        self.batch = batch
        self.max_queue = max(max_queue, batch)
        self._seq = 1
        # Events (logcopy.Event: the encoded line and the fields it came from) and _Flush.
        self._queue: collections.deque[Any] = collections.deque()
        self._log_lock = threading.Lock()  # numbering and queueing are one step
        self._room = threading.Condition(threading.Lock())  # signalled after every write
        self._pending = b""  # encoded events taken from the queue that have not reached the file
        self._error: BaseException | None = None  # the last write failure, until one succeeds
        self._wake = threading.Event()
        self._drain_lock = threading.Lock()  # the thread and a synchronous drain never overlap
        self._stopping = False
        self._closed = False
        self._warned: set[str] = set()
        self.pid = os.getpid()  # the process that owns the log
        self._forked = False  # set in a forked child (see _disown_in_child)
        created = not path.exists()
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as exc:
            raise UserError(f"cannot open log {path}: {exc.strerror or exc}") from None
        if created:  # a power loss must not lose the new file's directory entry
            fsync_dir(path.parent)
        # The log's columnar copy, for queries: a segment per durable batch (logcopy.py).
        self._copy = CopyWriter(path, os.fstat(self._fd).st_size, run)
        self._uncopied: list[Event] = []  # events taken from the queue, not yet in the copy
        _writers.add(self)
        self._thread = threading.Thread(target=self._loop, name=f"dbx-log-{path}", daemon=True)
        self._thread.start()

    @property
    def owned(self) -> bool:
        """False in a forked child: the log, and the run it belongs to, are the parent's."""
        return not self._forked

    def log(self, name: str, data: dict[str, Any]) -> None:
        """Encode and queue one event; returns at once unless the queue is full (then it
        waits for the writer to make room). A UserError for data JSON cannot hold (nothing is
        queued), when the queue is full and the writer cannot write, and in a forked child
        (the log is its parent's)."""
        if self._forked:
            raise UserError(
                f"cannot log to {self.path} from process {os.getpid()}: its run belongs to "
                f"process {self.pid}, which forked this one; log from that process, or give "
                "this one its own run with dbx.resume(...)"
            )
        if self._closed:
            raise UserError(f"cannot log to {self.path}: the run is closed")
        if len(self._queue) >= self.max_queue:
            self._wait_for_room()
        with self._log_lock:
            event_id, ts = f"{self.run}-{self._seq}", time.time()
            line, kept = self._line(name, event_id, ts, data)
            self._seq += 1
            # The fields the columnar copy is laid out from, as tuples: a snapshot (the caller
            # may change its dict) that the garbage collector soon stops tracking.
            if type(kept) is dict:
                self._queue.append((line, name, event_id, ts, tuple(kept), tuple(kept.values())))
            else:
                self._queue.append((line, name, event_id, ts, None, None))
        if len(self._queue) >= self.batch and not self._wake.is_set():
            self._wake.set()  # (once: setting an Event takes a lock and notifies)

    def _wait_for_room(self) -> None:
        """Block until the queue is below ``max_queue``; the writer's UserError if it is
        failing (a full disk): waiting would hang the program, dropping would lose events."""
        while len(self._queue) >= self.max_queue:
            if self._error is not None:
                raise UserError(
                    f"cannot log to {self.path}: {self.max_queue:,} events wait and the "
                    f"log cannot be written ({_reason(self._error)}); the event was not "
                    "recorded"
                )
            if not self._thread.is_alive():
                self._drain()  # (outside the condition: draining notifies it)
                continue
            self._wake.set()
            with self._room:
                if len(self._queue) >= self.max_queue:
                    self._room.wait(self.interval)

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
            self._copy.close()
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
            self._copy.close()
            os.close(self._fd)
        if self._error is not None:
            lost = self._pending.count(b"\n") + sum(
                1 for item in self._queue if not isinstance(item, _Flush)
            )
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
        """Write what is queued, at most ``batch`` events per write and ``fsync``, releasing
        each flush marker once the events before it are durable (or with the error when the
        file refused them). Stops at the first failure: the rest stays queued, in order."""
        with self._drain_lock:
            queue = self._queue
            while True:
                chunks = [self._pending]
                markers: list[_Flush] = []
                taken = self._uncopied
                while queue and len(chunks) <= self.batch:
                    item = queue.popleft()
                    if isinstance(item, _Flush):
                        markers.append(item)
                    else:
                        chunks.append(item[0])
                        taken.append(item)
                self._pending = b"".join(chunks)
                if not (self._pending or markers):
                    return
                error = self._write()
                if error is None and self._uncopied:
                    self._copy.add(self._uncopied)
                    self._uncopied = []
                for marker in markers:
                    marker.error = error
                    marker.done.set()
                with self._room:
                    self._room.notify_all()
                if error is not None or not queue:
                    return

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
        for item in list(self._queue):
            if isinstance(item, _Flush):
                item.error = error
                item.done.set()
        with self._room:
            self._room.notify_all()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._failure(self._error)

    def _failure(self, error: BaseException) -> UserError:
        return UserError(
            f"cannot write log {self.path}: {_reason(error)}; the events are kept in memory "
            "and retried; free space or fix the file system, then flush again"
        )

    def _line(
        self, name: str, event_id: str, ts: float, data: dict[str, Any]
    ) -> tuple[bytes, dict[str, Any] | None]:
        """The event as one encoded JSON line, and ``data`` if the line holds it as it is
        (None when it holds the data as text). A value of a type JSON lacks, or a cycle, is
        stored as its text (with a warning once per event name); a value no JSON can hold
        at all is a UserError naming the event."""
        event = {"name": name, "id": event_id, "ts": ts, "run": self.run, "data": data}
        if _plain(data):  # the usual event: orjson, several times faster than json
            try:
                return orjson.dumps(event) + b"\n", data
            except TypeError:  # an int beyond 64 bits, a lone surrogate: json's path decides
                pass
        try:
            return (jsonx.encode(event) + "\n").encode("utf-8"), data
        except jsonx.TooDeep as exc:
            raise UserError(f"event {name!r} cannot be logged: {exc}") from None
        except (TypeError, ValueError, UnicodeEncodeError) as exc:
            reason = exc
        try:
            event["data"] = {str(key): _lenient(value) for key, value in data.items()}
            text = (jsonx.encode(event) + "\n").encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError) as exc:
            raise UserError(
                f"event {name!r} cannot be logged: a value cannot be stored as JSON ({exc})"
            ) from None
        if name not in self._warned:
            self._warned.add(name)
            warnings.warn(f"event {name!r} data stored as text: {reason}", DbxWarning, stacklevel=4)
        return text, None


_PLAIN = frozenset({str, int, bool, type(None)})


def _plain(data: dict[str, Any]) -> bool:
    """Whether ``data`` holds only str keys and str/int/bool/None or finite float values
    (exact types): then orjson writes the same values json would (UTF-8 instead of ``\\u``
    escapes, the shortest float text; both standard JSON), and nothing can nest too deeply.
    Anything else (NaN, numpy scalars, enums, lists, dataclasses) takes :mod:`jsonx`'s path."""
    for key, value in data.items():
        kind = type(value)
        if type(key) is not str or (
            kind not in _PLAIN and not (kind is float and math.isfinite(value))
        ):
            return False
    return True


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
    """``value`` as JSON if it can be, else its text, so one odd value (an object, a cycle)
    never loses an event. Nesting deeper than JSON may hold, and a value without a text (an
    int beyond Python's digit limit) raise: the caller gets the error."""
    try:
        jsonx.encode(value)
        return jsonx.to_jsonable(value)
    except jsonx.TooDeep:
        raise
    except TypeError:
        try:
            return repr(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"
    except ValueError:  # a cycle has a text; an int too long for one raises again here
        return repr(value)
