"""``dbx study test``: is the study complete and correct in the repository?

Each experiment of the study is looked up by its name (so a study run by hand or by an old
script, never planned, is checked too) and judged in this order, reporting at most one
finding per experiment, the one to act on first:

* ``missing``: no experiment by that name ran (never planned, or planned and never run);
* ``duplicate``: more than one did (the same settings run twice);
* ``failed`` / ``unfinished``: its last run crashed, or is still running or was interrupted;
* ``params``: its params differ from the plan (``low_epochs = 3, expected 2``), compared
  with :func:`squeezr.dbx.compare.same` as ``dbx diff`` compares them;
* ``expect``: a result the stage expects is absent (:func:`squeezr.dbx.select.missing`) or
  an event pattern does not occur the expected number of times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from squeezr.dbx import expr
from squeezr.dbx.compare import same
from squeezr.dbx.runs import experiment_status
from squeezr.dbx.select import missing
from squeezr.dbx.store import Experiment, Repository
from squeezr.dbx.study.expand import expand, expected_params
from squeezr.dbx.study.plan import prefixes
from squeezr.dbx.study.spec import Item, Study

__all__ = ["Finding", "check"]


@dataclass
class Finding:
    """One problem of one planned experiment."""

    problem: str
    name: str
    ids: list[str]
    detail: str


def check(repo: Repository, study: Study, stage: str | None = None) -> tuple[list[Finding], int]:
    """The findings for ``study`` (one stage if given) in ``repo``, in plan order, and how
    many experiments were checked."""
    items = [item for item in expand(study) if stage is None or item.stage == stage]
    if stage is not None:
        study.stage(stage)
    by_name: dict[str, list[Experiment]] = {}
    for prefix in prefixes(study):
        for exp in repo.experiments(prefix=prefix or None):
            by_name.setdefault(exp.name, []).append(exp)
    findings = []
    for item in items:
        finding = _judge(study, item, by_name.get(item.name, []))
        if finding is not None:
            findings.append(finding)
    return findings, len(items)


def _judge(study: Study, item: Item, candidates: list[Experiment]) -> Finding | None:
    statuses = [(exp, experiment_status(exp)) for exp in candidates]
    ran = [(exp, status) for exp, status in statuses if status != "planned"]
    if not ran:
        detail = "planned, never ran" if candidates else "not in the repository"
        return Finding("missing", item.name, [exp.id for exp in candidates], detail)
    if len(ran) > 1:
        listed = ", ".join(f"{exp.id} ({status})" for exp, status in ran)
        return Finding("duplicate", item.name, [e.id for e, _ in ran], f"{len(ran)} runs: {listed}")
    exp, status = ran[0]
    if status == "failed":
        return Finding("failed", item.name, [exp.id], _failure(exp))
    if status != "done":
        return Finding("unfinished", item.name, [exp.id], status)
    wrong = _param_mismatches(exp, expected_params(study, item))
    if wrong:
        return Finding("params", item.name, [exp.id], "; ".join(wrong))
    unmet = _unmet(exp, study.stage(item.stage).expect)
    if unmet:
        return Finding("expect", item.name, [exp.id], "; ".join(unmet))
    return None


def _failure(exp: Experiment) -> str:
    """The last run's end, e.g. ``run 1 failed (exit 1): ZeroDivisionError: division by zero``."""
    record = exp.run_record(exp.run_numbers()[-1])
    text = f"run {record.get('run')} failed (exit {record.get('exit_code')})"
    error = record.get("exception") or {}
    if error.get("type"):
        text += f": {error['type']}: {error.get('message', '')}".rstrip(": ")
    return text


def _param_mismatches(exp: Experiment, expected: dict[str, Any]) -> list[str]:
    wrong = []
    for path, wanted in expected.items():
        actual = exp.value("params." + path)
        if actual is expr.MISSING:
            wrong.append(f"{path} absent, expected {_show(wanted)}")
        elif not same(actual, wanted):
            wrong.append(f"{path} = {_show(actual)}, expected {_show(wanted)}")
    return wrong


def _unmet(exp: Experiment, expect: Any) -> list[str]:
    unmet = []
    if expect.results:
        for _, lacking in missing([exp], results=expect.results):
            unmet += [f"no {what}" for what in lacking]
    if expect.events:
        from squeezr.dbx.query.pattern import compile_pattern  # imports pandas: only if asked

        names = {event["name"] for event in exp.events()}
        for text, wanted in expect.events.items():
            pattern = compile_pattern(text)
            count = sum(1 for name in names if pattern.match(name) is not None)
            if count != wanted:
                unmet.append(f"{count} {text} events, expected {wanted}")
    return unmet


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
