"""Pruning runs as dbx experiments: where the starting model comes from, and what is recorded.

A run starts from a dbx experiment (its ``model.pt``; its params name the dataset), a
checkpoint file, or a model object. The starting model is attached as ``start.pt`` so that a
resumed run never depends on the source still being where it was; the params hold the full
:class:`PruneConfig`, the source and the dataset, which is everything ``resume_experiment``
needs to continue a killed run to the same outcome.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from squeezr import dbx
from squeezr.data import Split, load_dataset
from squeezr.dbx.views import thaw
from squeezr.errors import UserError
from squeezr.models import ResNet, load_model, save_model
from squeezr.prune.config import PruneConfig
from squeezr.prune.loop import PruneResult, prune
from squeezr.prune.state import STATE_FILE

# What identifies a dataset: squeezr.data.load_dataset's arguments that change the data, and
# ``train_images`` (only the first N training images; for quick runs such as the demo).
DATASET_OPTIONS = (
    "name",
    "data_dir",
    "synthetic_size",
    "synthetic_classes",
    "seed",
    "train_images",
)


def dataset_of(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The dataset an experiment used, from its params: ``dataset`` as a name (with an optional
    top-level ``data_dir``, as ``squeezr train`` records it) or as a mapping with ``name`` (as
    pruning runs record it); None when the params do not say."""
    params = thaw(params)
    value = params.get("dataset")
    if isinstance(value, str):
        value = {"name": value, "data_dir": params.get("data_dir")}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return {k: v for k, v in value.items() if k in DATASET_OPTIONS and v is not None}
    return None


def load_source(
    source: str | Path | ResNet, repo: Any = None
) -> tuple[ResNet, dict[str, Any], dict[str, Any] | None]:
    """(model, description of the source, dataset recorded with it or None)."""
    if isinstance(source, ResNet):
        return source, {"kind": "model"}, None
    path = Path(source)
    if path.is_file():
        return load_model(path), {"kind": "checkpoint", "path": str(path.resolve())}, None
    try:
        exp = dbx.open(str(source), repo=repo)
    except UserError as exc:
        raise UserError(
            f"--from {source!r} is neither a checkpoint file nor an experiment ({exc})"
        ) from exc
    model = load_model(exp.attachment_path("model.pt"))
    info = {"kind": "experiment", "id": exp.id, "name": exp.name}
    return model, info, dataset_of(exp.params)


def open_splits(dataset: dict[str, Any], selection: str = "val"):
    """Load the dataset described by ``dataset`` (with a pruning set for ``selection="prune"``)."""
    options = {k: v for k, v in dataset.items() if k in DATASET_OPTIONS and v is not None}
    name = options.pop("name")
    limit = options.pop("train_images", None)
    splits = load_dataset(name, pruning_set=selection == "prune", **options)
    if limit is not None:
        if int(limit) < 1:
            raise UserError(f"train_images must be at least 1, not {limit}")
        train = Split(splits.train.x[: int(limit)], splits.train.y[: int(limit)])
        splits = dataclasses.replace(splits, train=train)
    return splits


def default_name(cfg: PruneConfig) -> str:
    """``prune/<method>/<schedule>`` with characters that make awkward folder names replaced."""
    return f"prune/{cfg.method}/{re.sub(r'[^A-Za-z0-9_.-]+', '-', cfg.schedule)}"


def attach_model(exp, model: ResNet, name: str) -> None:
    """Save ``model`` and attach it to ``exp`` as the managed file ``name``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        save_model(model, path)
        exp.attach(path, name=name)


def _run(exp, model: ResNet, splits, cfg: PruneConfig, progress: bool) -> PruneResult:
    result = prune(model, splits, cfg, exp=exp, state_path=exp.path / STATE_FILE, progress=progress)
    exp.results.update(result.summary)
    attach_model(exp, result.model.cpu(), "model.pt")
    exp.flush()
    return result


def run_experiment(
    source: str | Path | ResNet,
    cfg: PruneConfig,
    *,
    repo: Any = "./experiments",
    name: str | None = None,
    dataset: dict[str, Any] | None = None,
    splits=None,
    progress: bool = True,
):
    """Prune ``source`` as a new dbx experiment (kind ``prune``); returns (experiment, result).

    ``dataset`` ({"name", "data_dir", "synthetic_size"}) overrides what the source records;
    ``splits`` may be passed when already loaded (they must match ``dataset``).
    """
    cfg.validate()
    model, source_info, recorded = load_source(source, repo)
    dataset = dataset or recorded
    if dataset is None:
        raise UserError(
            "the starting model does not record its dataset; pass --dataset (e.g. cifar10)"
        )
    if splits is None:
        splits = open_splits(dataset, cfg.selection)
    params = {"prune": cfg.params(), "source": source_info, "dataset": dataset}
    exp = dbx.create(name or default_name(cfg), kind="prune", params=params, repo=repo)
    with exp:
        attach_model(exp, model, "start.pt")
        result = _run(exp, model, splits, cfg, progress)
    return exp, result


def resume_experiment(ref: str, *, repo: Any = None, progress: bool = True):
    """Continue a pruning experiment from its last completed step, as a new run of it."""
    exp = dbx.resume(ref, repo=repo)
    with exp:
        if exp.kind != "prune" or "prune" not in exp.params:
            raise UserError(f"experiment {exp.name} ({exp.id}) is not a pruning run; cannot resume")
        params = thaw(exp.params)
        cfg = PruneConfig.from_params(params["prune"])
        model = load_model(exp.attachment_path("start.pt"))
        splits = open_splits(params["dataset"], cfg.selection)
        result = _run(exp, model, splits, cfg, progress)
    return exp, result
