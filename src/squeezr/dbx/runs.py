"""An experiment's runs as a researcher uses them: which run, its command line, its code.

``dbx cmd``, ``dbx code`` and ``dbx show`` (and :func:`command` in Python) read the run
records through these functions. The default run is the experiment's *first* recorded run,
normally run 1, the one that created it: later runs are usually add-ons (``dbx log``, an
evaluation script resuming the experiment), and "run it again" or "its code" means the run
that did the work. ``run=N`` picks another.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
from typing import Any

from squeezr.dbx.compare import label
from squeezr.dbx.errors import UserError
from squeezr.dbx.runinfo import REDACTED
from squeezr.dbx.store import Experiment

__all__ = [
    "STATUSES",
    "command",
    "command_line",
    "experiment_status",
    "git_info",
    "patch_bytes",
    "placeholders",
    "read_run",
    "run_status",
    "status_of_runs",
]

_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_]+")


def read_run(exp: Experiment, number: int | None = None) -> dict[str, Any]:
    """Run ``number`` of ``exp`` (default: its first recorded run) as a checked dict."""
    numbers = exp.run_numbers()
    if not numbers:
        raise UserError(f"experiment {exp.id} ({exp.name}) has no runs recorded")
    if number is None:
        number = numbers[0]
    elif number not in numbers:
        raise UserError(
            f"experiment {exp.id} has no run {number}; its runs are {', '.join(map(str, numbers))}"
        )
    return exp.run_record(number)


def command_line(record: dict[str, Any]) -> list[str]:
    """The argv that runs this run again.

    Records carry ``orig_argv`` (what the interpreter was given: ``python -m pkg.main ...``,
    ``python -c ...``, ``python -u train.py ...``), which is rebuilt with the recorded
    interpreter; a console script or executable run directly (``squeezr train ...``) is
    given back as it was typed. Older records only have ``argv``: a ``.py`` script is then
    run with the recorded interpreter.
    """
    argv = list(record.get("argv") or [])
    orig = list(record.get("orig_argv") or [])
    interpreter = (record.get("python") or {}).get("executable")
    if orig and interpreter:
        rest = orig[1:]
        direct = bool(argv) and rest == argv and not argv[0].endswith(".py")
        if direct and os.access(_resolved(argv[0], record), os.X_OK):
            return argv
        return [interpreter, *rest]
    if not argv:
        raise UserError(f"run {record.get('run')} has no command line recorded")
    if interpreter and argv[0].endswith(".py"):
        return [interpreter, *argv]
    return argv


def _resolved(program: str, record: dict[str, Any]) -> str:
    """``program`` as a path, relative ones taken from the run's working folder."""
    return os.path.join(record.get("cwd") or "", program)


def placeholders(argv: list[str]) -> list[str]:
    """Names of the shell variables :func:`command` asks for in place of redacted secrets."""
    return [name for _, name in _secrets(argv) if name]


def _secrets(argv: list[str]) -> list[tuple[int, str]]:
    """``(index, variable name)`` of each redacted argument: ``--api-key`` gives API_KEY."""
    found = []
    for index, arg in enumerate(argv):
        option, sep, value = arg.partition("=")
        if sep and value == REDACTED and option:  # --token=X, db.password=X
            found.append((index, _variable(option)))
        elif arg == REDACTED:
            previous = argv[index - 1] if index else ""
            found.append((index, _variable(previous) if previous.startswith("--") else "SECRET"))
    return found


def _variable(option: str) -> str:
    name = _NOT_IN_NAME.sub("_", option.lstrip("-")).strip("_").upper() or "SECRET"
    return f"_{name}" if name[0].isdigit() else name


def command(exp: Experiment, run: int | None = None) -> str:
    """``dbx cmd`` in Python: comment lines naming the experiment, run and git commit, then
    ``cd <cwd> && <command>``, quoted for a POSIX shell. A secret that was redacted when the
    run was recorded (``--token X``) becomes ``"${TOKEN:?...}"``: the shell refuses to run
    the command until the variable is set."""
    record = read_run(exp, run)
    argv = command_line(record)
    words = [shlex.quote(arg) for arg in argv]
    for index, name in _secrets(argv):
        message = f"set {name}: its value was redacted when the run was recorded"
        option, sep, _ = argv[index].partition("=")
        words[index] = (shlex.quote(option) + "=" if sep else "") + f'"${{{name}:?{message}}}"'
    line = " ".join(words)
    cwd = record.get("cwd")
    if cwd:
        line = f"cd {shlex.quote(cwd)} && {line}"
    return "\n".join([*(f"# {text}" for text in _comments(exp, record, argv)), line])


def _comments(exp: Experiment, record: dict[str, Any], argv: list[str]) -> list[str]:
    """Which experiment and run this is, the code version it ran, and what to fill in."""
    lines = [f"dbx experiment {label(exp)}, run {record['run']}"]
    git = git_info(record)
    if git.get("commit"):
        branch = f" (branch {git['branch']})" if git.get("branch") else ""
        lines.append(f"git commit {git['commit']}{branch}")
        if git.get("patch"):
            lines.append(f"plus uncommitted changes: dbx code {exp.id} --checkout BRANCH")
    else:
        lines.append("no git commit recorded")
    names = placeholders(argv)
    if names:
        lines.append(f"fill in {', '.join(names)}: redacted secrets")
    return lines


def git_info(record: dict[str, Any]) -> dict[str, Any]:
    """The run's git fields (commit, branch, ...); empty outside a git repository."""
    return record.get("git") or {}


def patch_bytes(exp: Experiment, record: dict[str, Any]) -> bytes:
    """The recorded patch of uncommitted changes exactly as git wrote it (source files need
    not be UTF-8), or b"" if the tree was clean."""
    name = git_info(record).get("patch")
    if not name:
        return b""
    path = exp.path / name
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(
            f"the patch {path} of run {record['run']} is missing; run dbx verify"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot read the patch {path}: {exc.strerror or exc}") from None


# What :func:`experiment_status` returns, in the order a run goes through them.
STATUSES = ("planned", "running", "done", "failed", "interrupted")

# Run statuses (squeezr.dbx.lifecycle) as experiment statuses. ``exited``: the program ended
# without closing its run, its exit code unknown (normally a script that simply returned);
# ``terminated``: SIGTERM, as a scheduler's time limit sends, so it is resumable.
_STATUS_OF_RUN = {
    "finished": "done",
    "exited": "done",
    "failed": "failed",
    "interrupted": "interrupted",
    "terminated": "interrupted",
    "running (process gone?)": "interrupted",
}


def experiment_status(exp: Experiment, damaged: str | None = None) -> str:
    """One word for where an experiment stands: ``planned`` (no run yet), ``running`` (a run
    whose process is alive, or one on another host that has not ended), else what its last
    run's ending means: ``done``, ``failed`` or ``interrupted`` (Ctrl-C, SIGTERM, or a
    process that vanished without ending its run: all resumable). A run record that cannot
    be read is a UserError, or with ``damaged`` given, that word (``dbx verify`` says why)."""
    try:
        records = [exp.run_record(number) for number in exp.run_numbers()]
    except UserError:
        if damaged is None:
            raise
        return damaged
    return status_of_runs(records)


def status_of_runs(records: list[dict[str, Any]]) -> str:
    """:func:`experiment_status` from run records already read (the web UI keeps them)."""
    if not records:
        return "planned"
    statuses = [run_status(record) for record in records]
    if "running" in statuses:
        return "running"
    return _STATUS_OF_RUN.get(statuses[-1] or "", "failed")


def run_status(record: dict[str, Any]) -> str | None:
    """The run's status; a ``running`` run whose process no longer exists on this host (it was
    killed, or the machine rebooted) is ``running (process gone?)``."""
    status = record.get("status")
    pid = record.get("pid")
    if (
        status != "running"
        or type(pid) is not int
        or record.get("hostname") != socket.gethostname()
    ):
        return status
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "running (process gone?)"
    except OSError:  # exists, owned by someone else
        pass
    return status
