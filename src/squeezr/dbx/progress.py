"""Progress bars that suit where their output goes, and one whose progress is also recorded.

:func:`progress_bar` is tqdm on a terminal (or in a notebook); when stderr is a file, a pipe,
CI or a SLURM log, it writes a plain line every ``every`` seconds and one at the end instead
of carriage-return redraws, so logs read as text. Every squeezr progress bar (training,
pruning, the oracle's scoring) and :meth:`Experiment.progress` go through it.

:class:`RecordedBar`: long loops are where runs die; recording ``progress/<desc>`` events
(n, total, rate, elapsed) shows afterwards how far a run got and how fast, without a
terminal. Events are throttled to one per ``every`` seconds plus a final one, so wrapping a
hot loop stays cheap.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

__all__ = ["LineProgress", "RecordedBar", "progress_bar"]

LINE_EVERY = 10.0  # seconds between the plain lines written where there is no terminal


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str | None = None,
    total: float | None = None,
    initial: float = 0,
    unit: str = "it",
    disable: bool = False,
    leave: bool = True,
    file: TextIO | None = None,
    every: float = LINE_EVERY,
) -> Any:
    """A tqdm bar (tqdm's arguments of the same names) on a terminal or in a notebook, else a
    :class:`LineProgress` writing plain lines to ``file`` (default stderr)."""
    stream = sys.stderr if file is None else file
    if disable or "ipykernel" in sys.modules or _is_terminal(stream):
        from tqdm.auto import tqdm

        return tqdm(
            iterable,
            desc=desc,
            total=total,
            initial=initial,
            unit=unit,
            disable=disable,
            leave=leave,
            file=file,
        )
    return LineProgress(
        iterable, desc=desc, total=total, initial=initial, unit=unit, file=stream, every=every
    )


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class LineProgress:
    """The part of tqdm's interface squeezr uses (iterate, ``update``, ``set_postfix``,
    ``close``, ``with``), writing ``desc: n/total unit [elapsed<left, rate] postfix`` as a
    plain line at most every ``every`` seconds, and a last one when closed."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        desc: str | None = None,
        total: float | None = None,
        initial: float = 0,
        unit: str = "it",
        file: TextIO | None = None,
        every: float = LINE_EVERY,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.desc, self.total, self.unit = iterable, desc, total, unit
        self.n = self._shown = self._initial = initial
        self.file = sys.stderr if file is None else file
        self.every = every
        self.postfix = ""
        self._start = self._last = time.monotonic()
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.every:
            self._write(now)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.n != self._shown or self.n == self._initial:
            self._write(time.monotonic())

    def _write(self, now: float) -> None:
        from tqdm import tqdm

        self._last, self._shown = now, self.n
        elapsed = now - self._start
        done = self.n - self._initial
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        count = f"{self.n:g}/{self.total:g}" if self.total is not None else f"{self.n:g}"
        timing = tqdm.format_interval(elapsed)
        if rate and self.total is not None:
            timing += f"<{tqdm.format_interval((self.total - self.n) / rate)}"
        if rate:
            timing += (
                f", {rate:.3g} {self.unit}/s" if rate >= 1 else f", {1 / rate:.3g} s/{self.unit}"
            )
        prefix = f"{self.desc}: " if self.desc else ""
        postfix = f" {self.postfix}" if self.postfix else ""
        print(f"{prefix}{count} {self.unit} [{timing}]{postfix}", file=self.file, flush=True)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordedBar:
    """Wraps a ``tqdm`` bar: iterate it, call ``update``/``set_postfix``/``close`` as on tqdm."""

    def __init__(
        self,
        iterable: Iterable[Any] | None,
        log: Callable[[str, dict[str, Any]], None],
        desc: str | None = None,
        total: float | None = None,
        every: float = 1.0,
        **tqdm_kwargs: Any,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self._bar = progress_bar(iterable, desc=desc, total=total, **tqdm_kwargs)
        self.total = total
        self.n: float = 0  # counted here: a disabled tqdm bar does not count
        self._log = log
        self._name = f"progress/{desc or 'progress'}"
        self._every = every
        self._start = time.monotonic()
        self._last = self._start
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in self._bar:
                yield item
                self.n += 1
                self._maybe_record()
        finally:
            self.close()

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("this progress bar has no total")
        return int(self.total)

    def update(self, n: float = 1) -> None:
        """Advance by ``n`` (for bars driven by hand, without an iterable)."""
        self._bar.update(n)
        self.n += n
        self._maybe_record()

    def _maybe_record(self) -> None:
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._record(now)

    def _record(self, now: float) -> None:
        elapsed = now - self._start
        n = self.n
        self._log(
            self._name,
            {
                "n": n,
                "total": self.total,
                "elapsed": elapsed,
                "rate": n / elapsed if elapsed > 0 else None,
            },
        )

    def close(self) -> None:
        """Record the final position and close the bar; further calls do nothing."""
        if self._closed:
            return
        self._closed = True
        self._record(time.monotonic())
        self._bar.close()

    def __enter__(self) -> RecordedBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bar, name)
