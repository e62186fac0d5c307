"""Carrying out a sync plan between two transports (folders or servers).

The plan's actions are carried out a *chunk* of experiments at a time: the events the chunk
needs are read in one call (one request from a server), and its changes are written in one
call (one request and one transaction on a server; experiment by experiment, in plan order,
into a folder). A chunk that is interrupted is written wholly or not at all on a server and
is simply redone by the next sync either way, since every write is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from squeezr.dbx.remote.client import is_url
from squeezr.dbx.sync.plan import Action, merge_notes, merge_results, plan

__all__ = ["CHUNK_EVENTS", "CHUNK_EXPERIMENTS", "sync", "transport"]

# A chunk closes once it holds this many events or experiments (a request of a few MB).
CHUNK_EVENTS = 20_000
CHUNK_EXPERIMENTS = 200


def transport(where: str, create: bool = False, missing_ok: bool = False) -> Any:
    """The endpoint ``where`` names: a server URL or a repository folder (made if ``create``;
    a missing one reads as empty if ``missing_ok``, for a dry run into a new folder)."""
    if is_url(where):
        from squeezr.dbx.sync.http import HTTPTransport

        return HTTPTransport(where)
    from squeezr.dbx.sync.local import LocalTransport

    return LocalTransport(where, create=create, missing_ok=missing_ok)


def sync(
    src: Any,
    dst: Any,
    selection: dict[str, Any] | None = None,
    *,
    dry_run: bool = False,
    progress: Callable[[Action], None] | None = None,
) -> list[Action]:
    """Bring ``dst`` up to date with the experiments of ``src`` that ``selection`` (``ls``'s
    prefix/kind/since/where, or ``ids``) chooses; returns the plan (carried out unless
    ``dry_run``). ``src``/``dst`` are transports or what :func:`transport` accepts."""
    src = transport(src) if isinstance(src, str) else src
    dst = transport(dst, create=not dry_run, missing_ok=dry_run) if isinstance(dst, str) else dst
    source = src.inventory(selection)
    target = dst.inventory({"ids": list(source)}) if source else {}
    actions = plan(source, target)
    if dry_run:
        return actions
    for chunk in _chunks(actions):
        _carry(chunk, src, dst, source, target)
        if progress is not None:
            for action in chunk:
                progress(action)
    return actions


def _chunks(actions: list[Action]) -> list[list[Action]]:
    """The actions cut between experiments into chunks of at most CHUNK_EXPERIMENTS
    experiments or (about) CHUNK_EVENTS events."""
    chunks: list[list[Action]] = []
    current: list[Action] = []
    events = experiments = 0
    for action in actions:
        if current and action.exp_id != current[-1].exp_id:
            experiments += 1
            if experiments >= CHUNK_EXPERIMENTS or events >= CHUNK_EVENTS:
                chunks.append(current)
                current, events, experiments = [], 0, 0
        current.append(action)
        events += action.detail.get("events", 0) if action.kind == "events" else 0
    if current:
        chunks.append(current)
    return chunks


def _carry(
    chunk: list[Action],
    src: Any,
    dst: Any,
    source: dict[str, dict[str, Any]],
    target: dict[str, dict[str, Any]],
) -> None:
    """Read what ``chunk`` needs from ``src`` and write it to ``dst`` as bundles (see
    ``Storage.apply``), one per experiment, their parts in plan order."""
    logs = src.read_events([(a.exp_id, a.key) for a in chunk if a.kind == "events"])
    bundles: dict[str, dict[str, Any]] = {}
    for action in chunk:
        exp_id, key, kind = action.exp_id, action.key, action.kind
        have, want = target.get(exp_id), source[exp_id]
        bundle = bundles.setdefault(exp_id, {"id": exp_id})
        if kind == "experiment":
            bundle["meta"] = want["meta"]
        elif kind == "attachment":
            bundle.setdefault("attachments", {})[key] = want["attachments"][key]
        elif kind == "events":
            bundle.setdefault("events", []).extend(logs[(exp_id, key)])
        elif kind == "run":
            bundle.setdefault("runs", {})[str(key)] = want["runs"][str(key)]
        elif kind == "results":
            bundle["results"] = merge_results(have["results"] if have else {}, want["results"])
        elif kind == "notes":
            bundle["notes"] = merge_notes(have["notes"] if have else "", want["notes"])
    dst.write(list(bundles.values()), src.blob)
