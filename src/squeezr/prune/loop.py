"""The greedy block-by-block pruning loop (spec sections 3-5) and its accounting.

One step: score the remaining blocks (``saliency``), remove the lowest ``blocks_per_step``,
evaluate, fine-tune if the schedule says so (``schedules``; ``train.fit`` restores the
best-validation epoch), account parameters, MACs, epochs and epoch-parameter cost, log it all
as the dbx event ``prune/step/<k>``, and save a resume state atomically. A run killed at any
point resumes from its last completed step and, because every random number comes from state
that is saved with it, ends exactly as an uninterrupted run would.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from squeezr import saliency, schedules
from squeezr.errors import UserError
from squeezr.models import ResNet, block_macs, block_params, count_macs, count_params
from squeezr.prune.config import PruneConfig
from squeezr.prune.state import STATE_VERSION, load_state, save_state
from squeezr.train import evaluate, fit, resolve_device


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

    def add_loop(self, epochs_used: int, epochs_run: int, params: int) -> int:
        """Book one fine-tuning loop; returns its epoch-parameter cost."""
        loop_cost = epochs_used * params
        self.epochs_used += epochs_used
        self.epochs_run += epochs_run
        self.cost += loop_cost
        return loop_cost

    def sizes(self, model: ResNet) -> dict[str, Any]:
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

    model: ResNet
    steps: list[dict[str, Any]]
    summary: dict[str, Any]
    initial: dict[str, Any] = field(default_factory=dict)


def _accuracy(model: ResNet, split, splits, cfg: PruneConfig, device: torch.device) -> float:
    """Accuracy as the trainer measures it (bf16 on CUDA, exact fp32 on CPU)."""
    return evaluate(
        model,
        split,
        batch_size=cfg.eval_batch_size,
        device=device,
        mean=splits.mean,
        std=splits.std,
        amp=True,
    )


def _evaluate(model: ResNet, splits, cfg: PruneConfig, device: torch.device) -> dict[str, float]:
    return {
        "val_acc": _accuracy(model, splits.val, splits, cfg, device),
        "test_acc": _accuracy(model, splits.test, splits, cfg, device),
    }


class _Pruner:
    """State of one pruning run; ``run`` drives it step by step."""

    def __init__(self, model, splits, cfg, exp, state_path, progress):
        cfg.validate()
        self.model, self.splits, self.cfg, self.exp = model, splits, cfg, exp
        self.schedule = schedules.parse(cfg.schedule)
        self.device = resolve_device(cfg.device)
        self.data = splits.val if cfg.selection == "val" else splits.prune
        if self.data is None:
            raise UserError(
                "--selection prune needs a pruning set; load the dataset with pruning_set=True"
            )
        self.total = cfg.target.blocks_to_remove(model)
        self._check_budget_reachable()
        self.schedule.check(self.total)
        self.state_path = state_path
        self.progress = progress
        self.ctx = saliency.SaliencyContext(
            mean=splits.mean,
            std=splits.std,
            device=self.device,
            batch_size=cfg.eval_batch_size,
            grad_batch_size=cfg.batch_size,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        self.steps: list[dict[str, Any]] = []
        self.cached_scores: dict[int, float] | None = None
        self.initial: dict[str, Any] = {}
        self.ref_acc = math.nan
        self.accounting = Accounting(count_params(model), count_macs(model))

    def _check_budget_reachable(self) -> None:
        target = self.cfg.target
        if target.kind not in ("params", "macs"):
            return
        per_block = block_params(self.model) if target.kind == "params" else block_macs(self.model)
        whole = count_params(self.model) if target.kind == "params" else count_macs(self.model)
        floor = whole - sum(per_block.values())
        if target.value < floor:
            raise UserError(
                f"--target-{target.kind} {target.value} is below {floor}, the size of this model "
                "with every block removed; give a larger budget"
            )

    # -- state -----------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "config": self.cfg.params(),
            "model_spec": self.model.spec(),
            "model_state": self.model.state_dict(),
            "steps": self.steps,
            "initial": self.initial,
            "accounting": asdict(self.accounting),
            "ref_acc": self.ref_acc,
            "cached_scores": self.cached_scores,
            "rng_torch": torch.get_rng_state(),
            "rng_generator": self.ctx.generator.get_state(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        if state["config"] != self.cfg.params():
            raise UserError(
                "the resume state was written with different pruning settings; "
                "resume with the original settings or start a new run"
            )
        self.model = ResNet.from_spec(state["model_spec"])
        self.model.load_state_dict(state["model_state"])
        self.steps = list(state["steps"])
        self.initial = dict(state["initial"])
        self.accounting = Accounting(**state["accounting"])
        self.ref_acc = float(state["ref_acc"])
        cached = state["cached_scores"]
        self.cached_scores = None if cached is None else {int(k): v for k, v in cached.items()}
        torch.set_rng_state(state["rng_torch"])
        self.ctx.generator.set_state(state["rng_generator"])

    def _log(self, name: str, data: dict[str, Any]) -> None:
        if self.exp is not None:
            self.exp.log(name, data)

    # -- steps -----------------------------------------------------------------------

    def start(self) -> None:
        """Evaluate and record the starting model (step 0)."""
        self.model.to(self.device)
        self.initial = {
            "blocks": len(self.model.block_ids()),
            "config": list(self.model.config),
            **_evaluate(self.model, self.splits, self.cfg, self.device),
            **self.accounting.sizes(self.model),
        }
        self.ref_acc = self.initial["val_acc"]
        self._log("prune/initial", self.initial)

    def removed(self) -> list[int]:
        return [b for step in self.steps for b in step["chosen"]]

    def done(self) -> bool:
        return self.cfg.target.reached(self.model, len(self.removed()), self.total)

    def _scores(self, k: int) -> tuple[dict[int, float], bool]:
        every = self.cfg.recompute_every
        fresh = self.cached_scores is None or (every > 0 and (k - 1) % every == 0)
        if fresh:
            self.cached_scores = saliency.compute(self.cfg.method, self.model, self.data, self.ctx)
        remaining = set(self.model.block_ids())
        return {b: s for b, s in self.cached_scores.items() if b in remaining}, fresh

    def _remove(self, scores: dict[int, float]) -> list[int]:
        """Remove this step's blocks, lowest score first; returns them in removal order.

        With a block-count target the last step removes only what is left to remove; with a
        budget the step stops as soon as the budget is met.
        """
        count = self.cfg.blocks_per_step
        if self.total is not None:
            count = min(count, self.total - len(self.removed()))
        chosen = []
        for block in saliency.lowest(scores, count):
            self.model.remove_block(block)
            chosen.append(block)
            if self.total is None and self.cfg.target.reached(self.model, 0, None):
                break
        return chosen

    def _finetune(self, k: int, epochs: int, prefix: str) -> dict[str, Any]:
        params = count_params(self.model)
        result = fit(
            self.model,
            self.splits,
            self.cfg.train_config(epochs, seed=self.cfg.seed * 100_003 + k),
            exp=self.exp,
            prefix=prefix,
            progress=self.progress,
        )
        loop_cost = self.accounting.add_loop(result.best_epoch, result.epochs_run, params)
        return {
            "epochs": epochs,
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "best_val_acc": result.best_val_acc,
            "cost": loop_cost,
            "seconds": result.seconds,
        }

    def step(self, k: int) -> dict[str, Any]:
        started = time.perf_counter()
        before = len(self.removed())
        scores, fresh = self._scores(k)
        chosen = self._remove(scores)
        self.model.to(self.device)
        after = before + len(chosen)
        final = self.cfg.target.reached(self.model, after, self.total)
        record: dict[str, Any] = {
            "step": k,
            "chosen": chosen,
            "blocks_removed": after,
            "saliency": {str(b): s for b, s in scores.items()},
            "saliency_fresh": fresh,
            "config": list(self.model.config),
            **{f"{name}_before": v for name, v in self._eval().items()},
        }
        val = record["val_acc_before"]
        loops: dict[str, Any] = {}
        low = self.schedule.low_loop()
        if low:
            loops["low"] = self._finetune(k, low, f"prune/step/{k}/finetune/low")
            val = _accuracy(self.model, self.splits.val, self.splits, self.cfg, self.device)
        reason = self.schedule.high_loop(before, after, self.total, final, val, self.ref_acc)
        if reason is not None:
            loops["high"] = self._finetune(k, self.cfg.epochs, f"prune/step/{k}/finetune")
        unchanged = {"val_acc": record["val_acc_before"], "test_acc": record["test_acc_before"]}
        after_eval = self._eval() if loops else unchanged
        if reason is not None:
            self.ref_acc = after_eval["val_acc"]
        seconds = time.perf_counter() - started
        self.accounting.seconds += seconds
        record.update(
            {
                **{f"{name}_after": v for name, v in after_eval.items()},
                "finetune": reason,
                "loops": loops,
                "step_cost": sum(loop["cost"] for loop in loops.values()),
                "step_epochs_used": sum(loop["best_epoch"] for loop in loops.values()),
                **self.accounting.sizes(self.model),
                "cost": self.accounting.cost,
                "epochs_used": self.accounting.epochs_used,
                "epochs_run": self.accounting.epochs_run,
                "seconds": seconds,
                "total_seconds": self.accounting.seconds,
            }
        )
        return record

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
            **self.accounting.sizes(self.model),
            "cost": self.accounting.cost,
            "epochs_used": self.accounting.epochs_used,
            "epochs_run": self.accounting.epochs_run,
            "seconds": self.accounting.seconds,
            "steps": len(self.steps),
        }

    def run(self) -> PruneResult:
        bar = tqdm(
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
                if self.state_path is not None:
                    save_state(self.state_path, self._state())
                bar.update(len(record["chosen"]))
                bar.set_postfix(
                    step=k,
                    block=",".join(map(str, record["chosen"])),
                    acc=f"{record['val_acc_after']:.3f}",
                    cost=f"{record['cost']:.3g}",
                )
        return PruneResult(self.model, self.steps, self.summary(), self.initial)


def prune(
    model: ResNet,
    splits,
    cfg: PruneConfig,
    exp=None,
    state_path: str | Path | None = None,
    progress: bool = True,
) -> PruneResult:
    """Prune ``model`` (in place until a resume replaces it; use ``result.model``).

    With ``state_path``, a resume state is written after every step and, when the file
    already exists, the run continues from it instead of starting over. Events go to ``exp``
    (a dbx experiment) when given; results and the ``model.pt`` attachment are the caller's
    (see ``squeezr.cli.prune``) so that this function also serves plain Python use.
    """
    pruner = _Pruner(model, splits, cfg, exp, Path(state_path) if state_path else None, progress)
    state = load_state(pruner.state_path) if pruner.state_path else None
    if state is not None:
        pruner.restore(state)
        pruner.model.to(pruner.device)
    else:
        pruner.start()
    return pruner.run()
