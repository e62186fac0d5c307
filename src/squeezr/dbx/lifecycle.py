"""Closing open runs however the process ends: normal exit, uncaught exception or SIGTERM.

Every experiment opened for writing registers here until it is closed. What each ending
records (``status`` / ``exit_code`` in ``run-<N>.json``), as accurately as Python allows:

* closed explicitly, or by leaving ``with dbx.create(...)``: ``finished``/0, ``failed``/1 with
  the exception, ``interrupted``/130 for Ctrl-C, and for ``sys.exit(n)`` inside the block the
  code ``n`` (``finished`` when it is 0, ``failed`` otherwise);
* not closed, uncaught exception: ``failed``/1 with the exception (``interrupted``/130 for
  KeyboardInterrupt), exactly as the interpreter itself exits;
* not closed, the program ended without an uncaught exception: ``exited`` with exit code
  ``null``. Python runs exit handlers without telling them whether the program returned
  normally or called ``sys.exit(n)``, so the code is unknown there; close the run (or use
  ``with``) to have it recorded;
* SIGTERM: ``terminated``/143, then the previous handler runs (or the default action, which
  ends the process).

A run that is killed (SIGKILL, power loss) stays ``running``; ``dbx show`` then tells whether
its process is gone. Closing at exit never raises or hangs: a log that cannot be written is
reported on stderr.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import Any, Protocol

from squeezr.errors import UserError

__all__ = ["EXIT_INTERRUPTED", "exit_status", "register", "unregister"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class _Closable(Protocol):
    def _finish(
        self, status: str, exit_code: int | None = None, exception: BaseException | None = None
    ) -> None: ...


# Items are added and removed with single dict operations, which are atomic under the GIL, and
# read by copying; so the SIGTERM handler, which runs between any two bytecodes of the main
# thread, never waits for a lock that the code it interrupted holds.
_open: dict[int, _Closable] = {}
_install_lock = threading.Lock()
_state = {"atexit": False, "sigterm": False}
_previous: dict[str, Any] = {}


def register(item: _Closable) -> None:
    """Track ``item`` until :func:`unregister`; installs the exit and SIGTERM hooks once."""
    _open[id(item)] = item
    if _state["atexit"] and (_state["sigterm"] or not _in_main_thread()):
        return
    with _install_lock:
        if not _state["atexit"]:
            atexit.register(_at_exit)
            _state["atexit"] = True
        if not _state["sigterm"] and _in_main_thread():
            _previous["handler"] = signal.signal(signal.SIGTERM, _on_sigterm)
            _state["sigterm"] = True


def unregister(item: _Closable) -> None:
    """Stop tracking ``item`` (it was closed)."""
    _open.pop(id(item), None)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _pending() -> list[_Closable]:
    return list(_open.copy().values())


def exit_status(exc: BaseException | None) -> tuple[str, int | None]:
    """``(status, exit_code)`` for a run ending with ``exc`` (None: it ended cleanly)."""
    if exc is None:
        return "finished", 0
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return ("finished" if code == 0 else "failed"), code
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    return "failed", 1


def _at_exit() -> None:
    # The interpreter stores an uncaught exception in sys.last_value before running atexit;
    # a clean return and sys.exit(n) leave nothing behind, so their exit code is unknown.
    error = getattr(sys, "last_value", None)
    status, code = exit_status(error) if error is not None else ("exited", None)
    for item in _pending():
        _finish_quietly(item, status, code, error)


def _on_sigterm(signum: int, frame: Any) -> None:
    for item in _pending():
        _finish_quietly(item, "terminated", 128 + signum, None)
    previous = _previous.get("handler")
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # SIG_DFL (or unknown): die by the signal, as the process would have without us
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _state["sigterm"] = False
        os.kill(os.getpid(), signal.SIGTERM)


def _finish_quietly(
    item: _Closable, status: str, code: int | None, error: BaseException | None
) -> None:
    """Close ``item``; the process is ending, so a failure is reported, never raised."""
    try:
        item._finish(status, exit_code=code, exception=error)
    except (UserError, OSError) as exc:
        print(f"dbx: warning: {exc}", file=sys.stderr)
