"""MLflow runs -> dbx experiments, read with ``mlflow``'s own client (any tracking URI:
an ``mlruns`` folder, ``sqlite:///...``, ``http://tracking-server``).

Each MLflow run becomes ``<prefix>/<experiment>/<run name>`` (kind ``mlflow``): params as
params (MLflow keeps them as text), the latest metrics and the tags (``results.mlflow_tags``)
as results, each metric's history as events ``<metric>/<step>`` with ``value`` at its
recorded time, and the artifacts as attachments.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from squeezr.dbx.errors import UserError
from squeezr.dbx.importers import Imported, name_part
from squeezr.dbx.timeutil import to_datetime

__all__ = ["read"]


def read(uri: str, prefix: str, scratch: Path) -> Iterator[Imported]:
    """The runs of every experiment at tracking URI ``uri``; artifacts land in ``scratch``."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UserError("dbx import mlflow needs mlflow: pip install 'squeezr[import]'") from None
    if "://" not in uri:
        folder = Path(uri)
        if not folder.is_dir():
            raise UserError(f"no MLflow folder {uri}; give an mlruns folder or a tracking URI")
        uri = folder.absolute().as_uri()
    client = MlflowClient(uri)
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            yield _run(client, experiment.name, run, prefix, scratch)


def _run(client: Any, experiment: str, run: Any, prefix: str, scratch: Path) -> Imported:
    info, data = run.info, run.data
    title = info.run_name or info.run_id
    name = "/".join(p for p in (prefix, name_part(experiment), name_part(title)) if p)
    item = Imported(
        f"mlflow:{info.run_id}", name, "mlflow", params=dict(sorted(data.params.items()))
    )
    created = to_datetime(info.start_time / 1000) if info.start_time else None
    item.created = created.isoformat() if created else None
    ended = to_datetime(info.end_time / 1000) if info.end_time else None
    item.run.update(
        start=item.created,
        end=ended.isoformat() if ended else None,
        status={"FINISHED": "finished", "FAILED": "failed", "KILLED": "interrupted"}.get(
            info.status, "running"
        ),
    )
    item.results = (
        {**data.metrics, "mlflow_tags": dict(data.tags)} if data.tags else dict(data.metrics)
    )
    history = []
    for key in sorted(data.metrics):
        for metric in client.get_metric_history(info.run_id, key):
            history.append((metric.timestamp, key, metric.step, metric.value))
    for timestamp, key, step, value in sorted(history):
        item.event(f"{key}/{step}", timestamp / 1000, {"value": value, "step": step})
    folder = scratch / info.run_id
    for path in _artifacts(client, info.run_id, ""):
        local = Path(client.download_artifacts(info.run_id, path, str(folder)))
        item.files.append((path, local))
    return item


def _artifacts(client: Any, run_id: str, under: str) -> Iterator[str]:
    for entry in client.list_artifacts(run_id, under or None):
        if entry.is_dir:
            yield from _artifacts(client, run_id, entry.path)
        else:
            yield entry.path
