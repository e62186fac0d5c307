"""Closing open runs however the process ends: normal exit, uncaught exception or SIGTERM.

Every experiment opened for writing registers here until it is closed. At interpreter exit
the registered runs are closed as "finished" (or "failed" with the uncaught exception); on
SIGTERM they are closed as "terminated" and the previous handler (or the default action,
which ends the process) runs afterwards.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import Any, Protocol

__all__ = ["register", "unregister"]


class _Closable(Protocol):
    def _finish(
        self, status: str, exit_code: int | None = None, exception: BaseException | None = None
    ) -> None: ...


_open: dict[int, _Closable] = {}
_lock = threading.Lock()
_state = {"atexit": False, "sigterm": False}
_previous: dict[str, Any] = {}


def register(item: _Closable) -> None:
    """Track ``item`` until :func:`unregister`; installs the exit and SIGTERM hooks once."""
    with _lock:
        _open[id(item)] = item
        if not _state["atexit"]:
            atexit.register(_at_exit)
            _state["atexit"] = True
        if not _state["sigterm"] and threading.current_thread() is threading.main_thread():
            _previous["handler"] = signal.signal(signal.SIGTERM, _on_sigterm)
            _state["sigterm"] = True


def unregister(item: _Closable) -> None:
    """Stop tracking ``item`` (it was closed)."""
    with _lock:
        _open.pop(id(item), None)


def _pending() -> list[_Closable]:
    with _lock:
        return list(_open.values())


def _at_exit() -> None:
    # The interpreter stores an uncaught exception in sys.last_value before running atexit.
    error = getattr(sys, "last_value", None)
    for item in _pending():
        if error is not None:
            item._finish("failed", exit_code=1, exception=error)
        else:
            item._finish("finished")


def _on_sigterm(signum: int, frame: Any) -> None:
    for item in _pending():
        item._finish("terminated", exit_code=128 + signum)
    previous = _previous.get("handler")
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # SIG_DFL (or unknown): die by the signal, as the process would have without us
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _state["sigterm"] = False
        os.kill(os.getpid(), signal.SIGTERM)
