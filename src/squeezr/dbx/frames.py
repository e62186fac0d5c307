"""Experiments as a pandas DataFrame, for notebooks and ad-hoc analysis.

One row per experiment: ``id``, ``name``, ``kind``, ``created`` and one column per leaf of
params and results (``params.optimizer.lr``, ``results.best_val_acc``). pandas is imported
here, inside the function, so ``import squeezr.dbx`` stays light.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from squeezr.dbx.store import Experiment, Repository

__all__ = ["flatten", "frame"]


def flatten(value: Any, prefix: str) -> dict[str, Any]:
    """Nested mappings as ``{"prefix.a.b": leaf}``; lists and empty mappings are leaves."""
    if not isinstance(value, Mapping) or not value:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(flatten(item, f"{prefix}.{key}"))
    return flat


def frame(experiments: Iterable[Experiment] | Repository) -> pd.DataFrame:
    """A DataFrame of ``experiments`` (or of every experiment of a repository)."""
    import pandas as pd

    if hasattr(experiments, "experiments"):
        experiments = experiments.experiments()
    rows = []
    for exp in experiments:
        row: dict[str, Any] = {
            "id": exp.id,
            "name": exp.name,
            "kind": exp.kind,
            "created": exp.created,
        }
        for section in ("params", "results"):
            data = dict(getattr(exp, section))
            if data:
                row.update(flatten(data, section))
        rows.append(row)
    columns = ["id", "name", "kind", "created"]
    return pd.DataFrame(rows, columns=None if rows else columns)
