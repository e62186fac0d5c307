"""Event-name patterns: the first step of every query, and the one that must be fast.

A pattern selects events by their hierarchical name and captures name levels as columns.
Matching is memoised per distinct name (a log repeats few names many times). The memos of
all patterns share one bound, for logs that never repeat a name and for listeners that run
for weeks, however many patterns ``compile_pattern`` keeps. Each pattern exposes a literal
substring that every matching name contains, so log readers can skip lines without parsing
them.
"""

from __future__ import annotations

import re
import weakref
from functools import lru_cache
from typing import Any

import numpy as np

from squeezr.dbx.errors import UserError
from squeezr.dbx.regex import compile_regex
from squeezr.dbx.tokens import MAX_DIGITS

_VAR = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")
_INT = re.compile(r"[-+]?\d+")
# Plain int64s, one per line (what numeric() makes of them is their int value).
_DIGITS = re.compile(r"[0-9]{1,18}(?:\n[0-9]{1,18})*")
_BLOCK = 1 << 16  # names matched at a time by match_all
_FLOAT = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
# Names remembered over all patterns (about 25 MB); past this every memo starts afresh.
MEMO_NAMES = 100_000


class _Memos:
    """The one budget of every pattern's name memo. ``count`` may include names of patterns
    already freed, which only makes the next reset come sooner."""

    def __init__(self) -> None:
        self.patterns: weakref.WeakSet[Pattern] = weakref.WeakSet()
        self.count = 0

    def spend(self) -> None:
        """Count one more remembered name, first forgetting them all if the budget is spent."""
        if self.count >= MEMO_NAMES:
            for pattern in self.patterns:
                pattern._memo.clear()
            self.count = 0
        self.count += 1


_MEMOS = _Memos()
_UNSEEN = object()  # a memo's answer for a name it has not seen (None means "no match")


def numeric(text: str) -> Any:
    """A captured level as int or float when it looks like a number, so it sorts and compares
    numerically; digits too many for an int (``MAX_DIGITS``) stay text."""
    if (text.isascii() and text.isdigit()) or _INT.fullmatch(text):
        return int(text) if len(text) <= MAX_DIGITS else text
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


class Pattern:
    """A compiled name pattern (see docs/dbx-query.md, "Name patterns").

    ``exact/name``; ``prefix/`` or ``prefix/**`` (the prefix and everything below it);
    ``*`` = one level; ``*`` inside a level = any characters but ``/``; ``**`` = zero or more
    levels; ``:var`` = one level captured as column ``var``.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        segments = text.split("/")
        if segments[-1] == "" and len(segments) > 1:
            segments[-1] = "**"  # "train/" means "train/**"
        if not text or "" in segments:
            raise UserError(f"bad name pattern {text!r}: empty level; write levels like a/b/:k")
        self.variables: list[str] = []
        regex = self._build(segments)
        # A wildcard inside a level ("ep*ch*") can backtrack polynomially in Python's re;
        # RE2 is linear but ten times slower a call, so it serves only those patterns.
        inside = any("*" in seg and seg not in ("*", "**") for seg in segments)
        self._regex = compile_regex(regex) if inside else re.compile(regex)
        # For match_all: the same pattern matching one line of newline-joined names (a
        # level never spans a newline); None where RE2 must serve the pattern.
        self._lines: re.Pattern[str] | None = None
        if not inside:
            line = "[^\n]+" if regex == ".+" else regex.replace("[^/]", "[^/\n]")
            # A captured level is never empty, so in what findall gives for a line the first
            # variable is "" where the line does not match; without variables, the name is.
            line = f"({line})" if not self.variables else line
            self._lines = re.compile(f"^(?:{line}|[^\\n]*)$", re.MULTILINE)
        self.literal: str = self._longest_literal(segments)
        self._memo: dict[str, tuple[Any, ...] | None] = {}
        _MEMOS.patterns.add(self)

    def _build(self, segments: list[str]) -> str:
        if segments == ["**"]:
            return ".+"
        out = ""
        need_sep = False
        for index, seg in enumerate(segments):
            if seg == "**":
                if index and segments[index - 1] == "**":
                    raise UserError(f"bad name pattern {self.text!r}: write ** once, not **/**")
                out += "(?:/[^/]+)*" if index else "(?:[^/]+/)*"
                need_sep = bool(index)
                continue
            if need_sep:
                out += "/"
            need_sep = True
            var = _VAR.fullmatch(seg)
            if var:
                name = var.group(1)
                if name in self.variables:
                    raise UserError(f"bad name pattern {self.text!r}: variable :{name} used twice")
                self.variables.append(name)
                out += f"(?P<{name}>[^/]+)"
            elif seg.startswith(":"):
                raise UserError(
                    f"bad name pattern {self.text!r}: {seg!r} is not a variable; use :name"
                    " with letters, digits and _"
                )
            elif seg == "*":
                out += "[^/]+"
            else:
                out += "[^/]*".join(re.escape(part) for part in seg.split("*"))
        return out

    @staticmethod
    def _longest_literal(segments: list[str]) -> str:
        chunks: list[list[str]] = [[]]
        for seg in segments:
            if "*" in seg or seg.startswith(":"):
                chunks.append([])
            else:
                chunks[-1].append(seg)
        return max(("/".join(chunk) for chunk in chunks), key=len)

    def match(self, name: str) -> tuple[Any, ...] | None:
        """The captured values (numeric-looking ones converted) if ``name`` matches, else None."""
        result = self._memo.get(name, _UNSEEN)
        if result is not _UNSEEN:
            return result
        found = self._regex.fullmatch(name)
        result = None if found is None else tuple([numeric(v) for v in found.groups()])
        _MEMOS.spend()
        self._memo[name] = result
        return result

    def match_all(self, names: list[str]) -> tuple[np.ndarray, list[Any]]:
        """What :meth:`match` gives for each of ``names`` (a log's distinct names), at C
        speed for a million names: a bool array saying which match, and per variable the
        captured values of those that do (an int64 array where all are plain integers, else
        a list). Not memoised; names are matched a block at a time, to bound memory."""
        hits: list[np.ndarray] = []
        pieces: list[list[Any]] = [[] for _ in self.variables]  # per variable, per block
        for block in range(0, len(names), _BLOCK):
            texts: list[list[str]] = [[] for _ in self.variables]
            hits.append(self._match_block(names[block : block + _BLOCK], texts))
            for variable, values in zip(pieces, texts, strict=True):
                variable.append(_values(values))
        columns: list[Any] = []
        for blocks in pieces:
            if all(isinstance(values, np.ndarray) for values in blocks):
                columns.append(np.concatenate(blocks) if blocks else [])
            else:
                columns.append(
                    [v for b in blocks for v in (b if isinstance(b, list) else b.tolist())]
                )
        return (np.concatenate(hits) if hits else np.zeros(0, dtype=bool)), columns

    def _match_block(self, names: list[str], texts: list[list[str]]) -> np.ndarray:
        """Which of ``names`` match; their captured levels are appended to ``texts``."""
        text = "\n".join(names)
        found: list[Any] | None = None
        if self._lines is not None and text.count("\n") == len(names) - 1:
            found = self._lines.findall(text)
        if found is None or len(found) != len(names):  # RE2 patterns, names holding newlines
            matches = [self._regex.fullmatch(name) for name in names]
            for match in matches:
                if match is not None:
                    for values, value in zip(texts, match.groups(), strict=True):
                        values.append(value)
            return np.fromiter((m is not None for m in matches), bool, len(names))
        if len(self.variables) <= 1:  # one string per name: "" where it does not match
            if self.variables:
                texts[0].extend(filter(None, found))
            return np.fromiter(map(bool, found), bool, len(names))
        for index, values in enumerate(texts):  # a tuple per name
            values.extend(item[index] for item in found if item[0])
        return np.fromiter((bool(item[0]) for item in found), bool, len(names))

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


def _values(texts: list[str]) -> Any:
    """Captured levels as ``numeric`` makes them: an int64 array if all are plain integers
    (parsed by numpy's text reader), else a list."""
    joined = "\n".join(texts)
    if texts and _DIGITS.fullmatch(joined):
        return np.fromstring(joined, dtype=np.int64, sep="\n")
    return [numeric(text) for text in texts]


@lru_cache(maxsize=256)
def compile_pattern(text: str) -> Pattern:
    """A shared compiled pattern, so the name memo survives between queries in one process."""
    return Pattern(text)
