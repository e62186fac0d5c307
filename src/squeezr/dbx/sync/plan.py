"""What a sync copies, decided from two inventories alone (no I/O: table-tested).

An inventory maps experiment id -> ``{"meta", "results", "notes", "runs": {N: record},
"logs": {N: [events, highest seq]}, "attachments": {name: info}}`` (JSON keys are strings).
The merge rules, applied to each experiment of the source:

* **identity** is the id: an experiment the destination lacks is created under the
  source's name; one it has is merged, wherever its name puts it;
* **logs** merge by event id: a run's log is append-only and ids are ``<run>-<seq>``, so the
  destination needs the source's events when it has fewer or a lower highest seq; only the
  events it lacks are added;
* **run records**: the source's is copied when the destination lacks it, or when it differs
  and the source's run has ended later (a finished record replaces a ``running`` one);
* **results**: union of the keys at every depth; where both have a value, the source's
  wins;
* **notes**: equal, or one contains the other: the longer is kept; otherwise the
  destination's notes, a blank line, then the source's;
* **attachments** by name: the source's is copied when the destination lacks it, or when
  the checksums differ and the source's was added later. Bytes are verified on arrival.

Each rule reaches a fixed point: after A→B and B→A, a further A→B has nothing to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Action", "merge_notes", "merge_results", "plan"]


@dataclass(frozen=True)
class Action:
    """One idempotent copy: ``kind`` is experiment, attachment, events, run, results or
    notes; ``key`` the run number or attachment name where one is needed."""

    kind: str
    exp_id: str
    key: Any = None
    detail: dict[str, Any] = field(default_factory=dict, compare=False)


def merge_results(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """Union at every depth; the source's value wins where both have one."""
    merged = dict(dst)
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_results(merged[key], value)
        else:
            merged[key] = value
    return merged


def merge_notes(dst: str, src: str) -> str:
    if src in dst:
        return dst
    if dst in src:
        return src
    return f"{dst.rstrip()}\n\n{src}"


def _ended(record: dict[str, Any]) -> str:
    return record.get("end") or ""


def _run_wins(src: dict[str, Any], dst: dict[str, Any] | None) -> bool:
    if dst is None:
        return True
    return src != dst and _ended(src) > _ended(dst)


def _logs_behind(src: list[int], dst: list[int] | None) -> bool:
    return src[0] > 0 and (dst is None or src[0] > dst[0] or src[1] > dst[1])


def _attachment_wins(src: dict[str, Any], dst: dict[str, Any] | None) -> bool:
    if dst is None:
        return True
    return src["sha256"] != dst["sha256"] and (src.get("added") or "") > (dst.get("added") or "")


def plan(src: dict[str, dict[str, Any]], dst: dict[str, dict[str, Any]]) -> list[Action]:
    """The actions that bring ``dst`` up to date with ``src``, experiment by experiment, each
    experiment's creation first and its run records after its events (a run shows as ended
    only once its log is complete)."""
    actions: list[Action] = []
    for exp_id, source in src.items():
        target = dst.get(exp_id)
        if target is None:
            actions.append(Action("experiment", exp_id, detail={"name": source["meta"]["name"]}))
            target = {"results": {}, "notes": "", "runs": {}, "logs": {}, "attachments": {}}
        for name, info in sorted(source["attachments"].items()):
            if _attachment_wins(info, target["attachments"].get(name)):
                actions.append(Action("attachment", exp_id, name, {"size": info["size"]}))
        for run, size in sorted(source["logs"].items(), key=lambda item: int(item[0])):
            behind = target["logs"].get(run)
            if _logs_behind(size, behind):
                missing = size[0] - (behind[0] if behind else 0)
                actions.append(Action("events", exp_id, int(run), {"events": max(missing, 0)}))
        for run, record in sorted(source["runs"].items(), key=lambda item: int(item[0])):
            if _run_wins(record, target["runs"].get(run)):
                actions.append(Action("run", exp_id, int(run)))
        if merge_results(target["results"], source["results"]) != target["results"]:
            actions.append(Action("results", exp_id))
        if merge_notes(target["notes"], source["notes"]) != target["notes"]:
            actions.append(Action("notes", exp_id))
    return actions
