"""dbx: experiment management that works from any Python script or the shell.

Pure Python: importing this package never imports torch, numpy or pandas (tested); pandas
is loaded only by :func:`frame` and log queries. See docs/dbx.md (user guide),
and docs/dbx-format.md (on-disk format).

Writing: :func:`create`, :func:`resume`; reading: :func:`open`, :class:`Repository`;
finding and comparing (the ``dbx`` command line's operations): :func:`find`,
:func:`frame`, :func:`diff`, :func:`like`, :func:`missing`, :func:`command`,
:func:`code_diff`, :func:`checkout_code`; figures: :func:`plot` (a matplotlib Figure; loaded
on first use, so matplotlib and pandas stay unimported until then; see docs/dbx-report.md).
"""

from typing import Any

from squeezr.dbx.code import checkout_code, code_diff
from squeezr.dbx.compare import diff, like
from squeezr.dbx.frames import frame
from squeezr.dbx.runs import command
from squeezr.dbx.select import find, missing
from squeezr.dbx.store import Experiment, Repository, create, open, resume

__all__ = [
    "Experiment",
    "Repository",
    "checkout_code",
    "code_diff",
    "command",
    "create",
    "diff",
    "find",
    "frame",
    "like",
    "missing",
    "open",
    "plot",
    "resume",
]


def __getattr__(name: str) -> Any:
    """``dbx.plot`` is imported on first use: it needs matplotlib and pandas."""
    if name == "plot":
        from squeezr.dbx.report import plot

        return plot
    raise AttributeError(f"module 'squeezr.dbx' has no attribute {name!r}")
