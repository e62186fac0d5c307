"""A tqdm bar whose progress is also recorded in the experiment's log.

Long loops are where runs die; recording ``progress/<desc>`` events (n, total, rate,
elapsed) shows afterwards how far a run got and how fast, without a terminal. Events are
throttled to one per ``every`` seconds plus a final one, so wrapping a hot loop stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["RecordedBar"]


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
        from tqdm.auto import tqdm

        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self._bar = tqdm(iterable, desc=desc, total=total, **tqdm_kwargs)
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
