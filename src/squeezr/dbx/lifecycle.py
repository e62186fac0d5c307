"""Closing open runs however the process ends: normal exit, uncaught exception or SIGTERM.

Every experiment opened for writing registers here until it is closed. What each ending
records (``status`` / ``exit_code`` in ``run-<N>.json``), as accurately as Python allows:

* closed explicitly, or by leaving ``with dbx.create(...)``: ``finished``/0, ``failed``/1 with
  the exception, ``interrupted``/130 for Ctrl-C, and for ``sys.exit(n)`` inside the block the
  code ``n`` (``finished`` when it is 0, ``failed`` otherwise);
* not closed, uncaught exception: ``failed``/1 with the exception (``interrupted``/130 for
  KeyboardInterrupt), exactly as the interpreter itself exits. In an interactive session
  (``python -i``, a Jupyter kernel) an error shown at the prompt counts only if it happened
  while the run was open: one from before the run started is not its failure;
* not closed, the program ended without an uncaught exception: ``exited`` with exit code
  ``null``. Python runs exit handlers without telling them whether the program returned
  normally or called ``sys.exit(n)``, so the code is unknown there; close the run (or use
  ``with``) to have it recorded;
* SIGTERM: ``terminated``/143, then the previous handler runs (or the default action, which
  ends the process).

A run that is killed (SIGKILL, power loss) stays ``running``; ``dbx show`` then tells whether
its process is gone. Closing at exit never raises or hangs: a log that cannot be written is
reported on stderr.

A forked child (``os.fork``, a ``fork`` multiprocessing pool, DataLoader workers) shares
nothing of its parent's runs: it starts with no open runs and with the SIGTERM handler that
was there before dbx installed its own, so a worker that is terminated or exits never ends
its parent's run (see also :mod:`squeezr.dbx.logger`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from typing import Any, Protocol

from squeezr.dbx.errors import UserError

__all__ = ["EXIT_INTERRUPTED", "exit_status", "register", "unregister"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class _Closable(Protocol):
    def _finish(
        self, status: str, exit_code: int | None = None, exception: BaseException | None = None
    ) -> None: ...


# Items are added and removed with single dict operations, which are atomic under the GIL, and
# read by copying; so the SIGTERM handler, which runs between any two bytecodes of the main
# thread, never waits for a lock that the code it interrupted holds. Each open item is kept
# with the error that ``sys.last_value`` held when it was registered (see _at_exit).
_open: dict[int, tuple[_Closable, BaseException | None]] = {}
_install_lock = threading.Lock()
_state = {"atexit": False, "sigterm": False}
_previous: dict[str, Any] = {}


def register(item: _Closable) -> None:
    """Track ``item`` until :func:`unregister`; installs the exit and SIGTERM hooks once."""
    _open[id(item)] = (item, getattr(sys, "last_value", None))
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


def _pending() -> list[tuple[_Closable, BaseException | None]]:
    return list(_open.copy().values())


def _forget_in_child() -> None:
    """After a fork, in the child: the parent's runs are not the child's to end, and the
    child gets back the SIGTERM handler that dbx replaced (a terminated pool worker then
    dies as it would have without dbx)."""
    global _install_lock
    _open.clear()
    _install_lock = threading.Lock()  # another thread of the parent may have held it
    if _state["sigterm"]:
        previous = _previous.get("handler")
        # Where Python refuses (not the main thread), dbx's handler stays: with nothing open
        # it only passes the signal on to the previous handler.
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
            _state["sigterm"] = False


os.register_at_fork(after_in_child=_forget_in_child)


def exit_status(exc: BaseException | None) -> tuple[str, int | None]:
    """``(status, exit_code)`` for a run ending with ``exc`` (None: it ended cleanly)."""
    if exc is None:
        return "finished", 0
    if isinstance(exc, SystemExit):
        # As the interpreter reads it: an int (bools too: sys.exit(False) is 0), None is 0,
        # anything else (a message) is 1.
        code = int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return ("finished" if code == 0 else "failed"), code
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    return "failed", 1


def _at_exit() -> None:
    # The interpreter stores an uncaught exception in sys.last_value before running atexit;
    # a clean return and sys.exit(n) leave nothing behind, so their exit code is unknown.
    # An interactive session also stores each error shown at its prompt there: one that was
    # already there when a run started is not that run's.
    error = getattr(sys, "last_value", None)
    for item, earlier in _pending():
        ended_by = error if error is not earlier else None
        status, code = exit_status(ended_by) if ended_by is not None else ("exited", None)
        _finish_quietly(item, status, code, ended_by)


def _on_sigterm(signum: int, frame: Any) -> None:
    for item, _ in _pending():
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
