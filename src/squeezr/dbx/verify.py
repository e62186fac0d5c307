"""Checking one experiment folder's files, for ``Repository.verify`` / ``dbx verify``.

Run after a crash, a copy or a sync: it reads every file the format defines and reports
problems as one line each (path first) instead of stopping at the first one.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

from squeezr.dbx import jsonx
from squeezr.errors import UserError

__all__ = ["verify_experiment"]


def _json(path: Path, problems: list[str]) -> object | None:
    try:
        return jsonx.loads(path.read_bytes())
    except FileNotFoundError:
        problems.append(f"{path}: missing")
    except (ValueError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: not valid JSON ({exc})")
    return None


def _log(path: Path, problems: list[str]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for _ in jsonx.iter_log(path):
                pass
        except UserError as exc:
            problems.append(str(exc))
    problems.extend(f"{path}: torn or corrupt last line ({w.message})" for w in caught)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_experiment(folder: Path) -> list[str]:
    """Problems of one experiment folder (empty list if none)."""
    problems: list[str] = []
    meta = _json(folder / "meta.json", problems)
    if meta is not None and (not isinstance(meta, dict) or meta.get("id") != folder.name):
        problems.append(f"{folder / 'meta.json'}: id does not match the folder name")
    names = sorted(entry.name for entry in os.scandir(folder))
    for name in names:
        path = folder / name
        if name == "results.json" or (name.startswith("run-") and name.endswith(".json")):
            record = _json(path, problems)
            patch = (record.get("git") or {}).get("patch") if isinstance(record, dict) else None
            if patch and not (folder / patch).is_file():
                problems.append(f"{folder / patch}: missing (named by {path})")
        elif name.startswith("log-") and name.endswith(".jsonl"):
            _log(path, problems)
    manifest = _json(folder / "attachments.json", []) if "attachments.json" in names else {}
    if "attachments.json" in names and not isinstance(manifest, dict):
        problems.append(f"{folder / 'attachments.json'}: not a valid attachment list")
        manifest = {}
    for info in (manifest or {}).values():
        path = folder / str(info.get("path", ""))
        if not path.is_file():
            problems.append(f"{path}: attachment missing")
        elif path.stat().st_size != info.get("size") or _sha256(path) != info.get("sha256"):
            problems.append(f"{path}: attachment size or sha256 does not match attachments.json")
    return problems
