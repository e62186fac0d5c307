"""The greedy block-by-block pruning loop (spec sections 3-5) and its accounting.

One step: score the remaining blocks (``saliency``), remove the lowest ``blocks_per_step``,
evaluate, fine-tune if the schedule says so (``schedules``; ``train.fit`` restores the
best-validation epoch), account parameters, MACs, epochs and epoch-parameter cost, log it all
as the dbx event ``prune/step/<k>``, and save a resume state atomically.

With ``--then channels:RATIO`` the run goes on, once the block target is reached, with the
channel steps of :mod:`squeezr.prune.channels` (its own events, same schedule, accounting
and resume state).

Resume: the state is saved after every completed step and also *within* a step, once the
blocks are chosen and removed and again after a low fine-tuning loop. A run killed during
fine-tuning therefore continues with the blocks it had already chosen (on a GPU the bf16
oracle is not bit-reproducible, so choosing again could pick another block) and the loop's
own per-epoch resume file. Every random number comes from state that is saved, so on CPU a
resumed run ends exactly as an uninterrupted run would.

Under torchrun every rank runs the loop (scoring and fine-tuning are data-parallel); rank 0
alone writes the state and the events, reads the state back on resume, and decides: the
scores every rank removes blocks by are rank 0's, broadcast.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from squeezr import distributed, saliency
from squeezr.blocknet import BlockNet, count_macs, count_params, from_spec
from squeezr.dbx.errors import UserError
from squeezr.dbx.progress import progress_bar
from squeezr.prune import channels
from squeezr.prune.config import PruneConfig
from squeezr.prune.distill import Teacher
from squeezr.prune.freezing import train_only
from squeezr.prune.plan import RunPlan, plan_run
from squeezr.prune.replace import window_oracle
from squeezr.prune.state import STATE_VERSION, load_state, save_state
from squeezr.prune.strategy_steps import SKIPPED_LOOP, StrategySteps
from squeezr.schedules import FINAL
from squeezr.tasks import LanguageModelling, task_of
from squeezr.train import evaluate, fit


@dataclass
class Accounting:
    """Running totals: the spec's cost is epoch-parameters, Σ loops (epochs up to the restored
    best epoch × parameters during that loop); epochs actually run are kept as well."""

    initial_params: int
    initial_macs: int
    epochs_used: int = 0
    epochs_run: int = 0
    cost: int = 0
    seconds: float = 0.0
    teacher_epochs: float = 0.0  # distillation: teacher forward passes, in training-set epochs
    teacher_cost: float = 0.0  # ... times the teacher's parameters (epoch-parameters)

    def add_loop(self, epochs_used: int, epochs_run: int, params: int) -> int:
        """Book one fine-tuning loop; returns its epoch-parameter cost."""
        loop_cost = epochs_used * params
        self.epochs_used += epochs_used
        self.epochs_run += epochs_run
        self.cost += loop_cost
        return loop_cost

    def sizes(self, model: BlockNet) -> dict[str, Any]:
        params, macs = count_params(model), count_macs(model)
        return {
            "params": params,
            "macs": macs,
            "params_removed_pct": 100.0 * (1 - params / self.initial_params),
            "macs_removed_pct": 100.0 * (1 - macs / self.initial_macs),
        }


@dataclass
class PruneResult:
    """The pruned model, one record per step (as logged), and the summary (as results)."""

    model: BlockNet
    steps: list[dict[str, Any]]
    summary: dict[str, Any]
    initial: dict[str, Any] = field(default_factory=dict)
    channel_steps: list[dict[str, Any]] = field(default_factory=list)  # --then channels


def place(model: BlockNet, device: torch.device) -> BlockNet:
    """Put ``model`` on ``device`` as the whole run uses it: channels_last on CUDA (what the
    trainer's fast path and the oracle's NHWC inputs run fastest with)."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def _evaluate(model: BlockNet, splits, cfg: PruneConfig, device: torch.device) -> dict[str, float]:
    """Validation and test accuracy in fp32 on every device, as the trainer measures the
    results it records, so a step's numbers compare with its source's ``best_val_acc`` /
    ``test_acc`` (only the oracle's candidate scores use bf16)."""

    def accuracy(split) -> float:
        return evaluate(
            model,
            split,
            batch_size=cfg.eval_batch_size,
            device=device,
            task=task_of(splits),
        )

    scores = {"val_acc": accuracy(splits.val), "test_acc": accuracy(splits.test)}
    if isinstance(task_of(splits), LanguageModelling):
        scores["val_ppl"] = _perplexity(model, splits, splits.val, cfg, device)
        scores["test_ppl"] = _perplexity(model, splits, splits.test, cfg, device)
    return scores


@torch.no_grad()
def _perplexity(model: BlockNet, splits, split, cfg: PruneConfig, device: torch.device) -> float:
    """exp(mean token NLL) of a language model on ``split`` (fp32, eval mode): what a
    language model's pruning is judged by; the recorded accuracy is next-token accuracy."""
    task, was_training = task_of(splits), model.training
    batch = min(cfg.eval_batch_size, task.max_batch or cfg.eval_batch_size)
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    try:
        for i in range(0, len(split), batch):
            x = task.prepare(split.x[i : i + batch], device)
            sums, counts = task.score(model(x), task.targets(split.y[i : i + len(x)], device))
            total += sums.sum()
            count += counts.sum()
    finally:
        model.train(was_training)
    return math.exp(float(total / count))


class _Pruner(StrategySteps):
    """State of one pruning run; ``run`` drives it step by step.

    ``pending`` is the step in progress once its blocks are removed: its partial record,
    the fine-tuning loops finished so far and the seconds spent; it is saved with the state
    so that a resumed run finishes that step instead of choosing again.
    """

    def __init__(self, model, splits, plan: RunPlan, exp, state_path, progress, teacher=None):
        cfg = plan.cfg
        self.model, self.splits, self.cfg, self.exp = model, splits, cfg, exp
        self.schedule, self.device, self.total, self.data = (
            plan.schedule,
            plan.device,
            plan.total,
            plan.data,
        )
        self.state_path = state_path
        self.progress = progress
        self.ctx = saliency.SaliencyContext(
            task=task_of(splits),
            device=self.device,
            batch_size=cfg.eval_batch_size,
            grad_batch_size=cfg.batch_size,
            generator=torch.Generator().manual_seed(cfg.seed),
            progress=progress,
        )
        self.steps: list[dict[str, Any]] = []
        self.cached_scores: dict[int, float] | None = None
        self.initial: dict[str, Any] = {}
        self.ref_acc = math.nan
        self.accounting = Accounting(count_params(model), count_macs(model))
        self.pending: dict[str, Any] | None = None
        self._clock = time.perf_counter()
        self.plan = plan
        self.teacher = teacher
        self.aside: dict[int, torch.nn.Module] = {}  # removed blocks waiting to be phased out
        self.aside_order: list[int] = []
        self.since_loop: list[int] = []  # blocks removed since the last fine-tuning loop
        self.channels = channels.ChannelStage(self, channels.parse(cfg.then)) if cfg.then else None

    # -- state -----------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "config": self.cfg.params(),
            "model_spec": self.model.spec(),
            "model_state": self.model.state_dict(),
            "steps": self.steps,
            "pending": self.pending,
            "initial": self.initial,
            "accounting": asdict(self.accounting),
            "ref_acc": self.ref_acc,
            "cached_scores": self.cached_scores,
            "rng_torch": torch.get_rng_state(),
            "rng_generator": self.ctx.generator.get_state(),
            "aside": {i: block.state_dict() for i, block in self.aside.items()},
            "aside_order": self.aside_order,
            "since_loop": self.since_loop,
            "channels": self.channels.state() if self.channels is not None else None,
        }

    def _save(self) -> None:
        if self.state_path is not None:
            save_state(self.state_path, self._state())

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (as :func:`squeezr.prune.state.load_state` checked it)."""
        self.model = from_spec(state["model_spec"])
        self.model.load_state_dict(state["model_state"])
        self.steps = list(state["steps"])
        self.pending = state["pending"]
        self.initial = dict(state["initial"])
        self.accounting = Accounting(**state["accounting"])
        self.ref_acc = float(state["ref_acc"])
        cached = state["cached_scores"]
        self.cached_scores = None if cached is None else {int(k): v for k, v in cached.items()}
        torch.set_rng_state(state["rng_torch"])
        self.ctx.generator.set_state(state["rng_generator"])
        self.aside = {}
        for i, weights in state["aside"].items():
            self.aside[int(i)] = self.model.new_block(int(i))
            self.aside[int(i)].load_state_dict(weights)
        self.aside_order = list(state["aside_order"])
        self.since_loop = list(state["since_loop"])
        if self.channels is not None:
            self.channels.restore(state.get("channels"))

    def _log(self, name: str, data: dict[str, Any]) -> None:
        if self.exp is not None:
            self.exp.log(name, data)

    # -- steps -----------------------------------------------------------------------

    def start(self) -> None:
        """Evaluate and record the starting model (step 0)."""
        place(self.model, self.device)
        self.initial = {
            "blocks": len(self.model.block_ids()),
            "config": list(self.model.config),
            **_evaluate(self.model, self.splits, self.cfg, self.device),
            **self.accounting.sizes(self.model),
        }
        self.ref_acc = self.initial["val_acc"]
        self._log("prune/initial", self.initial)

    def removed(self) -> list[int]:
        """Blocks removed by the completed steps, in removal order."""
        return [b for step in self.steps for b in step["chosen"]]

    def done(self) -> bool:
        return self.cfg.target.reached(self.model, len(self.removed()), self.total)

    def _scores(self, k: int) -> tuple[dict[int, float], bool]:
        every = self.cfg.recompute_every
        fresh = self.cached_scores is None or (every > 0 and (k - 1) % every == 0)
        if fresh and self.cfg.replace:
            self.cached_scores = window_oracle(self.model, self.data, self.ctx, self.cfg.replace)
        elif fresh:
            self.cached_scores = saliency.compute(self.cfg.method, self.model, self.data, self.ctx)
        if fresh:  # one choice for all ranks
            self.cached_scores = distributed.broadcast_object(self.cached_scores)
        remaining = set(self.model.block_ids())
        return {b: s for b, s in self.cached_scores.items() if b in remaining}, fresh

    def _remove(self, scores: dict[int, float], k: int) -> list[int]:
        """Remove this step's blocks, lowest score first; returns them in removal order.

        With a block-count target the last step removes only what is left to remove; with a
        budget the step stops as soon as the model fits the budget. Phased pruning keeps
        the removed blocks aside (:mod:`squeezr.prune.phasing` puts them back to fade out).
        """
        count = self.cfg.blocks_per_step
        if self.total is not None:
            count = min(count, self.total - len(self.removed()))
        chosen = []
        for block in saliency.lowest(scores, count):
            if self.cfg.phase:
                self.aside[block] = self.model.block(block)
                self.aside_order.append(block)
            self.model.remove_block(block)
            chosen.append(block)
            if self.cfg.target.is_budget and self.cfg.target.budget_met(self.model):
                break
        return chosen

    def _select(self, k: int) -> None:
        """Phase 1 of step ``k``: score, remove, evaluate; saved as the pending step."""
        before = len(self.removed())
        scores, fresh = self._scores(k)
        extra: dict[str, Any] = {}
        candidates = scores
        if self.cfg.equalise:
            candidates, extra["group"] = self._equalise(scores)
        if self.cfg.replace:
            window = self._replace(candidates, k)
            chosen = window[1:]
            extra.update(replaced=window, new_block=window[0], init=self.cfg.replace_init)
        else:
            chosen = self._remove(candidates, k)
        self.since_loop += extra.get("replaced", chosen)
        record = {
            "step": k,
            "chosen": chosen,
            "blocks_removed": before + len(chosen),
            "saliency": {str(b): s for b, s in scores.items()},
            "saliency_fresh": fresh,
            **extra,
            "config": list(self.model.config),
            **{f"{name}_before": v for name, v in self._eval().items()},
        }
        self.pending = {"record": record, "loops": {}, "seconds": 0.0}
        self._save_pending()

    def _save_pending(self) -> None:
        now = time.perf_counter()
        self.pending["seconds"] += now - self._clock
        self._clock = now
        self._save()

    def _fit(
        self, prefix: str, train_cfg, *, local: bool, scales=None, on_epoch_end=None
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """Run one loop through ``train.fit`` with the run's strategies (local training,
        distillation, phase scales) and book it."""
        trained = None
        if local and self.cfg.local is not None:
            trained = self._neighbours()
            if not trained:
                return {**SKIPPED_LOOP, "epochs": train_cfg.epochs}, self._eval()
            train_cfg = replace(train_cfg, freeze_classifier=False)  # the head is frozen anyway
        params = count_params(self.model)
        scope = train_only(self.model, trained) if trained else contextlib.nullcontext()
        with scope:
            result = fit(
                self.model,
                self.splits,
                train_cfg,
                exp=self.exp,
                prefix=prefix,
                resume_path=self._loop_resume_file(prefix),
                progress=self.progress,
                scales=scales,
                on_epoch_start=scales.start_epoch if scales is not None else None,
                on_epoch_end=on_epoch_end,
                loss=self.teacher.loss if self.teacher is not None else None,
            )
        used = result.best_epoch if train_cfg.restore_best else result.epochs_run
        loop_cost = self.accounting.add_loop(used, result.epochs_run, params)
        record = {
            "epochs": train_cfg.epochs,
            "best_epoch": used,  # the epoch kept: the best one, or the last (phasing)
            "epochs_run": result.epochs_run,
            "best_val_acc": result.best_val_acc,
            "cost": loop_cost,
            "seconds": result.seconds,
        }
        if trained is not None:
            record["trained_blocks"] = trained
        if self.teacher is not None:
            record.update(self._book_teacher(result.epochs_run))
        scores = {"val_acc": result.val_acc, "test_acc": result.test_acc}
        if isinstance(task_of(self.splits), LanguageModelling):
            scores |= {k: v for k, v in self._eval().items() if k.endswith("_ppl")}
        return record, scores

    def _loop_resume_file(self, prefix: str) -> Path | None:
        """Next to the pruning state and named after it (so runs without an experiment resume
        their loops too); without a state file, ``fit``'s default (the experiment's folder)."""
        if self.state_path is None:
            return None
        return self.state_path.with_name(f"{self.state_path.stem}.{prefix.replace('/', '-')}.pt")

    def step(self, k: int) -> dict[str, Any]:
        """Run step ``k`` to its end (continuing the pending one after a resume)."""
        self._clock = time.perf_counter()
        if self.pending is None:
            self._select(k)
        pending, cfg = self.pending, self.cfg
        record, loops = pending["record"], pending["loops"]
        if record["step"] != k:
            raise UserError(
                f"the resume state holds step {record['step']} in progress, expected {k}; "
                "it is damaged: start a new run"
            )
        after = record["blocks_removed"]
        before = after - len(record["chosen"])
        after_eval = {k[: -len("_before")]: v for k, v in record.items() if k.endswith("_before")}
        if cfg.phase and not cfg.lazy:
            if "phase" not in loops:
                loops["phase"], pending["after_phase"] = self._phase(k)
                self._save_pending()
            after_eval = pending["after_phase"]
        if self.schedule.low_epochs:
            if "low" not in loops:
                loops["low"], pending["after_low"] = self._finetune(
                    k, "low", self.schedule.low_epochs, local=True
                )
                self._save_pending()
            after_eval = pending["after_low"]
        final = cfg.target.reached(self.model, after, self.total)
        reason = self.schedule.high_loop(
            before, after, self.total, final, after_eval["val_acc"], self.ref_acc
        )
        if reason is not None:
            if cfg.lazy and self.aside_order and "phase" not in loops:
                loops["phase"], pending["after_phase"] = self._phase(k)
                self._save_pending()
            phased = loops["phase"]["epochs_run"] if "phase" in loops else 0
            epochs = self.plan.loop_epochs(after) - phased
            loops["high"], after_eval = self._finetune(
                k, "high", epochs, local=reason != FINAL, shift=phased
            )
            self.ref_acc = after_eval["val_acc"]
        if loops:
            self.since_loop = []
        self.close_step(record, after_eval, reason, loops, pending["seconds"], self._clock)
        self.pending = None
        return record

    def close_step(
        self,
        record: dict[str, Any],
        after: dict[str, float],
        reason: str | None,
        loops: dict[str, Any],
        earlier_seconds: float,
        clock: float,
    ) -> None:
        """Complete a step's ``record`` (block or channel step) with its outcome: the
        evaluation ``after`` fine-tuning, why loops ran and their cost, sizes, running totals,
        and its time (``earlier_seconds`` from before a resume, plus since ``clock``)."""
        seconds = earlier_seconds + time.perf_counter() - clock
        self.accounting.seconds += seconds
        record.update(
            {
                **{f"{name}_after": v for name, v in after.items()},
                "finetune": reason,
                "loops": loops,
                "step_cost": sum(loop["cost"] for loop in loops.values()),
                "step_epochs_used": sum(loop["best_epoch"] for loop in loops.values()),
                **self.accounting.sizes(self.model),
                **self._totals(),
                "seconds": seconds,
                "total_seconds": self.accounting.seconds,
            }
        )

    def _place(self) -> None:
        place(self.model, self.device)

    def _eval(self) -> dict[str, float]:
        return _evaluate(self.model, self.splits, self.cfg, self.device)

    def summary(self) -> dict[str, Any]:
        last = self.steps[-1] if self.steps else {}
        return {
            "blocks_removed": len(self.removed()),
            "order": self.removed(),
            "config": list(self.model.config),
            "final_val_acc": last.get("val_acc_after", self.initial.get("val_acc")),
            "final_test_acc": last.get("test_acc_after", self.initial.get("test_acc")),
            "initial_val_acc": self.initial.get("val_acc"),
            "initial_test_acc": self.initial.get("test_acc"),
            **self._perplexities(last),
            **self.accounting.sizes(self.model),
            **self._totals(),
            "seconds": self.accounting.seconds,
            "steps": len(self.steps),
        }

    def _perplexities(self, last: dict[str, Any]) -> dict[str, float]:
        """A language model's perplexities before and after pruning (none for images)."""
        return {
            f"{when}_{name}": value
            for name in ("val_ppl", "test_ppl")
            if name in self.initial
            for when, value in (
                ("initial", self.initial[name]),
                ("final", last.get(f"{name}_after", self.initial[name])),
            )
        }

    def run(self) -> PruneResult:
        bar = progress_bar(
            total=self.total,
            initial=len(self.removed()),
            desc=f"prune {self.cfg.method}",
            unit="block",
            disable=not self.progress,
        )
        with bar:
            while not self.done():
                k = len(self.steps) + 1
                record = self.step(k)
                self.steps.append(record)
                self._log(f"prune/step/{k}", record)
                self._save()
                bar.update(len(record["chosen"]))
                bar.set_postfix(
                    step=k,
                    block=",".join(map(str, record["chosen"])),
                    acc=f"{record['val_acc_after']:.3f}",
                    cost=f"{record['cost']:.3g}",
                )
        if self.channels is None:
            return PruneResult(self.model, self.steps, self.summary(), self.initial)
        channel_steps = self.channels.run()
        summary = {**self.summary(), **self.channels.summary()}
        return PruneResult(self.model, self.steps, summary, self.initial, channel_steps)


def prune(
    model: BlockNet,
    splits,
    cfg: PruneConfig,
    exp=None,
    state_path: str | Path | None = None,
    progress: bool = True,
    *,
    plan: RunPlan | None = None,
    state: dict[str, Any] | None = None,
) -> PruneResult:
    """Prune ``model`` (in place until a resume replaces it; use ``result.model``).

    With ``state_path``, a resume state is written after every step (and within a step, see
    the module docstring) and, when the file already exists, the run continues from it
    instead of starting over. Events go to ``exp`` (a dbx experiment) when given; results
    and the ``model.pt`` attachment are the caller's (``squeezr.prune.experiment``) so that
    this function also serves plain Python use. ``plan`` (:func:`plan_run` of these
    arguments) and ``state`` (what :func:`squeezr.prune.state.load_state` read from
    ``state_path``) spare the work when the caller already did it. Under torchrun every rank
    calls this alike; ``exp`` and ``state_path`` are used on rank 0 only (module docstring).
    """
    if plan is None:
        plan = plan_run(model, splits, cfg)
    if not distributed.is_main():  # under torchrun rank 0 alone writes
        exp, state_path = None, None
    path = Path(state_path) if state_path else None
    if state is None and path is not None:
        state = load_state(path, cfg)
    state = distributed.broadcast_object(state)  # rank 0's; only rank 0 has the state path
    teacher = None
    if cfg.distill is not None:  # the unpruned starting model, before a resume replaces it
        teacher = Teacher(
            model,
            *cfg.distill,
            plan.device,
            cache=not cfg.augment,
            split=splits.train,
            batch_size=cfg.eval_batch_size,
            task=task_of(splits),
        )
    pruner = _Pruner(model, splits, plan, exp, path, progress, teacher)
    if state is not None:
        pruner.restore(state)
        place(pruner.model, pruner.device)
    else:
        pruner.start()
    return pruner.run()
