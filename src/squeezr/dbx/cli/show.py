"""``dbx show EXP``: one experiment at a glance: meta, params, results, runs, attachments,
notes and its last events. ``--json`` gives the same as one JSON object (Extended JSON for
NaN/±Infinity, as in the repository's files).

Only the ends of the logs are read (``Experiment.last_events``), so showing an experiment
costs the same whatever its logs' size. Event data prints as ``key=value`` pairs, floats to
6 significant digits, cut at 100 characters; ``--json`` keeps every value as it is."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from squeezr.dbx import jsonx
from squeezr.dbx.cli import common
from squeezr.dbx.clikit import text_table
from squeezr.dbx.errors import UserError
from squeezr.dbx.runs import command_line, git_info, run_status
from squeezr.dbx.store import Experiment
from squeezr.dbx.timeutil import to_datetime
from squeezr.dbx.views import flatten

DATA_WIDTH = 100  # characters of an event's data that `show` prints (--json has it all)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "show",
        __doc__,
        main,
        help="one experiment: meta, params, results, runs, attachments, last events",
    )
    common.add_experiment_argument(parser)
    parser.add_argument("-n", "--events", type=int, default=10, help="last events to show")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    common.add_repo_option(parser)


def main(args: argparse.Namespace) -> int:
    if args.events < 0:
        raise UserError(f"--events must be 0 or more (got {args.events})")
    exp = common.repository(args).get(args.ref)
    report = describe(exp, args.events)
    print(jsonx.encode(report, indent=1) if args.json else render(report))
    return 0


def describe(exp: Experiment, last: int) -> dict[str, Any]:
    """Everything ``show`` prints, as plain data."""
    events, total = exp.last_events(last)
    created = exp.created
    return {
        "id": exp.id,
        "name": exp.name,
        "kind": exp.kind,
        "created": created.isoformat() if created else None,
        "path": str(exp.path),
        "params": exp.value("params"),
        "results": exp.results.tree(),
        "notes": exp.notes,
        "runs": [_run_summary(record) for record in exp.runs()],
        "attachments": [
            {"path": info["path"], "size": info["size"], "sha256": info["sha256"]}
            for _, info in sorted(exp.attachments.items())
        ],
        "events_total": total,
        "events": events,
    }


def _run_summary(record: dict[str, Any]) -> dict[str, Any]:
    """One row about a run."""
    commit = git_info(record).get("commit")
    return {
        "run": record["run"],
        "start": record.get("start"),
        "end": record.get("end"),
        "status": run_status(record),
        "exit_code": record.get("exit_code"),
        "host": record.get("hostname"),
        "commit": commit[:12] if isinstance(commit, str) else None,
        "command": command_line(record) if record.get("argv") or record.get("orig_argv") else [],
    }


def render(report: dict[str, Any]) -> str:
    """The human-readable form: a header, then one small aligned table per section."""
    lines = [
        f"experiment {report['id']}  {report['name']}",
        f"kind       {report['kind']}",
        f"created    {report['created']}",
        f"path       {report['path']}",
    ]
    for title in ("params", "results"):
        flat = flatten(report[title])
        lines += ["", f"{title}:"]
        lines += _indent(text_table(flat.items(), style="plain"))
    if report["notes"]:
        lines += ["", "notes:", *_indent(report["notes"].rstrip("\n"))]
    if report["runs"]:
        rows = [{**run, "command": shlex.join(run["command"])} for run in report["runs"]]
        lines += ["", "runs:", *_indent(_table(rows))]
    if report["attachments"]:
        lines += ["", "attachments:", *_indent(_table(report["attachments"]))]
    shown = report["events"]
    if shown:
        rows = [
            {
                "time": _time(event["ts"]),
                "run": event["run"],
                "name": event["name"],
                "data": compact(event["data"]),
            }
            for event in shown
        ]
        title = f"last {len(shown)} of {report['events_total']} events:"
        lines += ["", title, *_indent(_table(rows))]
    return "\n".join(lines)


def compact(data: dict[str, Any], width: int = DATA_WIDTH) -> str:
    """An event's data as ``key=value`` pairs (nested keys dotted) at most ``width``
    characters wide (cut with ``…``); floats to 6 significant digits, so a column of events
    lines up however many digits a value carries."""
    pairs = " ".join(f"{key}={_number(value)}" for key, value in flatten(data).items())
    return pairs if len(pairs) <= width else pairs[: width - 1] + "…"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return jsonx.encode(value)


def _table(rows: list[dict[str, Any]]) -> str:
    """Rows that all have the same keys, under those keys as headers."""
    return text_table([row.values() for row in rows], list(rows[0]))


def _time(ts: float) -> str:
    """An event's epoch timestamp as UTC ISO time to the millisecond (as it is if out of
    range)."""
    moment = to_datetime(ts)
    return moment.isoformat(timespec="milliseconds") if moment else str(ts)


def _indent(text: str) -> list[str]:
    return ["  " + line for line in text.splitlines()]
