"""Analysis of finished pruning runs: block rankings and Kendall's tau between them.

Everything here reads what ``squeezr.prune`` logged (``prune/step/<k>`` events), so any run in
a dbx repository can be compared with any other without re-running it. Blocks keep their
original indices for life, which is what makes rankings of different runs comparable. (The
scratch comparisons are training runs: :mod:`squeezr.baselines`.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
from scipy.stats import kendalltau, rankdata

from squeezr.dbx.compare import SHORT_ID
from squeezr.dbx.errors import UserError

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
    return f"{exp.name} ({exp.id[:SHORT_ID]})"


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
