"""Pruning runs as dbx experiments: where the starting model comes from, and what is recorded.

A run starts from a dbx experiment (its ``model.pt``, or one of its training checkpoints; its
params name the dataset), a checkpoint file, or a model object. Everything is loaded and
checked (:func:`squeezr.prune.plan.plan_run`) before the experiment is created, so bad
settings leave nothing behind. The starting model is attached as ``start.pt`` so that a
resumed run never depends on the source still being where it was; the params hold the full
:class:`PruneConfig`, the source and the dataset, which is everything a resume needs to
continue a killed run to the same outcome.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from squeezr import dbx, distributed, schedules
from squeezr.blocknet import (
    BlockNet,
    adapt,
    attach_model,
    build,
    is_model_source,
    load_model,
    output_size,
)
from squeezr.dbx.errors import UserError
from squeezr.dbx.store import validate_name
from squeezr.dbx.views import thaw
from squeezr.models import MODEL_ATTACHMENT
from squeezr.prune.config import PruneConfig
from squeezr.prune.loop import PruneResult, prune
from squeezr.prune.plan import RunPlan, plan_run
from squeezr.prune.records import (
    dataset_of,
    dataset_record,
    model_attachment,
    open_splits,
    recorded_source,
    source_label,
)
from squeezr.prune.state import STATE_FILE, load_state
from squeezr.tasks import LanguageModelling, task_of
from squeezr.textdata import fit_language_model
from squeezr.torchfiles import load_torch_file

__all__ = [
    "PreparedRun",
    "dataset_of",
    "default_name",
    "load_source",
    "open_splits",
    "prepare_resume",
    "prepare_run",
    "resume_point",
    "run_experiment",
]


def load_source(
    source: str | Path | nn.Module,
    repo: Any = None,
    checkpoint: int | None = None,
    weights: str | Path | None = None,
) -> tuple[BlockNet, dict[str, Any], dict[str, Any] | None]:
    """(model, description of the source, dataset recorded with it or None).

    A model object is taken through :func:`squeezr.blocknet.adapt` (a foreign network such
    as a torchvision ResNet becomes its block network; an unsupported one is a UserError).
    A model source ``FAMILY:NAME`` (``torchvision:resnet50``) is built, with ``weights`` (a
    weights file such as torchvision's) loaded when given.

    ``checkpoint`` picks the training checkpoint of that epoch of an experiment source
    instead of its final ``model.pt``.
    """
    if is_model_source(source):
        if checkpoint is not None:
            raise UserError(
                "--checkpoint picks a checkpoint of an experiment, not of a model source"
            )
        model = build(str(source), weights=weights)
        path = str(Path(weights).expanduser().resolve()) if weights is not None else None
        return model, {"kind": "build", "source": recorded_source(source), "weights": path}, None
    if weights is not None:
        raise UserError(
            f"--weights goes with a model source such as --from torchvision:resnet50, not {source!r}"
        )
    if isinstance(source, nn.Module) or Path(source).is_file():
        if checkpoint is not None:
            raise UserError(
                "--checkpoint picks a checkpoint of an experiment; with a model file as "
                "--from, pass that checkpoint file itself"
            )
        if isinstance(source, nn.Module):
            return adapt(source), {"kind": "model"}, None
        path = Path(source)
        return load_model(path), {"kind": "checkpoint", "path": str(path.resolve())}, None
    try:
        exp = dbx.open(str(source), repo=repo)
    except UserError as exc:
        raise UserError(
            f"--from {source!r} is neither a checkpoint file nor an experiment ({exc})"
        ) from exc
    attachment = model_attachment(exp, checkpoint)
    model = load_model(exp.attachment_path(attachment))
    info = {"kind": "experiment", "id": exp.id, "name": exp.name, "attachment": attachment}
    if checkpoint is not None:
        info["checkpoint"] = checkpoint
    return model, info, dataset_of(exp.params)


def default_name(cfg: PruneConfig, source: dict[str, Any] | None = None) -> str:
    """``prune/<source>/<method>/<schedule>[/channels-<RATIO>]``: the source experiment's name (with
    ``/epoch-<E>`` for one of its checkpoints), a model file's stem, or ``model``; the schedule
    as normalised; awkward characters as '-'. So runs of different networks never share a
    name, and ``--from base`` after ``prune/base/...`` reads as what it is."""
    source = source or {}
    if source.get("kind") == "experiment":
        origin = source["name"]
        if source.get("checkpoint") is not None:
            origin += f"/epoch-{source['checkpoint']}"
    elif source.get("kind") == "checkpoint":
        origin = Path(source["path"]).stem
    elif source.get("kind") == "build":
        origin = source_label(source["source"])
    else:
        origin = "model"
    parts = [*origin.split("/"), cfg.method, schedules.parse(cfg.schedule).text]
    if cfg.then:
        parts.append(cfg.then.split(",")[0].strip().lower())  # channels:RATIO
    return "/".join(
        ["prune", *(re.sub(r"[^A-Za-z0-9_.-]+", "-", part).lstrip(".") or "-" for part in parts)]
    )


@dataclass
class PreparedRun:
    """A pruning run that passed every check; nothing is written until :meth:`start`.

    ``resume_id`` names the experiment a resumed run continues (None: a new experiment),
    ``state`` is its checked resume state (None: it had not finished its first step's
    selection yet) and ``resume_note`` says where it continues (:func:`resume_point`).
    """

    cfg: PruneConfig
    model: BlockNet
    splits: Any
    plan: RunPlan
    repo: Any
    name: str
    params: dict[str, Any]
    resume_id: str | None = None
    state: dict[str, Any] | None = None
    resume_note: str | None = None

    def start(self, progress: bool = True, announce=None) -> tuple[Any, PruneResult]:
        """Create (or resume) the experiment and run; returns (experiment, result).
        ``announce(exp)`` runs as soon as the experiment exists (a Ctrl-C after that can be
        resumed: the caller may want to say how). Under torchrun only rank 0 has an
        experiment; the other ranks take part in the run and get (None, result)."""
        if not distributed.is_main():
            return None, prune(
                self.model, self.splits, self.cfg, progress=False, plan=self.plan, state=None
            )
        if self.resume_id is not None:
            exp = dbx.resume(self.resume_id, repo=self.repo)
        else:
            exp = dbx.create(self.name, kind="prune", params=self.params, repo=self.repo)
        with exp:
            if announce is not None:
                announce(exp)
            if self.resume_id is None:
                attach_model(exp, self.model, "start.pt")
            result = prune(
                self.model,
                self.splits,
                self.cfg,
                exp=exp,
                state_path=exp.path / STATE_FILE,
                progress=progress,
                plan=self.plan,
                state=self.state,
            )
            exp.results.update(result.summary)
            attach_model(exp, result.model, MODEL_ATTACHMENT)
            exp.flush()
        return exp, result


def prepare_run(
    source: str | Path | nn.Module,
    cfg: PruneConfig,
    *,
    repo: Any = None,
    name: str | None = None,
    dataset: dict[str, Any] | None = None,
    splits=None,
    checkpoint: int | None = None,
    weights: str | Path | None = None,
) -> PreparedRun:
    """Load and check a new pruning run of ``source`` (see :func:`run_experiment`)."""
    cfg.validate()  # settings first: a typo must not wait for a dataset to load
    if name is not None:
        validate_name(name)
    model, source_info, recorded = load_source(source, repo, checkpoint, weights)
    name = validate_name(name or default_name(cfg, source_info))
    given = {k: v for k, v in (dataset or {}).items() if v is not None}
    if recorded is None and "name" not in given:
        raise UserError(
            "the starting model does not record its dataset; pass --dataset (e.g. cifar10)"
        )
    dataset = dataset_record({**(recorded or {}), **given})
    if cfg.selection == "prune" and recorded is not None and not dataset.get("pruning_set"):
        print(
            f"squeezr: warning: --selection prune, but {source_info.get('name', source)} was "
            "trained without a held-out pruning set: the blocks are scored on images it "
            "trained on; train with --pruning-set for an unseen one",
            file=sys.stderr,
        )
    if splits is None:
        splits = open_splits(dataset, cfg.selection)
    if isinstance(task_of(splits), LanguageModelling):
        fit_language_model(model, splits)  # sequence length, vocabulary
    elif source_info["kind"] == "build" and output_size(model) != splits.num_classes:
        raise UserError(
            f"{source} has {output_size(model)} outputs but dataset {dataset['name']!r} has "
            f"{splits.num_classes} classes; fine-tune it first: squeezr train --from {source} "
            "--weights FILE --dataset ..."
        )
    plan = plan_run(model, splits, cfg)
    params = {"prune": cfg.params(), "source": source_info, "dataset": dataset}
    return PreparedRun(cfg, model, splits, plan, repo, name, params)


def open_pruning_run(ref: str, *, repo: Any = None) -> Any:
    """Pruning experiment ``ref`` (read-only); UserError if it is something else."""
    exp = dbx.open(ref, repo=repo)
    if exp.kind != "prune" or "prune" not in exp.params:
        raise UserError(f"experiment {exp.name} ({exp.id}) is not a pruning run; cannot resume")
    return exp


def has_finished(exp: Any) -> bool:
    """Whether pruning run ``exp`` got to the end (its pruned model is attached)."""
    return MODEL_ATTACHMENT in exp.attachments


def resume_point(exp: Any, state: dict[str, Any] | None) -> str:
    """Where a resumed pruning run continues, in words: ``resuming at step 3, fine-tuning
    epoch 7`` (from the run's resume state ``state`` and its fine-tuning loop's own)."""
    if state is None:
        return "resuming at step 1 (no block had been removed yet)"
    stage = state.get("channels") or {}
    if stage.get("start_layers") is not None:  # in the --then channels stage
        step = len(stage["steps"]) + 1
        if not stage.get("pending"):
            return f"resuming at channel step {step} (the block steps are done)"
        return _in_loop(exp, f"channel step {step} (channels cut)", f"prune-channels-step-{step}")
    done = len(state["steps"])
    pending = state.get("pending")
    if not pending:
        return f"resuming at step {done + 1} ({done} step{'s' * (done != 1)} done)"
    step = pending["record"]["step"]
    blocks = pending["record"]["chosen"]
    chosen = f"block{'s' * (len(blocks) != 1)} {', '.join(map(str, blocks))}"
    return _in_loop(exp, f"step {step} ({chosen} removed)", f"prune-step-{step}")


def _in_loop(exp: Any, where: str, prefix: str) -> str:
    """``resuming at <where>``, with the fine-tuning epoch its loop's own resume file (next
    to the state, named by the loop's ``prefix``: squeezr.prune.loop) has reached."""
    for suffix, what in (("-low", "low fine-tuning"), ("", "fine-tuning")):
        path = Path(exp.path) / f"{Path(STATE_FILE).stem}.{prefix}-finetune{suffix}.pt"
        if path.is_file():
            epoch = load_torch_file(path, "fine-tuning resume state", "delete it")["epoch"]
            return f"resuming at {where}, {what} epoch {epoch + 1}"
    return f"resuming at {where}, before its fine-tuning"


def prepare_resume(ref: str, *, repo: Any = None, device: str | None = None) -> PreparedRun:
    """Load and check the continuation of pruning experiment ``ref`` (nothing is written).

    The recorded settings are used; only ``device`` may differ (None: the recorded one), as
    the resume state holds nothing device-specific.
    """
    exp = open_pruning_run(ref, repo=repo)
    if has_finished(exp):
        raise UserError(
            f"pruning run {exp.name} ({exp.id}) has already finished; nothing to resume"
        )
    params = thaw(exp.value("params"))
    cfg = PruneConfig.from_params(params["prune"])
    if device is not None:
        cfg = replace(cfg, device=device)
    dataset = dataset_of(params)
    if dataset is None:
        raise UserError(f"pruning run {exp.name} ({exp.id}) records no dataset; cannot resume")
    cfg.validate()
    state = load_state(exp.path / STATE_FILE, cfg)
    model = load_model(exp.attachment_path("start.pt"))
    splits = open_splits(dataset, cfg.selection)
    if isinstance(task_of(splits), LanguageModelling):
        fit_language_model(model, splits)  # evaluation batches, as the run had them
    plan = plan_run(model, splits, cfg)
    return PreparedRun(
        cfg,
        model,
        splits,
        plan,
        repo,
        exp.name,
        params,
        resume_id=exp.id,
        state=state,
        resume_note=resume_point(exp, state),
    )


def run_experiment(
    source: str | Path | nn.Module,
    cfg: PruneConfig,
    *,
    repo: Any = None,
    name: str | None = None,
    dataset: dict[str, Any] | None = None,
    splits=None,
    progress: bool = True,
    checkpoint: int | None = None,
    weights: str | Path | None = None,
):
    """Prune ``source`` as a new dbx experiment (kind ``prune``); returns (experiment, result).

    ``repo=None`` is the repository dbx finds (``$DBX_REPO`` or the enclosing one), else
    ``./experiments``. ``dataset`` ({"name", "data_dir", "synthetic_size", ...}) overrides
    the options it names of the dataset the source records (a held-out pruning set or a
    ``train_images`` subset stays); ``splits`` may be passed when already loaded (they must
    match that dataset); ``checkpoint`` starts from that epoch's training checkpoint of an
    experiment source; ``weights`` is the weights file of a ``FAMILY:NAME`` source.
    """
    prepared = prepare_run(
        source,
        cfg,
        repo=repo,
        name=name,
        dataset=dataset,
        splits=splits,
        checkpoint=checkpoint,
        weights=weights,
    )
    return prepared.start(progress)
