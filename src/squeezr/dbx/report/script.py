"""The script written beside every figure and table: read the CSV, draw, save.

It is meant to be read and edited: the header says which command made it and how to run it,
``SOURCE`` says where the data came from (``--refresh`` fetches it again, rewriting the CSV),
the spec lists every setting that differs from the defaults, and three lines do the work.
It needs squeezr installed (for the drawing code) but not the experiment repository, unless
``--refresh`` is given. Rendering is pure and deterministic, so the same command always
writes the same script.
"""

from __future__ import annotations

import pprint
from pathlib import Path
from typing import Any

from squeezr.dbx.report.spec import FigureSpec, TableSpec, as_code

__all__ = ["render_script"]

TEMPLATE = '''\
#!/usr/bin/env python3
"""{what} from {data}; edit the settings below and run it again.

Made by:
    {command}

    python {script}            redraw from {data} (no repository needed)
    python {script} --refresh  fetch the data again first (rewrites {data})
"""

import sys
from pathlib import Path

from squeezr.dbx import report
from squeezr.dbx.report import {spec_type}

HERE = Path(__file__).resolve().parent
DATA = HERE / {data!r}
OUTPUTS = [{outputs}]

# Where the data came from (read only by --refresh).
SOURCE = {source}

{spec_name} = {spec}

if __name__ == "__main__":
    if "--refresh" in sys.argv[1:]:
        report.refresh(SOURCE, DATA)
    data = report.read_csv(DATA)
    {call}
'''


def render_script(
    *,
    command: str,
    source: dict[str, Any],
    spec: FigureSpec | TableSpec,
    data: Path,
    outputs: list[Path],
    script: Path,
) -> str:
    """The text of ``script``, which redraws ``outputs`` from ``data`` (all in one folder)."""
    is_figure = isinstance(spec, FigureSpec)
    spec_name = "FIGURE" if is_figure else "TABLE"
    call = (
        f"report.save(report.draw(data, {spec_name}), OUTPUTS)"
        if is_figure
        else f"report.write_table(data, {spec_name}, OUTPUTS)"
    )
    names = [path.name for path in outputs]
    return TEMPLATE.format(
        what=("Draws " if is_figure else "Writes ") + ", ".join(names),
        data=data.name,
        command=command,
        script=script.name,
        spec_type=type(spec).__name__,
        outputs=", ".join(f"HERE / {name!r}" for name in names),
        source=pprint.pformat(source, sort_dicts=False, width=88),
        spec_name=spec_name,
        spec=as_code(spec),
        call=call,
    )
