"""Study planning and checking at scale: ``dbx study plan`` / ``dbx study test`` over 10,000.

Why: the thesis's studies ran hundreds to thousands of experiments; the issue's target is
that planning and testing a 10,000-experiment study take under 2 s each, so they can be
run after every edit of the study file and every batch of finished jobs.

Workload: one stage, a grid of 100 seeds x 10 learning rates x 10 methods (10,000
experiments) with a results expectation. Each step is timed twice: as a user runs it, a new
``dbx`` process (interpreter start-up, imports and the table printed to a discarded stream:
what the target is about), and in process (the work alone). Warm OS file cache, best of
``--repeat`` (3) measurements taken in turn with the reference's, so that a load that varies
over the run affects every step alike:

* ``plan (first)``: recording all 10,000 planned experiments (done once per study; planned
  records are written without fsync, as they can be rebuilt); once, in a fresh repository;
* ``plan``: re-planning the unchanged file (every item compared with its record);
* ``plan --dry-run`` on an empty repository (expansion alone, nothing recorded);
* ``test (planned)``: study test while nothing has run (10,000 "missing");
* ``test (done)``: study test after every experiment has a finished run and its result (run
  records and results are written directly in dbx's format, not by 10,000 processes);
* reference: ``dbx ls`` over the same 10,000 experiments, which reads every ``meta.json``
  once and prints a 10,000-row table, the floor any whole-study command pays; the ratios say
  how close to it plan and test are.

With ``--before SRC`` (another squeezr's ``src/`` folder, e.g. a ``git worktree`` of an
older commit) each step also runs as that squeezr's ``dbx`` process, in turn with this one's,
so before/after figures come from one run.

Usage: ``python benchmarks/dbx_study.py [--quick] [--dir DIR] [--before SRC]``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
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


# `dbx ARGV` in a new interpreter, as the console script runs it (this squeezr: PYTHONPATH
# is inherited), its output discarded.
DBX = [sys.executable, "-c", "import sys; from squeezr.dbx.cli import main; sys.exit(main())"]


CPU: dict[str, float] = {"last": 0.0}  # CPU seconds of the last command's process


def command(*argv: str, src: str | None = None) -> int:
    """Run ``dbx ARGV`` as a new process (with the squeezr of source tree ``src`` if given);
    its exit status. Its CPU time (user + system) goes to ``CPU["last"]``: on a shared
    machine it varies less with the load than wall time."""
    env = None if src is None else {**os.environ, "PYTHONPATH": src}
    process = subprocess.Popen(
        [*DBX, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    _, status, usage = os.wait4(process.pid, 0)
    CPU["last"] = usage.ru_utime + usage.ru_stime
    return os.waitstatus_to_exitcode(status)


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
    p.add_argument(
        "--before",
        metavar="SRC",
        help="another squeezr's src/ folder (e.g. a git worktree of an older commit): its dbx "
        "processes are timed too, in turn with this one's",
    )
    args = p.parse_args()
    seeds = 5 if args.quick else 100
    count = seeds * 100
    base = args.dir or tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    folder = Path(base)
    folder.mkdir(parents=True, exist_ok=True)
    path = study_file(folder, seeds)
    empty = Repository.init(folder / "empty")
    for stale in ("experiments", "first", "first-before"):
        shutil.rmtree(folder / stale, ignore_errors=True)
    repo = Repository.init(folder / "experiments")
    first = Repository.init(folder / "first")
    versions = {"cli": None, **({"before_cli": args.before} if args.before else {})}
    os.chdir(folder)
    repo_arg = ["--repo", str(repo.path)]
    steps = {
        "ls": ["ls", "big/", *repo_arg],
        "plan_dry_run": ["study", "plan", str(path), "--repo", str(empty.path), "--dry-run"],
        "plan": ["study", "plan", str(path), *repo_arg],
        "test_planned": ["study", "test", str(path), *repo_arg],
    }
    expected = {"ls": 0, "plan_dry_run": 0, "plan": 0, "test_planned": 1, "test_done": 0}
    figures: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        figures[name] = min(figures.get(name, float("inf")), seconds)

    def measure(key: str, argv: list[str]) -> None:
        for how, src in versions.items():
            with timer() as t:
                code = command(*argv, src=src)
            assert code == expected[key], f"{key} ({how}): exit {code}"
            keep(f"{key}_{how}_s", t.seconds)
            keep(f"{key}_{how}_cpu_s", CPU["last"])
        with timer() as t:
            code = quiet(*argv)
        assert code == expected[key], f"{key} (in process): exit {code}"
        keep(f"{key}_in_process_s", t.seconds)

    for how, src in versions.items():
        target = first if src is None else Repository.init(folder / "first-before")
        with timer() as t:
            assert command("study", "plan", str(path), "--repo", str(target.path), src=src) == 0
        figures[f"plan_first_{how}_s"] = t.seconds
        figures[f"plan_first_{how}_cpu_s"] = CPU["last"]
        shutil.rmtree(target.path)
    quiet("ls", "--repo", str(empty.path))  # imports the commands, as a process would
    with timer() as t:
        assert quiet("study", "plan", str(path), *repo_arg) == 0
    figures["plan_first_in_process_s"] = t.seconds
    for _ in range(args.repeat):  # interleaved, best of N: a shared machine's load varies
        for key, argv in steps.items():
            measure(key, argv)
    finish_all(repo)
    for _ in range(args.repeat):
        measure("ls", steps["ls"])
        measure("test_done", ["study", "test", str(path), *repo_arg])

    print(f"study of {count:,} experiments ({folder}); load average {os.getloadavg()[0]:.1f}\n")
    before = "   before  its CPU" if args.before else ""
    print(
        f"{'step':<28}{'dbx process':>12}{'its CPU':>9}{'in process':>12}{'vs dbx ls':>11}{before}"
    )
    for key, label in [
        ("ls", "reference: dbx ls"),
        ("plan_dry_run", "plan --dry-run (empty repo)"),
        ("plan_first", "plan (first, records all)"),
        ("plan", "plan (re-plan, unchanged)"),
        ("test_planned", "test (nothing ran)"),
        ("test_done", "test (all done)"),
    ]:
        cli, cpu = figures[f"{key}_cli_s"], figures[f"{key}_cli_cpu_s"]
        inside = figures[f"{key}_in_process_s"]
        vs_ls = ratio(cli, figures["ls_cli_s"])
        line = f"{label:<28}{cli:>12.2f}{cpu:>9.2f}{inside:>12.2f}{vs_ls:>11}"
        if args.before:
            line += (
                f"{figures[f'{key}_before_cli_s']:>9.2f}{figures[f'{key}_before_cli_cpu_s']:>9.2f}"
            )
        print(line)
    print()
    targets = {  # as a user runs them: a new process each
        f"first plan under {TARGET_S:g} s": figures["plan_first_cli_s"] < TARGET_S,
        f"plan under {TARGET_S:g} s": figures["plan_cli_s"] < TARGET_S,
        f"test under {TARGET_S:g} s": max(figures["test_planned_cli_s"], figures["test_done_cli_s"])
        < TARGET_S,
    }
    print_targets(targets)
    report("dbx_study", {"experiments": count, "load_average": os.getloadavg()[0], **figures})
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
