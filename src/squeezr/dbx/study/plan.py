"""Planning: a study's experiments recorded in the repository before anything runs.

Each planned experiment is an ordinary experiment without runs (status ``planned`` in
``dbx ls``) whose ``meta.json`` carries ``study``: the study's name, the stage, the item's
key (stage and rotated values: its identity across edits of the file), the planned params
and the id of the experiment it depends on. Planning again after editing the file compares
the new expansion with these records: new items are recorded, unchanged ones keep their
ids (so regenerated scripts are identical), changed or removed ones that never ran are
re-recorded or deleted, and changed or removed ones that already ran are kept and reported
(``dbx study test`` then shows how they differ from the plan).

Planned records are derived from the study file, so they are written without fsync: a crash
loses at most records that the next ``plan`` writes again.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from squeezr.dbx.compare import same
from squeezr.dbx.errors import UserError
from squeezr.dbx.fileio import locked
from squeezr.dbx.runs import experiment_status
from squeezr.dbx.store import LOCK, MARKER_DIR, Experiment, Repository
from squeezr.dbx.study.expand import expand, render_command
from squeezr.dbx.study.spec import Item, Study

__all__ = ["Change", "existing", "plan", "prefixes", "study_dir", "tag_of", "with_commands"]

PLACEHOLDER_ID = "<planned>"  # the id of an experiment a dry run has not recorded


@dataclass
class Change:
    """One row of ``dbx study plan``: an item and what planning did with it.

    ``change``: ``new`` (recorded now), ``same``, ``changed`` (re-recorded: it had not run),
    ``changed, ran`` (kept: it ran with the earlier plan), ``removed`` (deleted: it had not
    run) or ``removed, ran`` (kept); ``status`` as in ``dbx ls``."""

    item: Item
    change: str
    status: str
    detail: str = ""


def study_dir(repo: Repository, study: Study) -> Path:
    """``<repo>/.dbx/studies/<study>``: the runner's journal, job output, the Optuna study."""
    folder = repo.path / MARKER_DIR / "studies" / study.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def prefixes(study: Study) -> list[str]:
    """The fixed beginnings of the study's experiment names, to list only their subtrees."""
    heads = sorted({stage.experiment.split("{")[0] for stage in study.stages})
    if study.tune is not None:
        heads = sorted({*heads, study.tune.experiment.split("{")[0]})
    kept: list[str] = []
    for head in heads:
        if not any(head.startswith(other) for other in kept):
            kept.append(head)
    return kept


def existing(
    repo: Repository, study: Study, stage: str | None = None
) -> dict[str, list[Experiment]]:
    """The experiments recorded for ``study`` (optionally one stage), by item key, oldest
    first."""
    found: dict[str, list[Experiment]] = {}
    for prefix in prefixes(study):
        for exp in repo.experiments(prefix=prefix or None):
            tag = tag_of(exp)
            if tag is None or tag.get("name") != study.name:
                continue
            if stage is not None and tag.get("stage") != stage:
                continue
            found.setdefault(str(tag.get("key")), []).append(exp)
    for exps in found.values():
        exps.sort(key=lambda e: (str(e.value("created")), e.id))
    return found


def tag_of(exp: Experiment) -> dict[str, Any] | None:
    """The ``study`` record of a planned experiment's ``meta.json`` (None if it has none)."""
    tag = exp._meta.get("study")  # read in place: .meta copies, 10,000 times per plan
    return tag if isinstance(tag, dict) else None


def plan(repo: Repository, study: Study, dry_run: bool = False) -> list[Change]:
    """Record ``study``'s experiments in ``repo`` (unless ``dry_run``) and say, per item,
    what changed since the last plan. Every item gets its id (:data:`PLACEHOLDER_ID` for
    a new one in a dry run); :func:`with_commands` fills in the commands."""
    items = expand(study)
    by_key = {item.key: item for item in items}
    recorded = existing(repo, study)
    changes: list[Change] = []
    for item in items:
        old = recorded.get(item.key, [None])[0]
        dep_id = by_key[item.depends].id if item.depends else None
        change, status, difference = "new", "planned", ""
        if old is not None:
            status = experiment_status(old)
            difference = _difference(old, item, dep_id)
            if not difference:
                change, item.id = "same", old.id
            elif status != "planned":
                change, item.id = "changed, ran", old.id
            else:
                change = "changed"
                if not dry_run:
                    _delete_unrun(old)
        if item.id is None and not dry_run:
            item.id = _record(repo, study, item, dep_id)
        changes.append(Change(item, change, status, difference))
    for key, exps in recorded.items():
        if key in by_key:
            continue
        for old in exps:
            status = experiment_status(old)
            gone = _item_of(old)
            if status == "planned":
                if not dry_run:
                    _delete_unrun(old)
                changes.append(Change(gone, "removed", status))
            else:
                changes.append(Change(gone, "removed, ran", status))
    for item in items:
        if item.id is None:
            item.id = PLACEHOLDER_ID
    return changes


def with_commands(study: Study, items: list[Item]) -> list[Item]:
    """``items`` (all the planned items, with ids) with their commands filled in."""
    by_key = {item.key: item for item in items}
    for item in items:
        item.command = render_command(study, item, by_key)
    return items


def _record(repo: Repository, study: Study, item: Item, dep_id: str | None) -> str:
    tag = {
        "name": study.name,
        "stage": item.stage,
        "key": item.key,
        "params": item.params,
        "depends": dep_id,
    }
    folder = repo.create_experiment(
        item.name, item.kind, item.params, extra={"study": tag}, durable=False
    )
    return folder.name


def _difference(old: Experiment, item: Item, dep_id: str | None) -> str:
    """What differs between a recorded item and its new plan ("" if nothing)."""
    tag = tag_of(old) or {}
    found = []
    if old.name != item.name:
        found.append(f"name {old.name} -> {item.name}")
    planned = tag.get("params") or {}
    for key in sorted(planned.keys() | item.params.keys()):
        if not same(planned.get(key), item.params.get(key)):
            found.append(f"{key} {planned.get(key)!r} -> {item.params.get(key)!r}")
    if dep_id is not None and tag.get("depends") not in (dep_id, None):
        found.append("depends on another experiment")
    return "; ".join(found)


def _item_of(exp: Experiment) -> Item:
    """A removed experiment as a plan row."""
    tag = tag_of(exp) or {}
    return Item(
        stage=str(tag.get("stage")),
        key=str(tag.get("key")),
        name=exp.name,
        kind=exp.kind,
        params=tag.get("params") or {},
        values={},
        id=exp.id,
        command="",
    )


def _delete_unrun(exp: Experiment) -> None:
    """Delete a planned experiment's folder, unless a run started in it meanwhile."""
    with locked(exp.path / LOCK):
        if exp.run_numbers():
            raise UserError(
                f"experiment {exp.id} ({exp.name}) started running while re-planning; "
                "plan again once it has finished"
            )
        shutil.rmtree(exp.path)
