"""Shared plumbing for the ``squeezr`` and ``dbx`` command lines.

Both CLIs are argparse programs whose subcommands live in their own modules; each such module
defines ``register(subparsers)`` which adds its parser and sets ``func`` (``args -> int``).
Every subcommand takes its options and positionals in any order (``dbx query Q --csv PREFIX``,
``squeezr compare A --step 3 B``).
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, time
from typing import Any, TextIO

from squeezr.dbx import jsonx
from squeezr.dbx.errors import DbxWarning, UserError
from squeezr.dbx.fileio import os_error
from squeezr.dbx.lifecycle import EXIT_INTERRUPTED

EXIT_USER_ERROR = 2
_ROLE = re.compile(r":[a-z]+:`~?([^`<]+?)(?:\s*<[^>]*>)?`")


def plain_text(doc: str) -> str:
    """A docstring as ``--help`` shows it: reStructuredText markup (double backquotes,
    ``:func:`name``` roles) taken out, the words kept."""
    return _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], doc).replace("``", "")


class IntermixedParser(argparse.ArgumentParser):
    """A subcommand parser that reads options and positionals in any order.

    Plain argparse consumes positionals in runs: in ``dbx query Q --csv PREFIX`` it binds the
    optional PREFIX (to nothing) as soon as it has read Q, then rejects ``PREFIX`` as
    unrecognized. ``parse_known_intermixed_args`` reads the options first, then the
    positionals. It cannot serve a parser with a ``REMAINDER`` or ``PARSER`` (sub-subcommand)
    positional, or with a positional in a mutually exclusive group; such a parser is read the
    plain way, so adding one never breaks the command line.
    """

    _intermixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # parse_known_intermixed_args may make its two passes by calling this method again
        # (Python 3.11 does): those inner calls parse the plain way.
        if self._intermixing or not self._intermixable():
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def _intermixable(self) -> bool:
        """Whether argparse can parse this parser intermixed (it raises TypeError otherwise)."""
        grouped = [a for group in self._mutually_exclusive_groups for a in group._group_actions]
        return not any(
            action.nargs in (argparse.PARSER, argparse.REMAINDER) or action in grouped
            for action in self._actions
            if not action.option_strings
        )


def build_parser(
    prog: str, description: str, modules: Iterable[Any], version: str
) -> argparse.ArgumentParser:
    """Create the top-level parser and let each subcommand module register itself. Options
    given before the subcommand belong to the top-level parser (``dbx --repo X ls``); each
    subcommand parser is an :class:`IntermixedParser`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {version}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=IntermixedParser)
    for module in modules:
        module.register(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and dispatch. User errors become one line on stderr and exit code 2;
    so do OS errors nothing more specific caught (naming the path and the problem) and a
    :class:`~squeezr.dbx.errors.DbxWarning` a ``--strict`` command turned into an error.
    Every warning is printed as one line, ``prog: warning: ...``, without a source line."""
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USER_ERROR
    _printable_output()
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning(parser.prog)
        try:
            return int(func(args) or 0)
        except (UserError, DbxWarning) as exc:
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        except KeyboardInterrupt:
            print(f"{parser.prog}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # e.g. `dbx ls | head`
            return 0
        except OSError as exc:
            print(f"{parser.prog}: error: {os_error(exc)}", file=sys.stderr)
    return EXIT_USER_ERROR


def _printable_output() -> None:
    """Print text that is not valid Unicode (a lone surrogate from a hand-edited file or a
    non-UTF-8 command line) as a backslash escape instead of failing with a traceback."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def _one_line_warning(prog: str) -> Callable[..., None]:
    def show(message: Any, *_: Any, **__: Any) -> None:
        print(f"{prog}: warning: {message}", file=sys.stderr)

    return show


def strict_warnings() -> None:
    """Turn dbx's warnings into errors for the rest of the command (its ``--strict``)."""
    warnings.simplefilter("error", DbxWarning)


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """Add the ``--json`` / ``--csv`` switches used by every command that prints rows."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", dest="fmt", action="store_const", const="json", help="print JSON")
    group.add_argument("--csv", dest="fmt", action="store_const", const="csv", help="print CSV")
    parser.set_defaults(fmt="table")


def emit(rows: Any, fmt: str = "table", file: TextIO | None = None) -> None:
    """Print rows as an aligned table, a JSON array of objects, or CSV.

    ``rows`` is a list of dicts (columns in first-seen key order; a key a row lacks is an
    empty cell, ``null`` in JSON) or a pandas DataFrame. pandas is never imported here, so a
    command that prints dicts stays light. JSON is valid JSON whatever the values: NaN and
    ±Infinity are written as Extended JSON (``{"$numberDouble": "NaN"}``, as in dbx's files,
    so they round-trip through ``squeezr.dbx.jsonx.loads``). Tables and CSV show lists and
    objects as compact JSON; CSV writes booleans as ``true``/``false``, non-finite floats as
    ``NaN``/``Infinity``/``-Infinity`` and an absent value as an empty cell. Table cells are
    rendered by :func:`text_table`: text exactly as it is, numbers aligned.
    """
    out = file or sys.stdout
    columns, records = _columns_and_records(rows)
    cells = [[_plain(record.get(column)) for column in columns] for record in records]
    if fmt == "json":
        objects = [dict(zip(columns, values, strict=True)) for values in cells]
        out.write(jsonx.encode(objects, indent=1) + "\n")
    elif fmt == "csv":
        if columns:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows([_csv_cell(value) for value in values] for values in cells)
    elif fmt == "table":
        if columns:
            out.write(text_table(cells, columns) + "\n")
    else:
        raise UserError(f"unknown output format {fmt!r}; use table, json or csv")


def _columns_and_records(rows: Any) -> tuple[list[str], list[dict[Any, Any]]]:
    """Column names and row dicts of a DataFrame (duck-typed) or a list of dicts."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        records = rows.to_dict(orient="records")
        labels = list(rows.columns)
        return [str(label) for label in labels], [
            {str(label): record[label] for label in labels} for record in records
        ]
    records = list(rows)
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    return list(columns), records


def _plain(value: Any) -> Any:
    """A cell as plain Python: numpy scalars unboxed, times as ISO text, pandas' missing
    markers (NA, NaT) as None; containers converted throughout."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # a numpy scalar
        return _plain(value.item())
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return str(value)


def text_table(
    rows: Iterable[Iterable[Any]], headers: Sequence[str] = (), style: str = "simple"
) -> str:
    """``rows`` as an aligned text table (a tabulate ``style``), every cell shown as it is.

    tabulate reads text that looks like a number as one (``"1_000"`` would print as 1000,
    ``"2.50"`` as 2.5, a captured ``"nan"`` as nan), so a column holding any text is printed
    as text; a column of numbers (with gaps: ``None``) is still aligned on the decimal point.
    Lists and objects show as compact JSON (Extended JSON for NaN/±Infinity).
    """
    cells = [[_cell(value) for value in row] for row in rows]
    if style == "simple":
        text = _simple_text_table(cells, headers)
        if text is not None:
            return text
    from tabulate import tabulate  # ~20 ms to import: only for a table that needs it

    text_columns = sorted(
        {i for row in cells for i, value in enumerate(row) if isinstance(value, str)}
    )
    return tabulate(cells, headers=list(headers), tablefmt=style, disable_numparse=text_columns)


def _simple_text_table(cells: list[list[Any]], headers: Sequence[str]) -> str | None:
    """The text tabulate's ``simple`` style makes of a table whose cells are all plain text
    (or None): tabulate's own layout (a column is as wide as its widest cell or its header
    plus 2, cells flush left, two spaces between columns, trailing spaces cut), several times
    faster (10,000 rows of ``dbx study plan``: tabulate takes about 0.25 s). None for
    anything else (numbers to align; text that is not printable ASCII, or has spaces at its
    ends, which tabulate measures or strips in its own ways), which tabulate then lays out.
    tests/dbx/test_clikit.py compares the two."""
    count = len(headers)
    if not cells or not count or any(len(row) != count for row in cells):
        return None
    if not all(type(header) is str for header in headers):
        return None
    columns = []
    for header, values in zip(headers, zip(*cells, strict=True), strict=True):
        if not {type(value) for value in values} <= {str, type(None)}:
            return None
        texts = [header, *("" if value is None else value for value in values)]
        if not _plain_texts(texts):
            return None
        width = max(len(header) + 2, max(map(len, texts)))
        columns.append([text.ljust(width) for text in texts])
    rule = "  ".join("-" * len(column[0]) for column in columns)
    lines = ["  ".join(row).rstrip() for row in zip(*columns, strict=True)]
    return "\n".join([lines[0], rule, *lines[1:]])


def _plain_texts(texts: list[str]) -> bool:
    """Whether every text is printable ASCII without spaces at its ends (one check over
    them all: the only ASCII whitespace that is printable is the space)."""
    blob = "\n".join(texts)
    return (
        blob.isascii()
        and blob.count("\n") == len(texts) - 1
        and blob.replace("\n", "").isprintable()
        and " \n" not in blob
        and "\n " not in blob
        and blob[:1] != " "
        and blob[-1:] != " "
    )


def _cell(value: Any) -> Any:
    return jsonx.encode(value) if isinstance(value, (dict, list, tuple)) else value


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (dict, list)):
        return jsonx.encode(value)
    return str(value)
