"""Channel pruning after the block stage: ``--then channels:RATIO`` (combined prunable units).

Once the greedy block loop has reached its target, the remaining network is narrowed: every
group of coupled channels loses RATIO of the channels it had when the stage began, over a
few *channel steps*, under the same fine-tuning schedule, accounting, resume and dbx
records as the block steps. The channels are chosen and removed by Torch-Pruning (the
optional ``channels`` extra, imported only when the stage runs): its dependency graph finds
the channels that must go together — a group's shortcut conv, every block's last conv and
batch norm, the stem, the next layers' inputs and the classifier's inputs — so the residual
additions keep matching shapes and the parameters really leave the network.

Choices (docs/pruning.md, "Channel pruning"):

* **Uniform (local) ratio.** Each coupled group (the residual stream of a stage, the inner
  width of each block) keeps ``width - round(width * r)`` channels, at least one. Comparing
  magnitudes across layers of different scale (global pruning) would hollow some layers out
  first; a uniform ratio keeps the shape of the network and makes RATIO exactly the
  fraction of channels removed (up to rounding per group).
* **Steps.** ``steps=N`` channel steps remove ``r_j = RATIO * j / N`` of the stage's
  starting widths after step ``j``; the default is one step per started tenth
  (``ceil(RATIO / 0.1)``), so no step cuts more than 10% of a layer's channels — small
  steps, as the block stage removes one block at a time.
* **Importance.** ``importance=l2`` (default): the L2 norm of each channel's weights summed
  over its coupled group (Torch-Pruning's ``GroupMagnitudeImportance``, its default
  criterion); ``l1``; ``bn-scale`` (|γ| of the group's batch norms); ``taylor``
  (|weight × gradient| on one batch of the selection set); ``random`` (seeded).
* **Schedule.** The run's ``--schedule`` applies to the channel steps as to the blocks, with
  its positions counting channel steps; the last channel step always fine-tunes (unless
  ``none``). Fine-tuning loops there train the whole network (``--local`` applies to block
  removals only); ``--distill`` keeps its teacher.

Records: ``prune/channels/start`` (the groups, named by their first conv, and their widths),
then ``prune/channels/step/<j>`` (the groups' widths in that order, channels removed,
accuracies before/after fine-tuning, loops, params, MACs, cost) with the loops' events under
``prune/channels/step/<j>/finetune``; widths are lists because layer names hold dots, which
dbx reads as nesting. The network's spec records
the narrowed layers (:class:`squeezr.widths.RecordsWidths`), so it saves, loads,
resumes and exports without Torch-Pruning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from squeezr import saliency
from squeezr.dbx.errors import UserError
from squeezr.prune.strategy_steps import loop_seed
from squeezr.widths import changed_widths, layer_widths

__all__ = [
    "DEFAULT_IMPORTANCE",
    "IMPORTANCES",
    "STAGE",
    "ChannelPlan",
    "ChannelStage",
    "channel_groups",
    "parse",
    "prune_channels",
    "require_torch_pruning",
]

STAGE = "channels"
EXTRA = "squeezr[channels]"
STEP_FRACTION = 0.1
"""Default step size: one channel step per started tenth of RATIO."""
MAX_STEPS = 100
DEFAULT_IMPORTANCE = "l2"
IMPORTANCES = {
    "l2": "L2 norm of each channel's weights over its coupled group (Torch-Pruning's default)",
    "l1": "L1 norm of each channel's weights over its coupled group",
    "bn-scale": "|gamma| of the group's batch norms",
    "taylor": "|weight x gradient| over the group, on one batch of the selection set",
    "random": "seeded random order",
}
SYNTAX = "channels:RATIO[,steps=N][,importance=l2|l1|bn-scale|taylor|random]"


@dataclass(frozen=True)
class ChannelPlan:
    """The channel stage: remove ``ratio`` of every coupled group's channels in ``steps``."""

    ratio: float
    steps: int
    importance: str = DEFAULT_IMPORTANCE

    @property
    def text(self) -> str:
        """The canonical ``--then`` string (as recorded in the experiment's params)."""
        return f"{STAGE}:{self.ratio:g},steps={self.steps},importance={self.importance}"

    def fraction(self, j: int) -> float:
        """The fraction of the starting channels removed once channel step ``j`` is done."""
        return self.ratio * j / self.steps

    def describe(self) -> str:
        """The plan line's words for the stage."""
        steps = f"{self.steps} step{'s' * (self.steps != 1)}"
        return f"then remove {self.ratio:.0%} of the channels in {steps} ({self.importance})"


def parse(text: str) -> ChannelPlan:
    """``--then channels:RATIO[,steps=N][,importance=NAME]`` → :class:`ChannelPlan`;
    UserError (one line, with the syntax) for anything else."""
    stage, _, rest = str(text).strip().lower().partition(":")
    if stage != STAGE:
        raise UserError(f"--then {text!r}: the stage after block pruning is {SYNTAX}")
    ratio_text, *options = [part.strip() for part in rest.split(",")]
    try:
        ratio = float(ratio_text)
    except ValueError:
        ratio = math.nan
    if not 0 < ratio < 1:
        raise UserError(
            f"--then {text!r}: RATIO is the fraction of channels to remove, between 0 and 1 "
            "(e.g. channels:0.3)"
        )
    steps, importance = None, DEFAULT_IMPORTANCE
    for option in options:
        key, _, value = option.partition("=")
        if key == "steps":
            steps = int(value) if value.isdigit() else 0
            if not 1 <= steps <= MAX_STEPS:
                raise UserError(f"--then {text!r}: steps must be a whole number 1..{MAX_STEPS}")
        elif key == "importance":
            if value not in IMPORTANCES:
                raise UserError(
                    f"--then {text!r}: unknown importance {value!r}; use one of "
                    + ", ".join(IMPORTANCES)
                )
            importance = value
        else:
            raise UserError(f"--then {text!r}: unknown option {option!r}; use {SYNTAX}")
    if steps is None:
        steps = math.ceil(ratio / STEP_FRACTION - 1e-9)
    return ChannelPlan(ratio, steps, importance)


def require_torch_pruning() -> Any:
    """The ``torch_pruning`` module, or a one-line UserError naming the extra to install."""
    try:
        import torch_pruning
    except ImportError:
        raise UserError(
            f"--then channels needs Torch-Pruning: pip install '{EXTRA}' "
            "(or pip install torch-pruning)"
        ) from None
    return torch_pruning


def removed_count(width: int, fraction: float) -> int:
    """Channels a group of ``width`` has lost at ``fraction`` removed (rounded half up)."""
    return math.floor(width * fraction + 0.5)


def check_plan(plan: ChannelPlan, model: nn.Module) -> None:
    """UserError unless every channel group of ``model`` keeps a channel and the stage
    removes something (checked on the starting model: block removal keeps widths)."""
    if not hasattr(model, "record_widths"):
        raise UserError(
            f"--then channels: {type(model).__name__} networks cannot record narrowed layers "
            "in their spec (a family opts in with squeezr.widths.RecordsWidths)"
        )
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    narrowest, widest = min(widths), max(widths)
    if narrowest - removed_count(narrowest, plan.ratio) < 1:
        raise UserError(
            f"--then {plan.text}: a group of {narrowest} channels would keep none; "
            f"give a RATIO below {(narrowest - 0.5) / narrowest:.4g}"
        )
    if removed_count(widest, plan.fraction(1)) < 1:
        raise UserError(
            f"--then {plan.text}: the first step removes no channel even from a group of "
            f"{widest}; give a larger RATIO or fewer steps"
        )


# -- Torch-Pruning ------------------------------------------------------------------------


def _dependency_graph(model: nn.Module, example: torch.Tensor) -> Any:
    """Torch-Pruning's dependency graph of ``model``, traced in eval mode (the trace's
    forward pass must not move the batch norms' running statistics)."""
    tp = require_torch_pruning()
    training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(model, example_inputs=example)
    finally:
        model.train(training)


def _groups(model: nn.Module, graph: Any) -> list[tuple[str, Any]]:
    """``(key, group)`` for every group of coupled conv output channels, in forward order;
    the key is the first conv (in ``named_modules`` order) whose outputs the group prunes,
    stable across rebuilds and resumes. The classifier's outputs are never a group (only
    convolutions root groups); its inputs go with the last group."""
    order = {module: (n, name) for n, (name, module) in enumerate(model.named_modules())}
    out = []
    for group in graph.get_all_groups(root_module_types=[nn.Conv2d]):
        convs = [
            order[dep.target.module]
            for dep, _ in group
            if isinstance(dep.target.module, nn.Conv2d)
            and graph.is_out_channel_pruning_fn(dep.handler)
        ]
        out.append((min(convs), group))
    return [(name, group) for (_, name), group in sorted(out, key=lambda item: item[0])]


def channel_groups(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """The coupled channel groups of ``model`` and their widths, by key (see :func:`_groups`)."""
    graph = _dependency_graph(model, example)
    return {key: len(group[0].idxs) for key, group in _groups(model, graph)}


def _importance(name: str) -> Any:
    tp = require_torch_pruning()
    return {
        "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "bn-scale": tp.importance.BNScaleImportance,
        "taylor": tp.importance.GroupTaylorImportance,
    }[name]()


def prune_channels(
    model: nn.Module,
    example: torch.Tensor,
    keep: dict[str, int],
    importance: str = DEFAULT_IMPORTANCE,
    *,
    batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    generator: torch.Generator | None = None,
) -> dict[str, int]:
    """Narrow each channel group ``keep`` names to that many channels, in place, keeping
    the most important ones; returns every group's width afterwards.

    ``example`` is an input batch for tracing; ``batch`` (inputs, targets) feeds the
    ``taylor`` criterion's one forward/backward pass of ``loss``; ``generator`` draws
    ``random`` scores.
    All groups are scored before any is pruned, so the order of groups does not matter.
    """
    graph = _dependency_graph(model, example)
    groups = _groups(model, graph)
    unknown = set(keep) - {key for key, _ in groups}
    if unknown:
        raise UserError(f"no channel group named {sorted(unknown)[0]!r} in this network")
    if importance == "taylor":
        if batch is None:
            raise UserError("the taylor importance needs a batch of the selection set")
        training = model.training
        model.eval()
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss(model(batch[0]), batch[1]).backward()
        model.train(training)
    scorer = _importance(importance) if importance != "random" else None
    chosen = []
    with torch.no_grad():
        for key, group in groups:
            width = len(group[0].idxs)
            drop = width - keep.get(key, width)
            if drop <= 0:
                continue
            if scorer is None:
                scores = torch.rand(width, generator=generator, dtype=torch.float64)
            else:
                scores = scorer(group).detach().double().cpu()
            # A stable sort: equal scores (e.g. all-zero channels) go in channel order.
            order = torch.sort(scores, stable=True).indices[:drop]
            chosen.append((group, sorted(order.tolist())))
    for group, idxs in chosen:
        root = group[0].dep
        graph.get_pruning_group(root.target.module, root.handler, idxs).prune()
    if importance == "taylor":
        model.zero_grad(set_to_none=True)
    return {key: len(group[0].idxs) for key, group in _groups(model, graph)}


# -- the stage in the pruning loop ---------------------------------------------------------


class ChannelStage:
    """The channel steps of one pruning run, driven by the loop's ``_Pruner`` (its model,
    data, schedule, accounting, ``_fit``, ``_eval``, ``_log`` and ``_save``).

    Its :meth:`state` goes into the run's resume state: the stage's starting widths (layers
    and groups), the completed channel steps and the one in progress (``pending``: its
    record and finished loops), so a run killed anywhere in the stage continues where it was.
    """

    def __init__(self, pruner: Any, plan: ChannelPlan) -> None:
        self.pruner, self.plan = pruner, plan
        self.steps: list[dict[str, Any]] = []
        self.pending: dict[str, Any] | None = None
        self.start_layers: dict[str, list[int]] | None = None
        self.start_groups: dict[str, int] | None = None
        self._clock = time.perf_counter()

    def state(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "pending": self.pending,
            "start_layers": self.start_layers,
            "start_groups": self.start_groups,
        }

    def restore(self, state: dict[str, Any] | None) -> None:
        state = state or {}
        self.steps = list(state.get("steps") or [])
        self.pending = state.get("pending")
        self.start_layers = state.get("start_layers")
        self.start_groups = state.get("start_groups")

    def _example(self) -> torch.Tensor:
        """One selection-set input, prepared as the model sees it (for tracing)."""
        p = self.pruner
        return saliency.prepare(p.data.x[:1], p.ctx)

    def _sizes(self) -> dict[str, Any]:
        return self.pruner.accounting.sizes(self.pruner.model)

    def begin(self) -> None:
        """Record the widths the stage starts from (``prune/channels/start``)."""
        p = self.pruner
        self.start_layers = layer_widths(p.model)
        self.start_groups = channel_groups(p.model, self._example())
        p._log(
            "prune/channels/start",
            {
                "then": self.plan.text,
                "ratio": self.plan.ratio,
                "steps": self.plan.steps,
                "importance": self.plan.importance,
                "groups": list(self.start_groups),
                "widths": list(self.start_groups.values()),
                "channels": sum(self.start_groups.values()),
                **self._sizes(),
            },
        )
        p._save()

    def run(self) -> list[dict[str, Any]]:
        """Run the remaining channel steps; returns all of the stage's step records."""
        if self.start_layers is None:
            self.begin()
        while len(self.steps) < self.plan.steps:
            j = len(self.steps) + 1
            record = self.step(j)
            self.steps.append(record)
            self.pruner._log(f"prune/channels/step/{j}", record)
            self.pruner._save()
        return self.steps

    def _save_pending(self) -> None:
        now = time.perf_counter()
        self.pending["seconds"] += now - self._clock
        self._clock = now
        self.pruner._save()

    def _select(self, j: int) -> None:
        """Phase 1 of channel step ``j``: narrow every group, evaluate; saved as pending."""
        p, plan = self.pruner, self.plan
        fraction = plan.fraction(j)
        keep = {k: w - removed_count(w, fraction) for k, w in self.start_groups.items()}
        batch = None
        if plan.importance == "taylor":
            pick = torch.randperm(len(p.data), generator=p.ctx.generator)[: p.ctx.grad_batch_size]
            task = p.ctx.task
            batch = (
                saliency.prepare(p.data.x[pick], p.ctx),
                task.targets(p.data.y[pick], p.device),
            )
        groups = prune_channels(
            p.model,
            self._example(),
            keep,
            plan.importance,
            batch=batch,
            loss=p.ctx.task.loss,
            generator=p.ctx.generator,
        )
        p.model.record_widths(changed_widths(self.start_layers, p.model))
        p._place()
        start = sum(self.start_groups.values())
        record = {
            "step": j,
            "stage": STAGE,
            "fraction": fraction,
            "widths": [groups[key] for key in self.start_groups],
            "channels": sum(groups.values()),
            "channels_removed_pct": 100.0 * (1 - sum(groups.values()) / start),
            "config": list(p.model.config),
            **{f"{name}_before": v for name, v in p._eval().items()},
        }
        self.pending = {"record": record, "loops": {}, "seconds": 0.0}
        self._save_pending()

    def _loop(self, j: int, loop: str, epochs: int) -> tuple[dict[str, Any], dict[str, float]]:
        """One fine-tuning loop of channel step ``j`` (seeded apart from every block loop)."""
        p = self.pruner
        prefix = f"prune/channels/step/{j}/finetune" + ("/low" if loop == "low" else "")
        seed = loop_seed(p.cfg.seed, len(p.steps) + j, loop)
        return p._fit(prefix, p.cfg.train_config(epochs, seed=seed), local=False)

    def step(self, j: int) -> dict[str, Any]:
        """Run channel step ``j`` to its end (continuing the pending one after a resume)."""
        p = self.pruner
        self._clock = time.perf_counter()
        if self.pending is None:
            self._select(j)
        pending = self.pending
        record, loops = pending["record"], pending["loops"]
        after = {"val_acc": record["val_acc_before"], "test_acc": record["test_acc_before"]}
        if p.schedule.low_epochs:
            if "low" not in loops:
                loops["low"], pending["after_low"] = self._loop(j, "low", p.schedule.low_epochs)
                self._save_pending()
            after = pending["after_low"]
        last = j == self.plan.steps
        reason = p.schedule.high_loop(j - 1, j, self.plan.steps, last, after["val_acc"], p.ref_acc)
        if reason is not None:
            loops["high"], after = self._loop(j, "high", p.cfg.epochs)
            p.ref_acc = after["val_acc"]
        p.close_step(record, after, reason, loops, pending["seconds"], self._clock)
        self.pending = None
        return record

    def summary(self) -> dict[str, Any]:
        """What the stage changes in the run's results (after the block stage's summary)."""
        p, last = self.pruner, self.steps[-1]
        return {
            "then": self.plan.text,
            "channel_steps": len(self.steps),
            "channels_removed_pct": last["channels_removed_pct"],
            "channel_widths": last["widths"],
            "final_val_acc": last["val_acc_after"],
            "final_test_acc": last["test_acc_after"],
            **self._sizes(),
            **p._totals(),
            "seconds": p.accounting.seconds,
        }
