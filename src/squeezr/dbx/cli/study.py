"""``dbx study plan|generate|run|test FILE``: designed sets of experiments (docs/studies.md).

A study file (TOML) names a base command, the params to rotate, seeds and dependencies
between stages. ``plan`` records its experiments in the repository (status ``planned``) and
shows what changed since the last plan; ``generate`` writes a script that runs them (local
or SLURM job arrays); ``run`` runs them itself on GPUs/CPU slots or through SLURM; ``test``
checks the repository against the plan (exit 1 on any problem). Python:
``squeezr.dbx.study``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from squeezr.dbx import clikit
from squeezr.dbx.cli import common
from squeezr.dbx.clikit import IntermixedParser
from squeezr.dbx.errors import UserError
from squeezr.dbx.fileio import atomic_write
from squeezr.dbx.store import Repository
from squeezr.dbx.study import render, slurm
from squeezr.dbx.study.check import Finding, check
from squeezr.dbx.study.plan import PLACEHOLDER_ID, Change, plan, study_dir, with_commands
from squeezr.dbx.study.runner import Runner, make_slots
from squeezr.dbx.study.spec import Study, load

EPILOG = """examples:
  dbx study plan studies/digits.toml
  dbx study generate studies/digits.toml --local --slots 2 -o run-digits.sh
  dbx study generate studies/cifar10.toml --slurm --limit 8 -o submit.sh -- --time=12:00:00 --gres=gpu:1
  dbx study run studies/digits.toml --slots 2
  dbx study test studies/digits.toml"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "study",
        __doc__,
        _no_verb,
        help="plan, generate, run and test studies",
        epilog=EPILOG,
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=IntermixedParser)

    p = verbs.add_parser("plan", help="record the study's experiments; show what changed")
    _file(p)
    p.add_argument("--dry-run", action="store_true", help="show the plan, record nothing")
    clikit.add_output_options(p)
    p.set_defaults(func=plan_main)

    g = verbs.add_parser("generate", help="write a script that runs the study (local or SLURM)")
    _file(g)
    target = g.add_mutually_exclusive_group(required=True)
    target.add_argument("--local", dest="target", action="store_const", const="local")
    target.add_argument("--slurm", dest="target", action="store_const", const="slurm")
    g.add_argument("--slots", type=int, default=1, help="local: experiments at a time (default 1)")
    g.add_argument("--limit", type=int, help="slurm: array tasks at a time (%%N)")
    g.add_argument("--pending", action="store_true", help="only experiments not done yet")
    g.add_argument("-o", "--output", help="write the script here (default: print it)")
    g.add_argument("sbatch", nargs="*", metavar="SBATCH", help="after --: sbatch options")
    g.set_defaults(func=generate_main)

    r = verbs.add_parser("run", help="run the pending experiments (GPUs, CPU slots or SLURM)")
    _file(r)
    r.add_argument("--slots", type=int, help="CPU slots: experiments at a time (default 1)")
    r.add_argument("--gpus", help="GPU indices (0,1) or 'all'; one slot per GPU unless --per-gpu")
    r.add_argument("--per-gpu", type=int, default=1, help="experiments at a time per GPU")
    r.add_argument("--retries", type=int, default=1, help="restarts of a failed experiment")
    r.add_argument("--slurm", action="store_true", help="submit job arrays with sbatch instead")
    r.add_argument("--limit", type=int, help="slurm: array tasks at a time")
    r.add_argument("--poll", type=float, default=None, help="seconds between status checks")
    r.add_argument("sbatch", nargs="*", metavar="SBATCH", help="after --: sbatch options")
    r.set_defaults(func=run_main)

    t = verbs.add_parser("test", help="check the repository against the study (exit 1 if not)")
    _file(t)
    t.add_argument("--stage", help="check this stage only")
    clikit.add_output_options(t)
    t.set_defaults(func=test_main)


def _file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the study file (TOML)")
    common.add_repo_option(parser)


def _no_verb(args: argparse.Namespace) -> int:
    raise UserError("say what to do: dbx study plan|generate|run|test FILE (see dbx study --help)")


def _changes(
    args: argparse.Namespace, dry_run: bool = False
) -> tuple[Repository, Study, list[Change]]:
    study = load(args.file)
    repo = common.repository(args)
    return repo, study, plan(repo, study, dry_run=dry_run)


def _planned(changes: list[Change], study: Study) -> list[Change]:
    """The changes of the items still in the study, their commands filled in."""
    kept = [c for c in changes if not c.change.startswith("removed")]
    with_commands(study, [c.item for c in kept])
    return kept


def plan_main(args: argparse.Namespace) -> int:
    repo, study, changes = _changes(args, dry_run=args.dry_run)
    rows = [
        {
            "stage": c.item.stage,
            "name": c.item.name,
            "id": "-"
            if c.item.id == PLACEHOLDER_ID
            else common.short_id(c.item.id or "", args.fmt),
            "status": c.status,
            "change": c.change,
            "detail": c.detail,
        }
        for c in changes
    ]
    if args.fmt == "table" and not any(row["detail"] for row in rows):
        for row in rows:
            del row["detail"]
    clikit.emit(rows, args.fmt)
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.change] = counts.get(c.change, 0) + 1
    summary = ", ".join(f"{n} {change}" for change, n in counts.items())
    verb = "would record" if args.dry_run else "recorded"
    print(f"dbx study plan: {study.name}: {summary} ({verb} in {repo.path})", file=sys.stderr)
    return 0


def generate_main(args: argparse.Namespace) -> int:
    repo, study, changes = _changes(args)
    kept = _planned(changes, study)
    items = [c.item for c in kept if not args.pending or c.status != "done"]
    command = render.regenerate_command(
        args.file,
        args.target,
        repo.path,
        slots=args.slots,
        limit=args.limit,
        output=args.output,
        pending=args.pending,
        sbatch=args.sbatch,
    )
    cwd = Path.cwd()
    if args.target == "local":
        if args.sbatch:
            raise UserError("sbatch options are for --slurm; drop them or use --slurm")
        text = render.local_script(study, items, repo.path, cwd, command, slots=args.slots)
    else:
        options = render.sbatch_options(study, args.sbatch)
        limit = args.limit if args.limit is not None else study.slurm.get("limit")
        logs = study_dir(repo, study) / "slurm"
        text = render.slurm_script(study, items, repo.path, cwd, command, logs, options, limit)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    output = Path(args.output)
    atomic_write(output, text)
    output.chmod(0o755)
    print(f"dbx study generate: wrote {output} ({len(items)} experiments)", file=sys.stderr)
    return 0


def run_main(args: argparse.Namespace) -> int:
    repo, study, changes = _changes(args)
    kept = _planned(changes, study)
    items = [c.item for c in kept]
    if not args.slurm:
        if args.sbatch or args.limit is not None:
            raise UserError("--limit and sbatch options are for --slurm")
        slots = make_slots(args.slots, args.gpus, args.per_gpu)
        runner = Runner(repo, study, items, slots, retries=args.retries, poll=args.poll or 0.5)
        return runner.run()
    pending = [c.item for c in kept if c.status != "done"]
    if not pending:
        print("dbx study run: every experiment is done", file=sys.stderr)
        return 0
    script = study_dir(repo, study) / "submit.sh"
    command = render.regenerate_command(
        args.file,
        "slurm",
        repo.path,
        limit=args.limit,
        output=str(script),
        pending=True,
        sbatch=args.sbatch,
    )
    options = render.sbatch_options(study, args.sbatch)
    limit = args.limit if args.limit is not None else study.slurm.get("limit")
    logs = study_dir(repo, study) / "slurm"
    atomic_write(
        script,
        render.slurm_script(study, pending, repo.path, Path.cwd(), command, logs, options, limit),
    )
    jobs = slurm.submit(script)
    print(
        "dbx study run: submitted " + ", ".join(f"{s} as job {j}" for s, j in jobs.items()),
        file=sys.stderr,
    )
    slurm.wait(list(jobs.values()), poll=args.poll or 2.0)
    findings, checked = check(repo, study)
    _summary(study.name, findings, checked)
    return 1 if findings else 0


def test_main(args: argparse.Namespace) -> int:
    study = load(args.file)
    findings, checked = check(common.repository(args), study, stage=args.stage)
    if findings or args.fmt != "table":
        clikit.emit(
            [
                {
                    "problem": f.problem,
                    "experiment": f.name,
                    "ids": ",".join(common.short_id(i, args.fmt) for i in f.ids),
                    "detail": f.detail,
                }
                for f in findings
            ],
            args.fmt,
        )
    _summary(study.name, findings, checked)
    return 1 if findings else 0


def _summary(name: str, findings: list[Finding], checked: int) -> None:
    if not findings:
        print(f"dbx study test: {name}: all {checked} experiments done as planned", file=sys.stderr)
        return
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.problem] = counts.get(finding.problem, 0) + 1
    shown = ", ".join(f"{n} {problem}" for problem, n in counts.items())
    print(
        f"dbx study test: {name}: {len(findings)} of {checked} experiments have problems ({shown})",
        file=sys.stderr,
    )
