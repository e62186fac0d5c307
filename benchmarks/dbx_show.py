"""``dbx show`` on a large log: reading the tail against parsing the whole log.

Why: ``dbx show`` prints an experiment's last 10 events. Issue 11 found it parsing the whole
log (12-16 s and 1.4 GiB on a 1M-event log); the target is < 0.5 s whatever the log's size.
This script holds it to that, in one run, on one machine.

Workload: one experiment whose run logs N events (default 1,000,000; ``--quick`` 100,000)
``("train/step", step=i, loss=x, lr=y)`` through ``exp.log``, as a training run would.
Measured, median of ``--repeats`` (default 3):

* ``show_s``  — ``dbx show EXP`` as a user runs it: a fresh ``dbx`` process, start to exit
  (interpreter start and imports included);
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

    with dbx.create("bench/show", kind="bench", repo=repo) as exp:
        log = exp.log
        for i in range(n):
            log("train/step", step=i, loss=2.5 / (1 + 0.001 * i), lr=0.1 * 0.999 ** (i // 1000))
    return exp


def measure(repo: Path, exp: Any, repeats: int) -> dict[str, Any]:
    dbx_cli = Path(sys.executable).with_name("dbx")
    command = [str(dbx_cli), "show", exp.id, "--repo", str(repo)]
    show, tail, full = [], [], []
    for _ in range(repeats):
        with timer() as t:
            done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"dbx show failed: {done.stderr.strip()}")
        show.append(t.seconds)
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
    print(f"  last_events(10): the tail         {figures['tail_s']:8.3f} s")
    print(f"  events()[-10:]: whole log (before) {figures['full_s']:7.3f} s")
    print(f"  whole log vs tail                 {ratio(figures['full_s'], figures['tail_s']):>8}\n")
    targets = {"show_under_0.5_s": figures["show_s"] < SHOW_TARGET_S}
    print_targets(targets)
    print()
    report("dbx_show", {**figures, "targets": targets})
    return 0


if __name__ == "__main__":
    sys.exit(main())
