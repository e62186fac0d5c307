"""``dbx log EXP NAME key=value ...``: append an event from the shell.

For add-on metrics computed outside Python (a shell script, another tool). Values are read as
JSON when they parse (``acc=0.93``, ``ok=true``, ``xs=[1,2]``, ``NaN``) and kept as strings
otherwise; dotted keys nest (``eval.top1=0.9`` gives ``{"eval": {"top1": 0.9}}``). Each call is
a new run of the experiment, so the event records where it came from; ``dbx cmd`` and
``dbx code`` keep pointing at the run that created the experiment.
"""

from __future__ import annotations

import argparse
from typing import Any

from squeezr.dbx import expr, jsonx
from squeezr.dbx.cli import common
from squeezr.dbx.compare import label
from squeezr.dbx.errors import UserError
from squeezr.dbx.store import resume
from squeezr.dbx.views import set_dotted


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "log",
        __doc__,
        main,
        help="append an event to an experiment from the shell",
        epilog="example: dbx log 3f2a eval/test test_acc=0.912 split=test",
    )
    common.add_experiment_argument(parser)
    parser.add_argument("name", help="event name, e.g. eval/test")
    parser.add_argument("fields", nargs="*", metavar="KEY=VALUE", help="event data")
    common.add_repo_option(parser)


def main(args: argparse.Namespace) -> int:
    data = parse_fields(args.fields)
    if not args.name.strip("/"):
        raise UserError("the event name is empty; give one such as eval/test")
    with resume(args.ref, repo=common.repository(args)) as exp:
        exp.log(args.name, data)
    print(f"logged {args.name} to {label(exp)}")
    return 0


def parse_fields(fields: list[str]) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` -> ``{"a": 1, "b": {"c": "x"}}``; values are JSON where possible."""
    data: dict[str, Any] = {}
    for field in fields:
        key, sep, text = field.partition("=")
        if not sep or not all(key.split(".")):
            raise UserError(f"cannot read {field!r}; write event data as key=value, e.g. acc=0.9")
        try:
            value: Any = jsonx.loads(text)
        except jsonx.TooDeep as exc:
            raise UserError(f"cannot read {key}=...: {exc}") from None
        except ValueError:
            value = text
        if isinstance(expr.dig(data, key), dict):
            raise UserError(f"{key!r} conflicts with earlier keys under it")
        set_dotted(data, key, value, what="event field")
    return data
