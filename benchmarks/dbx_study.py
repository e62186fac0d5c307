"""Study planning and checking at scale: ``dbx study plan`` / ``dbx study test`` over 10,000.

Why: the thesis's studies ran hundreds to thousands of experiments; the issue's target is
that planning and testing a 10,000-experiment study take under 2 s each, so they can be
run after every edit of the study file and every batch of finished jobs.

Workload: one stage, a grid of 100 seeds x 10 learning rates x 10 methods (10,000
experiments) with a results expectation. Timed, each in process, warm (OS file cache), best
of ``--repeat`` (3) measurements taken in turn with the reference's, so that a load that
varies over the run affects every step alike:

* ``plan (first)``: recording all 10,000 planned experiments (not part of the target: it is
  done once; planned records are written without fsync, as they can be rebuilt);
* ``plan``: re-planning the unchanged file (every item compared with its record; the target);
* ``plan --dry-run`` on an empty repository (expansion alone, nothing recorded);
* ``test (planned)``: study test while nothing has run (10,000 "missing");
* ``test (done)``: study test after every experiment has a finished run and its result (run
  records and results are written directly in dbx's format, not by 10,000 processes);
* reference: ``dbx ls`` over the same 10,000 experiments, which reads every ``meta.json``
  once, the floor any whole-study command pays; the ratios say how close to it plan and
  test are.

Usage: ``python benchmarks/dbx_study.py [--quick] [--dir DIR]``.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

from _common import parser, print_targets, ratio, report, timer
from squeezr.dbx import jsonx
from squeezr.dbx.cli import main as dbx
from squeezr.dbx.store import Repository

TARGET_S = 2.0


def study_file(folder: Path, seeds: int) -> Path:
    path = folder / "big.toml"
    path.write_text(
        f"""name = "big"

[[stage]]
name = "train"
command = "python train.py --seed {{seed}} --lr {{lr}} --method {{method}}"
experiment = "big/{{method}}/lr{{lr}}/s{{seed}}"
params = {{ epochs = 2 }}
seeds = {list(range(seeds))}
grid.lr = [0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001]
grid.method = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"]
expect.results = ["acc"]
"""
    )
    return path


def quiet(*argv: str) -> int:
    """Run ``dbx ARGV`` in process with its output discarded; its exit status."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return dbx(list(argv))


def finish_all(repo: Repository) -> None:
    """Give every planned experiment a finished run and a result, as a run would."""
    for exp in repo.experiments("big/"):
        record = {"run": 1, "status": "finished", "exit_code": 0, "hostname": "bench"}
        (exp.path / "run-1.json").write_text(jsonx.encode(record))
        (exp.path / "log-1.jsonl").write_text("")
        (exp.path / "results.json").write_text(jsonx.encode({"acc": 0.9}))


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--dir", help="work folder (default: a temporary one, on /dev/shm if any)")
    p.add_argument("--repeat", type=int, default=3, help="measurements per step; the best counts")
    args = p.parse_args()
    seeds = 5 if args.quick else 100
    count = seeds * 100
    base = args.dir or tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    folder = Path(base)
    folder.mkdir(parents=True, exist_ok=True)
    path = study_file(folder, seeds)
    empty = Repository.init(folder / "empty")
    repo_path = folder / "experiments"
    if repo_path.exists():
        import shutil

        shutil.rmtree(repo_path)
    repo = Repository.init(repo_path)
    os.chdir(folder)
    repo_arg = ["--repo", str(repo.path)]
    steps = {
        "ls_s": ["ls", "big/", *repo_arg],
        "plan_dry_run_s": ["study", "plan", str(path), "--repo", str(empty.path), "--dry-run"],
        "plan_s": ["study", "plan", str(path), *repo_arg],
        "test_planned_s": ["study", "test", str(path), *repo_arg],
    }
    expected = {"ls_s": 0, "plan_dry_run_s": 0, "plan_s": 0, "test_planned_s": 1, "test_done_s": 0}
    figures: dict[str, float] = {}

    def measure(key: str, argv: list[str]) -> None:
        with timer() as t:
            code = quiet(*argv)
        assert code == expected[key], f"{key}: exit {code}"
        figures[key] = min(figures.get(key, float("inf")), t.seconds)

    with timer() as t:
        assert quiet("study", "plan", str(path), *repo_arg) == 0
    figures["plan_first_s"] = t.seconds
    for _ in range(args.repeat):  # interleaved, best of N: a shared machine's load varies
        for key, argv in steps.items():
            measure(key, argv)
    finish_all(repo)
    for _ in range(args.repeat):
        measure("ls_s", steps["ls_s"])
        measure("test_done_s", ["study", "test", str(path), *repo_arg])

    print(f"study of {count:,} experiments ({folder})\n")
    print(f"{'step':<28}{'seconds':>9}{'vs dbx ls':>12}")
    for key, label in [
        ("ls_s", "reference: dbx ls"),
        ("plan_dry_run_s", "plan --dry-run (empty repo)"),
        ("plan_first_s", "plan (first, records all)"),
        ("plan_s", "plan (re-plan, unchanged)"),
        ("test_planned_s", "test (nothing ran)"),
        ("test_done_s", "test (all done)"),
    ]:
        print(f"{label:<28}{figures[key]:>9.2f}{ratio(figures[key], figures['ls_s']):>12}")
    print()
    targets = {
        f"plan under {TARGET_S:g} s": figures["plan_s"] < TARGET_S,
        f"test under {TARGET_S:g} s": max(figures["test_planned_s"], figures["test_done_s"])
        < TARGET_S,
    }
    print_targets(targets)
    report("dbx_study", {"experiments": count, **figures})
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
