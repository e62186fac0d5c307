"""Experiments as a pandas DataFrame, for notebooks and ad-hoc analysis.

One row per experiment: ``id``, ``name``, ``kind``, ``created`` and one column per leaf of
params and results (``params.optimizer.lr``, ``results.best_val_acc``), or the chosen
``columns``. pandas is imported here, inside the function, so ``import squeezr.dbx`` and the
``dbx`` command line stay light.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from squeezr.dbx import expr
from squeezr.dbx.select import check_paths, find
from squeezr.dbx.store import Experiment, Repository
from squeezr.dbx.views import flatten

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["frame"]

BASE_COLUMNS = ["id", "name", "kind", "created"]


def frame(
    experiments: Iterable[Experiment] | Repository | None = None,
    columns: Iterable[str] | None = None,
    **selection: Any,
) -> pd.DataFrame:
    """A DataFrame of ``experiments``, of every experiment of a repository, or (without
    either) of the experiments :func:`squeezr.dbx.find` picks with ``selection``
    (``prefix``, ``kind``, ``since``, ``where``, ``sort``, ``limit``, ``repo``).

    ``columns`` (paths such as ``name`` or ``params.optimizer.lr``) picks the columns, as
    ``dbx ls --columns`` does; absent values are None.

    >>> dbx.frame(kind="prune", where="params.seed < 3", columns=["name", "results.acc"])
    """
    import pandas as pd

    if experiments is None:
        experiments = find(**selection)
    elif selection:
        raise TypeError("give experiments or selection keywords, not both")
    elif isinstance(experiments, Repository):
        experiments = experiments.experiments()
    if columns is not None:
        chosen = list(columns)
        check_paths(chosen, "column")
        rows = [[_cell(exp, column) for column in chosen] for exp in experiments]
        return pd.DataFrame(rows, columns=chosen)
    records = []
    for exp in experiments:
        row: dict[str, Any] = {
            "id": exp.id,
            "name": exp.name,
            "kind": exp.kind,
            "created": exp.created,
        }
        row.update(flatten(exp.value("params"), "params"))
        row.update(flatten(exp.results.tree(), "results"))
        records.append(row)
    return pd.DataFrame(records, columns=None if records else BASE_COLUMNS)


def _cell(exp: Experiment, column: str) -> Any:
    """One value of a chosen column: None when absent, ``created`` as a datetime."""
    if column in ("created", "exp.created"):
        return exp.created
    value = exp.value(column)
    return None if value is expr.MISSING else value
