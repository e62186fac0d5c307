"""``dbx show`` on a large log: reading the tail against parsing the whole log.

Why: ``dbx show`` prints an experiment's last 10 events. Issue 11 found it parsing the whole
log (12-16 s and 1.4 GiB on a 1M-event log); the target is < 0.5 s whatever the log's size.
This script holds it to that, in one run, on one machine.

Workload: one experiment whose run logs N events (default 1,000,000; ``--quick`` 100,000)
``("train/step", step=i, loss=x, lr=y)`` through ``exp.log``, as a training run would.
Measured, median of ``--repeats`` (default 3):

* ``show_s``  — ``dbx show EXP`` as a user runs it: a fresh ``dbx`` process, start to exit
  (interpreter start and imports included);
* ``small_s`` — the same on an experiment with 10 events in the same repository: what a
  fresh ``dbx`` costs whatever the log, so ``show_s - small_s`` is what the log's size adds;
* ``tail_s``  — ``exp.last_events(10)`` in this process (what ``show`` reads now);
* ``full_s``  — the reference: ``exp.events()[-10:]``, every event parsed (what ``show``
  read before; the "before" figure).

Usage: ``python benchmarks/dbx_show.py [--quick] [--events N]``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import parser, print_targets, ratio, report, timer

SHOW_TARGET_S = 0.5


def make_log(repo: Path, n: int) -> Any:
    from squeezr import dbx

    with dbx.create("bench/small", kind="bench", repo=repo) as small:
        for i in range(10):
            small.log("train/step", step=i, loss=1.0)
    with dbx.create("bench/show", kind="bench", repo=repo) as exp:
        log = exp.log
        for i in range(n):
            log("train/step", step=i, loss=2.5 / (1 + 0.001 * i), lr=0.1 * 0.999 ** (i // 1000))
    return exp


def measure(repo: Path, exp: Any, repeats: int) -> dict[str, Any]:
    dbx_cli = Path(sys.executable).with_name("dbx")
    show, small, tail, full = [], [], [], []
    for _ in range(repeats):
        for ref, times in ((exp.id, show), ("bench/small", small)):
            with timer() as t:
                done = subprocess.run(
                    [str(dbx_cli), "show", ref, "--repo", str(repo)], capture_output=True
                )
            if done.returncode != 0:
                raise SystemExit(f"dbx show failed: {done.stderr.decode().strip()}")
            times.append(t.seconds)
        with timer() as t:
            last, total = exp.last_events(10)
        tail.append(t.seconds)
        with timer() as t:
            reference = exp.events()[-10:]
        full.append(t.seconds)
        assert last == reference, "the tail and the whole log disagree"
    return {
        "events": total,
        "log_bytes": sum(p.stat().st_size for p in exp.path.glob("log-*.jsonl")),
        "show_s": statistics.median(show),
        "small_s": statistics.median(small),
        "tail_s": statistics.median(tail),
        "full_s": statistics.median(full),
    }


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--events", type=int, help="events in the log (default 1,000,000)")
    p.add_argument("--repeats", type=int, default=3, help="median of this many (default 3)")
    args = p.parse_args()
    n = args.events or (100_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="bench-show-") as tmp:
        repo = Path(tmp) / "experiments"
        with timer() as made:
            exp = make_log(repo, n)
        figures = measure(repo, exp, args.repeats)
    figures["make_s"] = made.seconds
    mib = figures["log_bytes"] / 2**20
    print(f"\n`dbx show` on a log of {figures['events']:,} events ({mib:,.0f} MiB)\n")
    print(f"  dbx show (fresh process)          {figures['show_s']:8.3f} s")
    print(f"  dbx show, 10-event log (same)     {figures['small_s']:8.3f} s")
    print(f"  last_events(10): the tail         {figures['tail_s']:8.3f} s")
    print(f"  events()[-10:]: whole log (before) {figures['full_s']:7.3f} s")
    print(f"  whole log vs tail                 {ratio(figures['full_s'], figures['tail_s']):>8}\n")
    added = figures["show_s"] - figures["small_s"]
    print(f"  what the log's size adds          {added:8.3f} s\n")
    targets = {
        "show_under_0.5_s": figures["show_s"] < SHOW_TARGET_S,
        "log_size_adds_under_0.5_s": added < SHOW_TARGET_S,
    }
    print_targets(targets)
    print()
    report("dbx_show", {**figures, "targets": targets})
    return 0


if __name__ == "__main__":
    sys.exit(main())
