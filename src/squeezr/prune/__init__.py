"""Block-by-block pruning: the greedy loop, its targets and settings, resume, and dbx runs.

``prune(model, splits, cfg)`` is the loop for Python use; ``run_experiment`` wraps it in a dbx
experiment (source model, dataset, events, results, ``model.pt``), as ``squeezr prune`` does.
``plan_run`` is the check both make before any compute is spent.
"""

from squeezr.prune.config import PruneConfig
from squeezr.prune.loop import Accounting, PruneResult, prune
from squeezr.prune.plan import RunPlan, plan_run
from squeezr.prune.state import STATE_FILE, load_state, save_state
from squeezr.prune.targets import Target, make_target, preset_blocks

__all__ = [
    "STATE_FILE",
    "Accounting",
    "PruneConfig",
    "PruneResult",
    "RunPlan",
    "Target",
    "load_state",
    "make_target",
    "plan_run",
    "preset_blocks",
    "prune",
    "save_state",
]
