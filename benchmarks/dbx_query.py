"""Log-query speed: dbx query against plain pandas on the same 1M-event repository.

Why: the query language is only worth using if a grouped aggregate over a thousand
experiments' logs is interactive (target: warm < 2 s) and no slower than the pandas code a
researcher would otherwise write. This script holds it to both, in one run, on one machine.

Workload: E experiments x N events (default 1,000 x 1,000 = 1M), each event
``train/step/<i>`` with ``loss`` and ``acc``, written directly in the documented on-disk format
(docs/dbx-format.md) into a temporary repository. Query: mean and standard error of ``loss``
per step across experiments. Measured:

* ``dbx_cold_s``      — first query in this process, no cache (parses every log, writes the cache);
* ``dbx_warm_s``      — the same query again in this process (in-memory cache);
* ``dbx_disk_warm_s`` — the same query in a fresh process, from ``.dbx/cache`` (query time only);
* ``pandas_s``        — ``pd.read_json(lines=True)`` per log, concat, flatten ``data``,
  name filter, step extraction, ``groupby(step).agg(mean, sem)``.

Both answers are compared value by value. Usage: ``python benchmarks/dbx_query.py [--quick]``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from _common import parser, ratio, report, timer

QUERY = "train/step/:step | group step: mean(loss), se(loss)"


def generate(root: Path, experiments: int, events: int) -> None:
    """A repository in the documented format (one run per experiment), seeded."""
    rng = random.Random(0)
    (root / ".dbx").mkdir(parents=True)
    (root / ".dbx" / "format.json").write_text('{"format": "dbx", "version": 1}\n')
    for index in range(experiments):
        exp_id = f"{rng.getrandbits(48):012x}"
        name = f"bench/model{index % 6}"
        folder = root / name / exp_id
        folder.mkdir(parents=True)
        meta = {"format": 1, "id": exp_id, "name": name, "kind": "bench"}
        meta.update(created="2026-01-01T00:00:00+00:00", params={"seed": index})
        (folder / "meta.json").write_text(json.dumps(meta))
        (folder / "results.json").write_text("{}")
        base = 1.7e9 + index
        lines = [
            json.dumps(
                {
                    "name": f"train/step/{step}",
                    "id": f"1-{step}",
                    "ts": base + step / 100,
                    "run": 1,
                    "data": {"loss": rng.random(), "acc": rng.random()},
                }
            )
            for step in range(events)
        ]
        (folder / "log-1.jsonl").write_text("\n".join(lines) + "\n")


def pandas_reference(root: Path) -> pd.DataFrame:
    """What one would write without dbx: read every JSONL log with pandas and group."""
    frames = [pd.read_json(path, lines=True) for path in sorted(root.glob("**/log-*.jsonl"))]
    events = pd.concat(frames, ignore_index=True)
    data = pd.json_normalize(events.pop("data").tolist())
    events = pd.concat([events, data], axis=1)
    events = events[events["name"].str.fullmatch(r"train/step/[^/]+")]
    steps = pd.to_numeric(events["name"].str.rsplit("/", n=1).str[-1])
    grouped = events.groupby(steps)["loss"].agg(["mean", "sem"])
    return grouped.reset_index().rename(columns={"name": "step"})


def dbx_query(root: Path) -> pd.DataFrame:
    from squeezr.dbx import query

    return query.run(QUERY, repo=root)


DISK_WARM = """
import sys, time
from squeezr.dbx import query
start = time.perf_counter()
query.run(sys.argv[2], repo=sys.argv[1])
print(time.perf_counter() - start)
"""


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    experiments, events = (60, 200) if args.quick else (1000, 1000)
    with tempfile.TemporaryDirectory(prefix="dbx-query-bench-") as tmp:
        root = Path(tmp) / "repo"
        with timer() as made:
            generate(root, experiments, events)
        print(f"generated {experiments} x {events} events in {made.seconds:.1f} s")
        with timer() as cold:
            ours = dbx_query(root)
        with timer() as warm:
            dbx_query(root)
        disk = subprocess.run(
            [sys.executable, "-c", DISK_WARM, str(root), QUERY],
            check=True,
            capture_output=True,
            text=True,
        )
        disk_warm = float(disk.stdout.strip().splitlines()[-1])
        with timer() as plain:
            reference = pandas_reference(root)
    same = len(ours) == len(reference) and np.allclose(
        ours[["step", "mean_loss", "se_loss"]].to_numpy(dtype=float),
        reference[["step", "mean", "sem"]].to_numpy(dtype=float),
    )
    print(f"query: {QUERY}")
    print(f"dbx cold        {cold.seconds:7.2f} s")
    print(f"dbx warm        {warm.seconds:7.2f} s   (target < 2 s)")
    print(f"dbx disk-warm   {disk_warm:7.2f} s   (fresh process, .dbx/cache)")
    print(f"pandas          {plain.seconds:7.2f} s")
    print(f"pandas / dbx cold: {ratio(plain.seconds, cold.seconds)}, ", end="")
    print(f"pandas / dbx warm: {ratio(plain.seconds, warm.seconds)}; same answer: {same}")
    report(
        "dbx_query",
        {
            "experiments": experiments,
            "events": experiments * events,
            "dbx_cold_s": round(cold.seconds, 3),
            "dbx_warm_s": round(warm.seconds, 3),
            "dbx_disk_warm_s": round(disk_warm, 3),
            "pandas_s": round(plain.seconds, 3),
            "same_answer": bool(same),
        },
    )


if __name__ == "__main__":
    main()
