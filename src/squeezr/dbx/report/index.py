"""An index page (Markdown and HTML) that shows a set of outputs: one section per figure or
table, with its caption and links to every file (formats, data, script). The two pages are
renderings of the same sections, so they always list the same things."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from squeezr.dbx.fileio import atomic_write

__all__ = ["Section", "write_index"]

STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
    "img{max-width:min(100%,36em)}figure{margin:1em 0}figcaption{color:#444;font-size:.9em}"
    "table{border-collapse:collapse}th,td{padding:.2em .6em;border-bottom:1px solid #ccc}"
    "td.n{text-align:right}"
)


@dataclass(frozen=True)
class Section:
    """One entry: ``text`` is the caption (or, with ``missing``, why the output is absent);
    ``image`` the file shown; ``links`` (label, file) pairs; ``markdown``/``html`` a table."""

    title: str
    text: str
    image: str | None = None
    links: tuple[tuple[str, str], ...] = ()
    markdown: str | None = None
    html: str | None = None
    missing: bool = False


def write_index(folder: Path, title: str, intro: str, sections: list[Section]) -> Path:
    """Write ``index.md`` and ``index.html`` into ``folder``; returns the Markdown page."""
    md = [f"# {title}", "", intro, ""]
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>"]
    for section in sections:
        md += [f"## {section.title}", ""]
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.missing:
            md += [f"*{section.text}*", ""]
            body.append(f"<p><em>{html.escape(section.text)}</em></p>")
            continue
        links_md = " · ".join(f"[{label}]({name})" for label, name in section.links)
        links_html = " · ".join(
            f'<a href="{html.escape(name)}">{html.escape(label)}</a>'
            for label, name in section.links
        )
        md += [section.text, ""]
        if section.image:
            md += [f"![{section.title}]({section.image})", ""]
            body.append(
                f'<figure><img src="{html.escape(section.image)}" '
                f'alt="{html.escape(section.title)}"><figcaption>{html.escape(section.text)}'
                f"<br>{links_html}</figcaption></figure>"
            )
        else:
            body.append(f"<p>{html.escape(section.text)}</p>")
        if section.markdown:
            md += [section.markdown.rstrip("\n"), ""]
        if section.html:
            body.append(section.html.rstrip("\n"))
        if section.links:
            md += [links_md, ""]
            if not section.image:
                body.append(f"<p>{links_html}</p>")
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "index.html", page)
    atomic_write(folder / "index.md", "\n".join(md))
    return folder / "index.md"
