"""``dbx show EXP``: one experiment at a glance: meta, params, results, runs, attachments,
notes and its last events. ``--json`` gives the same as one JSON object."""

from __future__ import annotations

import argparse
import json
import shlex
from datetime import UTC, datetime
from typing import Any

from tabulate import tabulate

from squeezr.dbx.cli import common, runs
from squeezr.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "show",
        help="one experiment: meta, params, results, runs, attachments, last events",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("ref", metavar="EXP", help="id, id prefix or name")
    parser.add_argument("-n", "--events", type=int, default=10, help="last events to show")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    common.add_repo_option(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.events < 0:
        raise UserError(f"--events must be 0 or more (got {args.events})")
    exp = common.open_experiment(args.ref, common.repository(args))
    report = describe(exp, args.events)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print(render(report))
    return 0


def describe(exp: Any, last: int) -> dict[str, Any]:
    """Everything ``show`` prints, as plain data."""
    events = exp.events()
    return {
        "id": exp.id,
        "name": exp.name,
        "kind": exp.kind,
        "created": exp.created.isoformat() if exp.created else None,
        "path": str(exp.path),
        "params": dict(exp.params),
        "results": dict(exp.results),
        "notes": exp.notes or "",
        "runs": [runs.summary(record) for record in exp.runs()],
        "attachments": [
            {"path": info.get("path"), "size": info.get("size"), "sha256": info.get("sha256")}
            for _, info in sorted(exp.attachments.items())
        ],
        "events_total": len(events),
        "events": events[-last:] if last else [],
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
        flat = common.flatten(report[title])
        lines += ["", f"{title}:"]
        lines += _indent(tabulate([(k, common.cell(v)) for k, v in flat.items()], tablefmt="plain"))
    if report["notes"]:
        lines += ["", "notes:", *_indent(report["notes"].rstrip("\n"))]
    if report["runs"]:
        rows = [{**run, "command": shlex.join(run["command"])} for run in report["runs"]]
        lines += ["", "runs:", *_indent(tabulate(rows, headers="keys", tablefmt="simple"))]
    if report["attachments"]:
        table = tabulate(report["attachments"], headers="keys", tablefmt="simple")
        lines += ["", "attachments:", *_indent(table)]
    shown = report["events"]
    if shown:
        rows = [
            {
                "time": _time(event.get("ts")),
                "run": event.get("run"),
                "name": event.get("name"),
                "data": common.cell(event.get("data", {})),
            }
            for event in shown
        ]
        title = f"last {len(shown)} of {report['events_total']} events:"
        lines += ["", title, *_indent(tabulate(rows, headers="keys", tablefmt="simple"))]
    return "\n".join(lines)


def _time(ts: Any) -> Any:
    """An event's epoch timestamp as UTC ISO time to the millisecond."""
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return ts


def _indent(text: str) -> list[str]:
    return ["  " + line for line in text.splitlines()]
