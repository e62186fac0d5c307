"""Fine-tuning schedules: after which pruning steps a fine-tuning loop runs, and how long.

A schedule is written as terms joined by ``+`` (``threshold:0.01+at:27``,
``low-high:3+threshold:0.05``) so that every variant of the spec is one string on the command
line and one parameter in the experiment record. Positions count **blocks removed**, and a
mark fires at the first step whose removals reach or pass it, so schedules keep their meaning
when a step removes several blocks.

Terms:

* ``none`` — never fine-tune (not even at the end); cannot be combined;
* ``once`` — only the final loop (which every other schedule also has);
* ``at:6,12,18,27`` — explicit marks;
* ``every:K`` — marks at K, 2K, 3K, ... blocks removed;
* ``uniform:K`` — K loops spread evenly over N blocks to remove: marks at
  ``j * (N // K)`` for j = 1..K-1 plus the last one at N (27 blocks, K = 4: 6, 12, 18, 27).
  The remainder of ``N / K`` goes to the last interval so the early loops are equally spaced;
  with K > N every step fine-tunes;
* ``threshold:t`` — fine-tune when validation accuracy has dropped by more than ``t``
  (a fraction) since the last (high) fine-tuning loop, or since the initial model;
* ``low-high:L`` — L epochs of training after every step (the *low* loop); the normal
  (*high*) loop still runs at the marks, at the end, and, with a threshold, whenever accuracy
  after the low loop is still more than ``t`` below the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from squeezr.dbx.errors import UserError

HELP = (
    "none | once | at:6,12,18,27 | every:K | uniform:K | threshold:t | low-high:L, "
    "combined with '+' (e.g. threshold:0.01+at:27)"
)

# Why a high fine-tuning loop runs; logged with every step.
FINAL, SCHEDULED, THRESHOLD = "final", "scheduled", "threshold"


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule; ``text`` is the canonical string it came from.

    ``low_epochs`` is the length of the low loop after every step (0: none); ``never``
    (``none``) has no other term, so it has no marks and no low loop either.
    """

    text: str
    never: bool = False
    at: tuple[int, ...] = ()
    every: int | None = None
    uniform: int | None = None
    threshold: float | None = None
    low_epochs: int = 0

    @property
    def needs_total(self) -> bool:
        """True when the marks depend on how many blocks will be removed in all (``uniform``)."""
        return self.uniform is not None

    def check(self, total: int | None) -> None:
        """UserError when the schedule cannot work with this target (None = a budget)."""
        if self.needs_total and total is None:
            raise UserError(
                "schedule 'uniform:K' needs a block-count target (--target-blocks, "
                "--target-left or --target-size); use at:/every:/threshold: with budgets"
            )

    def _listed_marks(self, total: int | None) -> set[int]:
        """The ``at`` and ``uniform`` marks (``every`` is periodic, handled by arithmetic)."""
        self.check(total)
        marks = set(self.at)
        if self.uniform is not None and total is not None:
            interval = max(total // self.uniform, 1)
            marks.update(interval * j for j in range(1, min(self.uniform, total)))
            marks.add(total)
        return marks

    def mark_crossed(self, before: int, after: int, total: int | None) -> bool:
        """Whether a step that took blocks removed from ``before`` to ``after`` reaches a mark."""
        if self.every is not None and after // self.every > before // self.every:
            return True
        return any(before < m <= after for m in self._listed_marks(total))

    def planned(self, total: int, blocks_per_step: int = 1) -> list[int]:
        """Blocks-removed counts after which a high loop runs when accuracy never drops.

        Asks :meth:`high_loop` step by step, exactly as the pruning loop does, so this is the
        plan ``squeezr prune`` prints before a run (threshold loops come on top of it).
        """
        plan = []
        removed = 0
        while removed < total:
            after = min(removed + blocks_per_step, total)
            if self.high_loop(removed, after, total, after == total, 1.0, 1.0) is not None:
                plan.append(after)
            removed = after
        return plan

    def high_loop(
        self,
        before: int,
        after: int,
        total: int | None,
        final: bool,
        val_acc: float,
        ref_acc: float,
    ) -> str | None:
        """The reason a high loop runs after this step (FINAL, SCHEDULED, THRESHOLD), or None.

        ``val_acc`` is the validation accuracy now (after removal and any low loop);
        ``ref_acc`` the accuracy after the last high loop (or of the initial model).
        """
        if self.never:
            return None
        if final:
            return FINAL
        if self.mark_crossed(before, after, total):
            return SCHEDULED
        if self.threshold is not None and ref_acc - val_acc > self.threshold:
            return THRESHOLD
        return None


def _positive_int(term: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise UserError(f"schedule term {term!r} needs a positive whole number; {HELP}")
    return number


def parse(text: str) -> Schedule:
    """Parse a schedule string (see the module docstring); UserError names a bad term."""
    terms = [t.strip() for t in str(text).strip().lower().split("+") if t.strip()]
    if not terms:
        raise UserError(f"empty fine-tuning schedule; use {HELP}")
    fields: dict = {}
    seen: set[str] = set()
    for term in terms:
        kind, _, value = term.partition(":")
        if kind in seen and kind != "at":
            raise UserError(f"schedule term {kind!r} given twice in {text!r}; give it once")
        seen.add(kind)
        if kind in ("none", "once"):
            if value:
                raise UserError(f"schedule term {term!r} takes no value; use {kind!r}")
            if kind == "none":
                fields["never"] = True
        elif kind == "at":
            marks = [_positive_int(term, v) for v in value.split(",")]
            fields["at"] = tuple(sorted(set(fields.get("at", ())) | set(marks)))
        elif kind == "every":
            fields["every"] = _positive_int(term, value)
        elif kind == "uniform":
            fields["uniform"] = _positive_int(term, value)
        elif kind == "low-high":
            fields["low_epochs"] = _positive_int(term, value)
        elif kind == "threshold":
            try:
                fields["threshold"] = float(value)
            except ValueError:
                fields["threshold"] = math.nan
            if not 0 <= fields["threshold"] < 1:
                raise UserError(
                    f"schedule term {term!r} needs a fraction in [0, 1), e.g. threshold:0.01"
                )
        else:
            raise UserError(f"unknown schedule term {term!r}; use {HELP}")
    if fields.get("never") and len(terms) > 1:
        raise UserError("schedule 'none' cannot be combined with other terms")
    return Schedule(text="+".join(terms), **fields)
