"""Scripts that run a study: pure functions from planned items to shell text.

Two targets: a local bash script (experiments in order, or in N parallel slots with a
barrier between stages) and a SLURM submission script (one job array per stage, with a
concurrency limit ``%N`` and an ``afterany`` dependency on the stage it runs after). Each
experiment runs with ``$DBX_EXPERIMENT`` set to its planned id, so the program's
``dbx.create`` records into it (:mod:`squeezr.dbx.adopt`).

The text depends only on its inputs (no dates, options sorted), and its header holds the
exact command that writes it again, so a script can be checked by regenerating it and
comparing bytes.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from squeezr.dbx.errors import UserError
from squeezr.dbx.study.spec import Item, Study

__all__ = ["local_script", "regenerate_command", "sbatch_options", "slurm_script"]


def regenerate_command(
    file: str,
    target: str,
    repo: Path,
    *,
    slots: int = 1,
    limit: int | None = None,
    output: str | None = None,
    pending: bool = False,
    sbatch: Sequence[str] = (),
) -> str:
    """The ``dbx study generate`` command line for these options, in one canonical order."""
    words = ["dbx", "study", "generate", file, f"--{target}", "--repo", str(repo)]
    if target == "local" and slots != 1:
        words += ["--slots", str(slots)]
    if target == "slurm" and limit is not None:
        words += ["--limit", str(limit)]
    if pending:
        words.append("--pending")
    if output is not None:
        words += ["-o", output]
    if sbatch:
        words += ["--", *sbatch]
    return shlex.join(words)


def sbatch_options(study: Study, given: Sequence[str]) -> dict[str, str | None]:
    """The study's ``[slurm]`` options overridden by ``given`` (``--time=1:00:00``,
    ``--partition gpu``, ``--exclusive``), as ``{option: value or None}``."""
    options: dict[str, str | None] = {}
    for key, value in study.slurm.items():
        if key == "limit":
            continue
        options[key.replace("_", "-")] = None if value is True else str(value)
    index = 0
    while index < len(given):
        word = given[index]
        if not word.startswith("--") or len(word) < 3:
            raise UserError(
                f"sbatch option {word!r}: give long options, e.g. -- --time=1:00:00 --partition gpu"
            )
        name, sep, value = word[2:].partition("=")
        if not sep and index + 1 < len(given) and not given[index + 1].startswith("-"):
            value, sep = given[index + 1], "="
            index += 1
        options[name] = value if sep else None
        index += 1
    for reserved in ("array", "job-name", "output", "dependency", "parsable"):
        if reserved in options:
            raise UserError(f"sbatch option --{reserved} is set by dbx study generate; drop it")
    return options


def _header(study: Study, count: int, how: str, repo: Path, cwd: Path, command: str) -> list[str]:
    stages = len(study.stages)
    return [
        "#!/usr/bin/env bash",
        f"# Study {study.name!r} from {study.path.name} (sha256 {study.sha256[:16]}):",
        f"# {count} experiments in {stages} stage{'s' if stages != 1 else ''}, {how}.",
        "# Written by dbx; regenerate it (byte for byte) with:",
        f"#   cd {shlex.quote(str(cwd))} && {command}",
        "# Each experiment runs with DBX_EXPERIMENT set to its planned id. Check the result",
        f"# with: dbx study test {shlex.quote(str(study.path))} --repo {shlex.quote(str(repo))}",
    ]


def _setup(study: Study, repo: Path) -> list[str]:
    lines = [f"cd {shlex.quote(str(study.workdir))}", f"export DBX_REPO={shlex.quote(str(repo))}"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(study.env.items())]
    return lines


def _by_stage(study: Study, items: Sequence[Item]) -> list[tuple[str, list[Item]]]:
    groups = [
        (stage.name, [item for item in items if item.stage == stage.name]) for stage in study.stages
    ]
    return [(name, group) for name, group in groups if group]


def local_script(
    study: Study, items: Sequence[Item], repo: Path, cwd: Path, command: str, slots: int = 1
) -> str:
    """A bash script running ``items`` on this machine: in order (``slots=1``), else up to
    ``slots`` at a time, each stage waiting for the one before."""
    if slots < 1:
        raise UserError(f"--slots must be 1 or more (got {slots})")
    how = "run in order" if slots == 1 else f"run in {slots} parallel slots"
    lines = _header(study, len(items), how, repo, cwd, command)
    lines += ["set -uo pipefail", *_setup(study, repo)]
    if slots > 1:
        lines += [
            f"slots={slots}",
            "slot() {  # wait until fewer than $slots experiments are running",
            '  while [ "$(jobs -rp | wc -l)" -ge "$slots" ]; do wait -n; done',
            "}",
        ]
    lines.append("failed=0")
    for stage, group in _by_stage(study, items):
        lines += ["", f"# stage {stage}: {len(group)} experiment{'s' if len(group) != 1 else ''}"]
        for item in group:
            run = f"(export DBX_EXPERIMENT={item.id}; {item.command})"
            if slots == 1:
                lines.append(f"{run} || failed=$((failed + 1))  # {item.name}")
            else:
                lines.append(f"slot; {run} &  # {item.name}")
        if slots > 1:
            lines.append("wait")
    lines += [
        "",
        'if [ "$failed" -gt 0 ]; then echo "$failed experiment(s) failed" >&2; exit 1; fi'
        if slots == 1
        else "# failures are recorded in each experiment: dbx study test tells which",
    ]
    return "\n".join(lines) + "\n"


def slurm_script(
    study: Study,
    items: Sequence[Item],
    repo: Path,
    cwd: Path,
    command: str,
    log_dir: Path,
    options: Mapping[str, str | None],
    limit: int | None = None,
) -> str:
    """A bash script that submits one SLURM job array per stage with ``sbatch`` (at most
    ``limit`` tasks of an array at a time), each stage after the one it depends on, and
    prints ``dbx-jobs: <stage>=<job id> ...`` for the runner to follow with ``squeue``."""
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be 1 or more (got {limit})")
    how = "as SLURM job arrays" + (f" of at most {limit} tasks at a time" if limit else "")
    lines = _header(study, len(items), how, repo, cwd, command)
    lines += ["set -euo pipefail", f"mkdir -p {shlex.quote(str(log_dir))}"]
    stages = {stage.name: stage for stage in study.stages}
    jobs = []
    for stage, group in _by_stage(study, items):
        array = f"0-{len(group) - 1}" + (f"%{limit}" if limit else "")
        job_options = {
            **options,
            "array": array,
            "job-name": f"{study.name}-{stage}",
            "output": str(log_dir / "%x-%A_%a.out"),
        }
        submit = "sbatch --parsable"
        after = stages[stage].after
        if after is not None and any(item.stage == after for item in items):
            submit += f' --dependency="afterany:${{{_var(after)}%%;*}}"'
        delimiter = f"DBX_{_var(stage).upper()}"
        lines += [
            "",
            f"# stage {stage}: {len(group)} experiments",
            f"{_var(stage)}=$({submit} <<'{delimiter}'",
        ]
        lines.append("#!/usr/bin/env bash")
        for name in sorted(job_options):
            value = job_options[name]
            lines.append(f"#SBATCH --{name}" + ("" if value is None else f"={value}"))
        lines += ["set -uo pipefail", *_setup(study, repo), 'case "$SLURM_ARRAY_TASK_ID" in']
        for index, item in enumerate(group):
            lines += [
                f"  {index})  # {item.name}",
                f"    export DBX_EXPERIMENT={item.id}",
                f"    {item.command} ;;",
            ]
        lines += ["esac", delimiter, ")"]
        jobs.append(f"{stage}=${{{_var(stage)}%%;*}}")
    lines += ["", f'echo "dbx-jobs: {" ".join(jobs)}"']
    return "\n".join(lines) + "\n"


def _var(stage: str) -> str:
    """A shell variable name for a stage's job id."""
    return "job_" + stage.replace("-", "_")
