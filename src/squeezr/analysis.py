"""Analysis of finished pruning runs: block rankings, Kendall's tau, scratch baselines.

Everything here reads what ``squeezr.prune`` logged (``prune/step/<k>`` events), so any run in
a dbx repository can be compared with any other without re-running it. Blocks keep their
original indices for life, which is what makes rankings of different runs comparable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
from scipy.stats import kendalltau, rankdata

from squeezr import dbx
from squeezr.dbx.store import validate_name
from squeezr.dbx.views import thaw
from squeezr.errors import UserError
from squeezr.models import ResNet, load_model
from squeezr.prune.records import dataset_of, open_splits
from squeezr.train import TrainConfig, fit, resolve_device, seed_everything

_STEP = re.compile(r"prune/step/(\d+)")


def step_records(exp) -> list[dict[str, Any]]:
    """The ``prune/step/<k>`` records of an experiment in step order (merged across runs, so a
    resumed run's repeated step counts once, newest data winning)."""
    merged = exp.merged_events()
    steps = {int(m.group(1)): data for name, data in merged.items() if (m := _STEP.fullmatch(name))}
    if not steps:
        raise UserError(
            f"experiment {exp.name} ({exp.id}) has no pruning steps; is it a prune run?"
        )
    return [steps[k] for k in sorted(steps)]


def ranking(records: Sequence[dict[str, Any]], step: int | None = None) -> dict[int, float]:
    """Rank of every block at step ``k`` (default: the last): 0 = removed first.

    Removed blocks come first in removal order, then the blocks remaining at step k ordered
    by that step's saliency (lowest = next to go); equal saliencies share their average rank.
    """
    k = len(records) if step is None else step
    if not 1 <= k <= len(records):
        raise UserError(f"--step must be between 1 and {len(records)} for this run (got {k})")
    order = [b for record in records[: k - 1] for b in record["chosen"]]
    scores = {int(b): float(s) for b, s in records[k - 1]["saliency"].items()}
    rest = [b for b in sorted(scores) if b not in order]
    ranks: dict[int, float] = {b: float(i) for i, b in enumerate(order)}
    tied = rankdata([scores[b] for b in rest], method="average")
    ranks.update({b: len(order) + float(r) - 1 for b, r in zip(rest, tied, strict=True)})
    return ranks


def ranking_table(exps: Iterable, step: int | None = None) -> pd.DataFrame:
    """The rankings of runs at ``step`` (default: each run's last) as one row per run and
    block, best-ranked first: ``run``, ``rank``, ``block``, ``removed_at`` (the step that
    removed it, before step k) and ``saliency`` (its score at step k, if still there)."""
    rows = []
    for exp in exps:
        records = step_records(exp)
        ranks = ranking(records, step)
        k = len(records) if step is None else step
        removed_at = {b: r["step"] for r in records[: k - 1] for b in r["chosen"]}
        scores = records[k - 1]["saliency"]
        for block in sorted(ranks, key=lambda b: (ranks[b], b)):
            rows.append(
                {
                    "run": _label(exp),
                    "rank": ranks[block],
                    "block": block,
                    "removed_at": removed_at.get(block),
                    "saliency": scores.get(str(block)),
                }
            )
    # object columns keep "not removed" / "no score" as None (null in JSON, blank in a table)
    columns = ["run", "rank", "block", "removed_at", "saliency"]
    return pd.DataFrame(rows, columns=columns, dtype=object)


def _label(exp) -> str:
    return f"{exp.name} ({exp.id[:8]})"


def kendall_tau(a: dict[int, float], b: dict[int, float]) -> float:
    """Kendall's tau-b between two rankings of the same blocks (ties handled by tau-b)."""
    if set(a) != set(b):
        raise UserError(
            "rankings cover different blocks; compare runs that started from the same network"
        )
    blocks = sorted(a)
    return float(kendalltau([a[x] for x in blocks], [b[x] for x in blocks]).statistic)


def tau_matrix(exps: Iterable, step: int | None = None) -> pd.DataFrame:
    """Kendall's tau between the rankings of every pair of runs at ``step`` (default: last).

    Rows and columns are labelled ``name (id prefix)``; the diagonal is 1.
    """
    exps = list(exps)
    if len(exps) < 2:
        raise UserError("compare needs at least two pruning experiments")
    labels = [_label(e) for e in exps]
    ranks = [ranking(step_records(e), step) for e in exps]
    rows = [[kendall_tau(r, s) for s in ranks] for r in ranks]
    return pd.DataFrame(rows, index=labels, columns=labels)


def equal_config(blocks: int) -> tuple[int, int, int]:
    """The standard equal-groups shape (n, n, n) closest to ``blocks`` blocks in all."""
    n = max(round(blocks / 3), 1)
    return (n, n, n)


STEP_LEGEND = (
    "val_before: validation accuracy right after removing the block(s); val_after/test_after: "
    "after fine-tuning\n(best epoch restored); finetune: why a loop ran (scheduled, threshold, "
    "final) and its epochs kept/run\n('+' joins a low and a high loop); cost: epoch-parameters "
    "so far (sum over loops of epochs kept x parameters)."
)


def _acc(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def step_rows(initial: dict[str, Any], steps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-step table printed by ``squeezr prune`` and ``squeezr demo`` (step 0 = start);
    :data:`STEP_LEGEND` explains its columns."""
    rows = [
        {
            "step": 0,
            "removed": 0,
            "blocks": "",
            "val_before": _acc(initial.get("val_acc")),
            "val_after": _acc(initial.get("val_acc")),
            "test_after": _acc(initial.get("test_acc")),
            "params_removed_%": 0.0,
            "finetune": "",
            "cost": 0,
        }
    ]
    for s in steps:
        loops = s.get("loops", {})
        epochs = "+".join(f"{loops[k]['best_epoch']}/{loops[k]['epochs']}" for k in loops)
        why = s["finetune"] or ("low" if loops else "")
        rows.append(
            {
                "step": s["step"],
                "removed": s["blocks_removed"],
                "blocks": ",".join(map(str, s["chosen"])),
                "val_before": _acc(s["val_acc_before"]),
                "val_after": _acc(s["val_acc_after"]),
                "test_after": _acc(s["test_acc_after"]),
                "params_removed_%": round(s["params_removed_pct"], 1),
                "finetune": f"{why} {epochs}".strip(),
                "cost": s["cost"],
            }
        )
    return rows


# --------------------------------------------------------------------------- scratch baselines


def pruned_spec(exp) -> dict[str, Any]:
    """The shape (``ResNet.spec()``) of an experiment's ``model.pt``, e.g. a pruned network:
    removed blocks included, so leftover downsampling shortcuts are part of the shape."""
    return load_model(exp.attachment_path("model.pt")).spec()


def training_epochs(exp, repo: Any = None) -> int | None:
    """The training budget behind an experiment: its own ``train.epochs``, or that of the
    experiment a pruning run started from; None when neither is recorded."""
    params = thaw(exp.params)
    epochs = params.get("train", {}).get("epochs")
    source = params.get("source", {})
    if epochs is None and source.get("kind") == "experiment":
        epochs = thaw(dbx.open(source["id"], repo=repo).params).get("train", {}).get("epochs")
    return int(epochs) if epochs is not None else None


def scratch_model(spec: dict[str, Any], equal: bool, seed: int) -> ResNet:
    """A freshly initialised network for the scratch comparison (seeded): the exact shape
    ``spec`` describes (shortcuts of removed downsampling blocks kept), or with ``equal`` the
    standard (n, n, n) ResNet with about as many blocks."""
    seed_everything(seed)
    if equal:
        return ResNet(equal_config(sum(spec["remaining_config"])), num_classes=spec["num_classes"])
    return ResNet.from_spec(spec)


def train_scratch(
    like: str,
    *,
    repo: Any = None,
    equal: bool = False,
    epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
    name: str | None = None,
    progress: bool = True,
):
    """Train the shape of experiment ``like``'s model from a random init (spec section 7).

    ``equal`` trains the standard (n, n, n) shape with about as many blocks instead. The
    budget defaults to the epochs that trained the network ``like`` was pruned from, so both
    arms of the comparison get the same number of epochs. Returns (experiment, FitResult).
    """
    source = dbx.open(like, repo=repo)
    spec = pruned_spec(source)
    if epochs is None:
        epochs = training_epochs(source, repo)
        if epochs is None:
            raise UserError(f"{source.name} records no training budget; pass --epochs")
    dataset = dataset_of(source.params)
    if dataset is None:
        raise UserError(f"{source.name} records no dataset; it is not a squeezr run")
    cfg = TrainConfig(epochs=epochs, seed=seed, device=device)
    resolve_device(cfg.device)  # an unusable device fails before the experiment exists
    model = scratch_model(spec, equal, seed)
    arch = "equal" if equal else "pruned-shape"
    shape = "-".join(map(str, model.config))
    name = validate_name(name or f"scratch/{arch}/{shape}/{seed}")
    splits = open_splits(dataset)
    params = {
        "arch": arch,
        "config": list(model.config),
        "spec": model.spec(),
        "dataset": dataset,
        "like": {"id": source.id, "name": source.name},
        "train": cfg.to_dict(),
    }
    exp = dbx.create(name, kind="train", params=params, repo=repo)
    with exp:
        result = fit(model, splits, cfg, exp=exp, progress=progress)  # attaches model.pt
    return exp, result
