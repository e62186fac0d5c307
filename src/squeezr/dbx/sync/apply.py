"""Carrying out a sync plan between two transports (folders or servers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from squeezr.dbx.remote.client import is_url
from squeezr.dbx.sync.plan import Action, merge_notes, merge_results, plan

__all__ = ["sync", "transport"]


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
    for action in actions:
        _apply(action, src, dst, source[action.exp_id], target.get(action.exp_id))
        if progress is not None:
            progress(action)
    return actions


def _apply(action: Action, src: Any, dst: Any, source: dict[str, Any], target: Any) -> None:
    exp_id, key = action.exp_id, action.key
    if action.kind == "experiment":
        dst.put_experiment(source["meta"])
    elif action.kind == "attachment":
        info = source["attachments"][key]
        dst.put_attachment(exp_id, key, info, src.blob(exp_id, key, info))
    elif action.kind == "events":
        dst.add_events(exp_id, key, src.events(exp_id, key))
    elif action.kind == "run":
        dst.put_run(exp_id, key, source["runs"][str(key)])
    elif action.kind == "results":
        dst.set_results(
            exp_id, merge_results(target["results"] if target else {}, source["results"])
        )
    elif action.kind == "notes":
        dst.set_notes(exp_id, merge_notes(target["notes"] if target else "", source["notes"]))
