"""TensorBoard event files -> dbx experiments, read with ``tensorboard``'s own
``EventAccumulator``.

Every folder under SOURCE that holds ``events.out.tfevents.*`` files is one run and becomes
``<prefix>/<its path below SOURCE>`` (kind ``tensorboard``). Each scalar becomes an event
``<tag>/<step>`` with ``value`` at its wall time (so ``dbx query "loss/:step"`` gives the
curve), and the last value of each tag a result.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from squeezr.dbx.errors import UserError
from squeezr.dbx.importers import Imported, name_part

__all__ = ["read"]


def read(source: str, prefix: str) -> Iterator[Imported]:
    try:
        from tensorboard.backend.event_processing.event_accumulator import (
            SCALARS,
            EventAccumulator,
        )
    except ImportError:
        raise UserError(
            "dbx import tensorboard needs tensorboard: pip install 'squeezr[import]'"
        ) from None
    root = Path(source)
    if not root.is_dir():
        raise UserError(f"no TensorBoard log folder {source}")
    folders = sorted({path.parent for path in root.rglob("events.out.tfevents.*")})
    if not folders:
        raise UserError(f"{source} holds no TensorBoard event files (events.out.tfevents.*)")
    for folder in folders:
        relative = folder.relative_to(root).parts or (root.absolute().name,)
        name = "/".join([*filter(None, [prefix]), *(name_part(p) for p in relative)])
        item = Imported(f"tensorboard:{folder.absolute()}", name, "tensorboard", params={})
        accumulator = EventAccumulator(str(folder), size_guidance={SCALARS: 0})
        accumulator.Reload()
        scalars = []
        for tag in accumulator.Tags()["scalars"]:
            for point in accumulator.Scalars(tag):
                scalars.append((point.wall_time, tag, point.step, float(point.value)))
        for wall_time, tag, step, value in sorted(scalars):
            item.event(f"{tag}/{step}", wall_time, {"value": value, "step": step})
            item.results[tag.replace(".", "_").replace("/", "_")] = value
        yield item
