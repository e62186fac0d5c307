"""SLURM as the engine for clusters: submit a generated script, follow its jobs.

``dbx study run --slurm`` writes the submission script (:func:`render.slurm_script`) to
``.dbx/studies/<study>/submit.sh``, runs it (one ``sbatch`` per stage), reads the job ids
it prints and follows them with ``squeue`` until none is pending or running. ``squeue`` is
used rather than ``sacct`` because it needs no accounting database; what each task did is
then in the repository, where ``dbx study test`` reads it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from squeezr.dbx.errors import UserError

__all__ = ["queued", "submit", "wait"]

JOBS_LINE = "dbx-jobs:"


def submit(script: Path) -> dict[str, str]:
    """Run the submission ``script``; its jobs as ``{stage: job id}``."""
    try:
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise UserError(f"cannot run {script}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"submitting with sbatch failed (exit {done.returncode}): {last}")
    for line in done.stdout.splitlines():
        if line.startswith(JOBS_LINE):
            return dict(pair.split("=", 1) for pair in line[len(JOBS_LINE) :].split())
    raise UserError(f"{script} printed no '{JOBS_LINE}' line; regenerate it")


def queued(job_ids: list[str]) -> dict[str, int]:
    """How many tasks of ``job_ids`` are in each state (``PENDING``, ``RUNNING``, ...)."""
    try:
        done = subprocess.run(
            ["squeue", "--noheader", "--array", "--format=%T", "--jobs", ",".join(job_ids)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise UserError(f"cannot run squeue: {exc.strerror or exc}; is SLURM installed?") from None
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:  # every job has left the queue
            return {}
        raise UserError(f"squeue failed: {done.stderr.strip()}")
    counts: dict[str, int] = {}
    for state in done.stdout.split():
        counts[state] = counts.get(state, 0) + 1
    return counts


def wait(
    job_ids: list[str],
    poll: float = 2.0,
    timeout: float | None = None,
    say: Callable[[str], None] | None = None,
) -> None:
    """Block until no task of ``job_ids`` is queued, saying so whenever the counts change."""
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    start, last = time.monotonic(), None
    while True:
        counts = queued(job_ids)
        if counts != last:
            shown = ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items()))
            say(f"dbx study run: SLURM jobs {','.join(job_ids)}: {shown or 'finished'}")
            last = counts
        if not counts:
            return
        if timeout is not None and time.monotonic() - start > timeout:
            raise UserError(f"SLURM jobs {','.join(job_ids)} still queued after {timeout:.0f} s")
        time.sleep(poll)
