"""Listing speed: ``dbx ls --where ...`` against ``mlflow.search_runs`` over 10,000 experiments.

Why: researchers list and filter their experiments all day; the issue's target is that
``dbx ls --where`` over 10,000 experiments answers in < 0.5 s warm and faster than MLflow
doing the same search. This script builds the same 10,000 experiments (10 params, 5 results
each, seeded) in a dbx repository and as MLflow runs, then times the same filter on each:

* ``dbx ls`` in process: first call and second (warm) call of ``squeezr.dbx.cli.main``,
  printing its table to /dev/null; also ``select_experiments`` alone (no printing);
* ``dbx ls`` as a fresh process (interpreter start included; files in the page cache);
* ``mlflow.search_runs`` with the equivalent filter: first and second call in one process,
  and a fresh process; on MLflow's default backend (SQLite; the runs are created with
  MlflowClient in a file store and moved with ``mlflow migrate-filestore``, which is many
  times faster than creating 10,000 runs in SQLite directly) and on its plain file store.

Every way must return the same number of matches as a count done in plain Python, or the
benchmark fails. Creation time is not measured. Stores are built in ``--dir`` (default: a
temporary folder on /dev/shm where available, so building is not bound by fsync; warm
timings read from memory either way) and reused by later runs given the same ``--dir``.

MLflow is installed in its own environment, ``.venv-bench`` (``make bench-setup``)::

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install -c constraints-cpu.txt torch
    .venv-bench/bin/pip install -c constraints-cpu.txt -e '.[bench]'

Usage: ``.venv-bench/bin/python benchmarks/dbx_list.py [--quick] [--dir DIR] [--no-peers]``.
Without MLflow the "faster than MLflow" targets print "not measured (peer mlflow missing:
install with ...)" and the script exits with status 1, unless ``--no-peers`` asks for dbx
alone.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import chdir, redirect_stdout
from pathlib import Path
from typing import Any

from _common import (
    missing_peer_reason,
    not_measured,
    parser,
    peer_missing,
    print_targets,
    print_tool_table,
    ratio,
    report,
    timer,
)
from squeezr.dbx.views import flatten

DBX_WHERE = "params.optimizer.name == 'adam' and results.best_val_acc > 0.8"
MLFLOW_FILTER = "params.`optimizer.name` = 'adam' and metrics.best_val_acc > 0.8"
MLFLOW_EXPERIMENT = "bench"
TARGET_WARM_S = 0.5
BIN = Path(sys.executable).parent


# --- the workload --------------------------------------------------------------------------


def specs(n: int, seed: int = 0) -> Iterator[tuple[str, str, dict[str, Any], dict[str, float]]]:
    """``n`` experiments as (name, kind, params, results): 10 leaf params, 5 results."""
    rng = random.Random(seed)
    for i in range(n):
        optimizer = rng.choice(["adam", "sgd", "adamw"])
        params = {
            "optimizer": {
                "name": optimizer,
                "lr": rng.choice([0.1, 0.03, 0.01, 0.003]),
                "momentum": 0.9,
                "weight_decay": rng.choice([0.0, 1e-4, 5e-4]),
            },
            "model": {"depth": rng.choice([20, 32, 44, 56]), "width": rng.choice([1, 2])},
            "epochs": rng.choice([10, 50, 100]),
            "batch_size": rng.choice([64, 128, 256]),
            "seed": i % 5,
            "augment": rng.random() < 0.5,
        }
        acc = rng.uniform(0.5, 0.95)
        results = {
            "best_val_acc": acc,
            "test_acc": acc - rng.uniform(0.0, 0.02),
            "final_loss": rng.uniform(0.1, 1.5),
            "epochs_run": float(params["epochs"]),
            "train_time_s": rng.uniform(60.0, 3600.0),
        }
        kind = "prune" if i % 4 == 0 else "train"
        yield f"sweep{i // 1000}/{optimizer}/run{i}", kind, params, results


def expected_matches(n: int) -> int:
    """The filter evaluated in plain Python: every tool must find exactly this many."""
    return sum(
        p["optimizer"]["name"] == "adam" and r["best_val_acc"] > 0.8 for _, _, p, r in specs(n)
    )


# --- building the stores (not timed) -------------------------------------------------------


def build_dbx(n: int, root: Path) -> None:
    from squeezr import dbx

    repo = dbx.Repository.init(root / "dbx")
    with chdir(root):  # runs record the git state of cwd: keep the benchmark's out of it
        for name, kind, params, results in specs(n):
            with dbx.create(name, kind=kind, params=params, repo=repo) as exp:
                exp.results.update(results)


def build_mlflow(n: int, root: Path) -> None:
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow >= 3 refuses file stores otherwise
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient((root / "mlruns").as_uri())
    experiment = client.create_experiment(MLFLOW_EXPERIMENT)
    for name, kind, params, results in specs(n):
        run = client.create_run(experiment, run_name=name, tags={"kind": kind})
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, 0, 0) for k, v in results.items()],
            params=[Param(k, str(v)) for k, v in flatten(params).items()],
        )
        client.set_terminated(run.info.run_id)


def migrate_mlflow(n: int, root: Path) -> None:
    """Copy the file store into SQLite with MLflow's own lossless migration tool."""
    subprocess.run(
        [
            *(BIN / "mlflow", "migrate-filestore", "--no-progress"),
            *("--source", root / "mlruns", "--target", f"sqlite:///{root / 'mlflow.db'}"),
        ],
        check=True,
        capture_output=True,
    )


BUILD_STEPS = (("mlruns", build_mlflow), ("mlflow.db", migrate_mlflow), ("dbx", build_dbx))


def build(n: int, root: Path, peers: bool) -> None:
    """Build each store under ``root`` unless an earlier run finished building it (MLflow's
    only when ``peers``)."""
    for target, step in BUILD_STEPS:
        if target != "dbx" and not peers:
            continue
        done = root / f".built-{target}-{n}"
        if done.exists():
            print(f"reusing {root / target}", flush=True)
            continue
        path = root / target
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        with timer() as t:
            step(n, root)
        print(f"built {path} ({n:,} experiments) in {t.seconds:.0f} s", flush=True)
        done.touch()


# --- timed workers, each in a fresh interpreter --------------------------------------------


def work_dbx(repo: Path) -> dict[str, Any]:
    from squeezr.dbx import Repository
    from squeezr.dbx.cli import main as dbx_main
    from squeezr.dbx.select import select_experiments

    argv = ["ls", "--where", DBX_WHERE]
    os.environ["DBX_REPO"] = str(repo)
    times = []
    for _ in range(2):
        with timer() as t, open(os.devnull, "w") as sink, redirect_stdout(sink):
            code = dbx_main(argv)
        if code != 0:
            raise SystemExit(f"dbx ls exited with {code}")
        times.append(t.seconds)
    with redirect_stdout(io.StringIO()) as out:
        dbx_main([*argv, "--json"])
    matches = len(json.loads(out.getvalue()))
    handle = Repository.find(repo)
    with timer() as select:
        selected = select_experiments(handle, where=DBX_WHERE)
    return {
        "first_s": times[0],
        "warm_s": times[1],
        "select_only_s": select.seconds,
        "matches": matches,
        "select_matches": len(selected),
    }


def work_mlflow(uri: str) -> dict[str, Any]:
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow >= 3 refuses file stores otherwise
    import mlflow

    mlflow.set_tracking_uri(uri)
    times, matches = [], 0
    for _ in range(2):
        with timer() as t:
            frame = mlflow.search_runs(
                experiment_names=[MLFLOW_EXPERIMENT], filter_string=MLFLOW_FILTER
            )
        times.append(t.seconds)
        matches = len(frame)
    return {
        "first_s": times[0],
        "warm_s": times[1],
        "matches": matches,
        "version": mlflow.__version__,
    }


def run_worker(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True
    )
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {reason}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fresh_process_s(argv: list[str | Path], env: dict[str, str], repeats: int) -> float:
    """Median wall time of a whole new process (interpreter start, imports, search, print)."""
    times = []
    for _ in range(repeats):
        with timer() as t:
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(t.seconds)
    return statistics.median(times)


MLFLOW_FRESH = (
    "import os, mlflow, sys; os.environ['MLFLOW_ALLOW_FILE_STORE'] = 'true'; "
    "mlflow.set_tracking_uri(sys.argv[1]); "
    f"mlflow.search_runs(experiment_names=[{MLFLOW_EXPERIMENT!r}], filter_string={MLFLOW_FILTER!r})"
)


# --- orchestration -------------------------------------------------------------------------


def main() -> int:
    p = parser(__doc__.splitlines()[0], peers=True)
    p.add_argument("--experiments", type=int, help="how many (default 10,000; quick 1,000)")
    p.add_argument("--dir", type=Path, help="build the stores here and keep them for reuse")
    p.add_argument("--repeats", type=int, default=3, help="fresh-process runs (median)")
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        kind, where = args.worker
        result = work_dbx(Path(where)) if kind == "dbx" else work_mlflow(where)
        print(json.dumps(result))
        return 0

    n = args.experiments or (1_000 if args.quick else 10_000)
    missing = None if args.no_peers or not peer_missing("mlflow") else "mlflow"
    if missing:
        print(f"skipping MLflow: {missing_peer_reason(missing)}", flush=True)
    peers = not args.no_peers and not missing
    if args.dir:
        args.dir.mkdir(parents=True, exist_ok=True)
        return bench(n, args.dir, args.repeats, peers, missing)
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        return bench(n, Path(tmp), args.repeats, peers, missing)


def bench(n: int, root: Path, repeats: int, peers: bool, missing: str | None) -> int:
    """Build, time every tool, print the comparison; 0 only if every target was measured."""
    build(n, root, peers)
    truth = expected_matches(n)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DBX_"))}
    stores = {
        "mlflow": f"sqlite:///{root / 'mlflow.db'}",
        "mlflow-file": (root / "mlruns").as_uri(),
    }
    results: dict[str, dict[str, Any]] = {"dbx": run_worker("dbx", str(root / "dbx"))}
    if "error" not in results["dbx"]:
        results["dbx"]["fresh_s"] = fresh_process_s(
            [BIN / "dbx", "ls", "--where", DBX_WHERE],
            {**env, "DBX_REPO": str(root / "dbx")},
            repeats,
        )
    for tool, uri in stores.items():
        if missing:
            results[tool] = {"missing": missing_peer_reason(missing)}
        if not peers:
            continue
        results[tool] = run_worker("mlflow", uri)
        if "error" not in results[tool]:
            results[tool]["backend"] = uri.split(":", 1)[0].replace("file", "file store")
            results[tool]["fresh_s"] = fresh_process_s(
                [sys.executable, "-c", MLFLOW_FRESH, uri], env, repeats
            )
    for r in results.values():
        counts = {r.get("matches"), r.get("select_matches", r.get("matches"))}
        if "error" not in r and "missing" not in r and counts != {truth}:
            r["error"] = f"found {sorted(counts)} matches, expected {truth}"

    figures = compare(results)
    print_table(n, truth, results)
    measured = print_targets(figures)
    print()
    report("dbx_list", {"experiments": n, "matches": truth, **results, "targets": figures})
    return 0 if measured and all("error" not in r for r in results.values()) else 1


def compare(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    d = results["dbx"]
    if "error" in d:
        return {"error": "dbx failed; nothing to compare"}
    out: dict[str, Any] = {"dbx_warm_s": d["warm_s"], "warm_lt_0.5s": d["warm_s"] < TARGET_WARM_S}
    for peer in ("mlflow", "mlflow-file"):
        r = results.get(peer)
        if r is None:  # --no-peers
            continue
        if "missing" in r or "error" in r:
            out[f"faster_than_{peer}"] = not_measured(r.get("missing") or f"failed: {r['error']}")
            continue
        out[f"warm_speedup_vs_{peer}"] = r["warm_s"] / d["warm_s"]
        out[f"fresh_speedup_vs_{peer}"] = r["fresh_s"] / d["fresh_s"]
        out[f"faster_than_{peer}"] = r["warm_s"] > d["warm_s"] and r["fresh_s"] > d["fresh_s"]
    return out


def print_table(n: int, truth: int, results: dict[str, dict[str, Any]]) -> None:
    d = results["dbx"]

    def row(tool: str, r: dict[str, Any]) -> list[Any]:
        return [
            f"{tool} {r.get('version', '')}",
            f"{r['first_s']:.3f}",
            f"{r['warm_s']:.3f}",
            ratio(r["warm_s"], d.get("warm_s", 0)),
            f"{r['fresh_s']:.3f}",
            ratio(r["fresh_s"], d.get("fresh_s", 0)),
            r.get("backend", f"select only: {r.get('select_only_s', 0):.3f} s"),
        ]

    title = (
        f"{n:,} experiments (10 params, 5 results), filter matches {truth:,}\n"
        f"dbx ls --where {DBX_WHERE!r}\nmlflow.search_runs(filter_string={MLFLOW_FILTER!r})"
    )
    headers = ["tool", "1st call s", "warm s", "vs dbx", "fresh process s", "vs dbx", "note"]
    print_tool_table(title, headers, results, row)


if __name__ == "__main__":
    sys.exit(main())
