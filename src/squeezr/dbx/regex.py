"""Regular expressions from users, matched in linear time (RE2).

``=~`` in the where-language and wildcards inside a level of a query's name pattern take
patterns from whoever types a query, and soon from whoever sends one to a server. Python's
``re`` backtracks: ``(a+)+$`` against thirty ``a`` and a ``b`` runs for minutes. RE2
(google-re2) guarantees time linear in the text, at the price of its dialect: no
backreferences and no lookaround (docs/dbx-expressions.md, "Regular expressions").
"""

from __future__ import annotations

import re
from typing import Any

from squeezr.dbx.errors import UserError

__all__ = ["MAX_REPEAT", "compile_regex"]

MAX_REPEAT = 1000  # RE2's largest {n,m} count
# A counted repetition ({n}, {n,}, {n,m}) not preceded by a backslash. RE2 reads one whose
# count does not fit in an int as the literal text "{99999999999}", silently; this says so.
_COUNTED = re.compile(r"(?<!\\)\{(\d+)(?:,(\d*))?\}")


def compile_regex(pattern: str) -> Any:
    """``pattern`` compiled by RE2 (an object with ``search`` and ``fullmatch``, like
    ``re.Pattern``); a UserError saying what is wrong if RE2 rejects it."""
    import re2  # a compiled extension: loaded only when a query or filter uses a regex

    for found in _COUNTED.finditer(pattern):
        if any(len(count) > 4 or int(count) > MAX_REPEAT for count in found.groups() if count):
            raise UserError(
                f"{found.group()} repeats more than {MAX_REPEAT} times, the most a regular "
                "expression may"
            )
    options = re2.Options()
    options.log_errors = False  # else RE2 prints its own copy of the error to stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        if "perl operator" in str(reason) or "escape" in str(reason):
            reason = f"{reason} (RE2 syntax: no backreferences or lookaround)"
        raise UserError(str(reason)) from None
