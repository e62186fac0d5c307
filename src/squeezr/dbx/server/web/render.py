"""Turning page data into HTML: the Jinja2 environment (autoescaping on), the filters the
templates use, and Markdown notes rendered safely (raw HTML in a note is shown as text,
``javascript:`` links are dropped: markdown-it-py's ``html=False`` and link validation)."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup

from squeezr.dbx import jsonx
from squeezr.dbx.timeutil import to_datetime

HERE = Path(__file__).parent
VENDOR = {  # the vendored front-end files, versions in their names (static/vendor/)
    "htmx": "vendor/htmx-2.0.11.min.js",
    "uplot_js": "vendor/uPlot-1.6.32.iife.min.js",
    "uplot_css": "vendor/uPlot-1.6.32.min.css",
}


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        value=value_text, markdown=markdown, short=short_id, when=when, size=size_text
    )
    env.globals.update(link=link, vendor=VENDOR)
    return env


def page(template: str, **data: Any) -> str:
    return environment().get_template(template).render(**data)


@cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(
        ["table", "strikethrough"]
    )


def markdown(text: str) -> Markup:
    """Notes as HTML; raw HTML in them is escaped, unsafe link schemes are not linked."""
    return Markup(_markdown().render(text or ""))


def value_text(value: Any) -> str:
    """A param or result as a table cell: numbers to 4 significant digits (integers whole),
    containers as compact JSON, missing as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value == int(value) and abs(value) < 1e15:
            return str(int(value)) if abs(value) >= 1 or value == 0 else f"{value:.4g}"
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return jsonx.encode(value)
    return str(value)


def short_id(exp_id: str) -> str:
    return exp_id[:8]


def when(moment: str | float | None, seconds: bool = False) -> str:
    """An ISO time or an event's epoch timestamp as ``2026-12-02 11:55`` (UTC)."""
    parsed = to_datetime(moment)
    if parsed is None:
        return "" if moment is None else str(moment)
    return parsed.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def size_text(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def link(path: str, params: dict[str, Any] | None = None, **changes: Any) -> str:
    """``path`` with the query string of ``params`` updated by ``changes``; empty values
    (and ``offset=0``) are left out and lists repeat the key, so every view has a short
    shareable URL."""
    merged = {**(params or {}), **changes}
    pairs = []
    for key, value in merged.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is None or item == "" or (key == "offset" and item == 0):
                continue
            pairs.append((key, item))
    return f"{path}?{urlencode(pairs)}" if pairs else path
