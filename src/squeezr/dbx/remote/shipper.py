"""Streaming a running experiment to a server, with the local files as the write-ahead log.

``dbx.create(..., server=URL)`` (or ``$DBX_SERVER``) starts a :class:`Shipper`: a daemon
thread that tails the experiment's folder and sends what is new — meta, run records, log
lines, results, notes, attachments — every ``interval`` seconds. The experiment itself only
writes its local files, as always, so a server that is down, slow or restarting never blocks
or fails it. The shipper remembers how far each log was *acknowledged* (a byte offset at a
line boundary) and resends from there after any failure; the server stores an event only if
its id is new, so a batch whose answer was lost is stored once. A torn last line (the log
writer is mid-batch) is left for the next round.

At the end of the run (:meth:`Shipper.close`, called when the run closes) the shipper makes
a last delivery attempt for at most ``$DBX_SERVER_WAIT`` seconds (default 10) and then
says on stderr what is still undelivered; ``dbx sync REPO URL`` sends it later, without
duplicates, because sync and shipper both key events by id.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from squeezr.dbx import jsonx
from squeezr.dbx.errors import UserError
from squeezr.dbx.remote.client import Client

__all__ = ["Shipper", "start"]

BATCH = 5000  # events per request


def start(exp: Any, server: str | None) -> Shipper | None:
    """A started shipper for ``exp`` to ``server`` (else ``$DBX_SERVER``); None if neither."""
    url = server if server is not None else os.environ.get("DBX_SERVER")
    if not url:
        return None
    shipper = Shipper(Path(exp.path), Client(url, timeout=10.0))
    shipper.start()
    return shipper


class Shipper:
    def __init__(self, folder: Path, client: Client, interval: float = 0.5) -> None:
        self.folder = folder
        self.client = client
        self.interval = interval
        self.exp_id = folder.name
        self._meta_sent = False
        self._seen: dict[str, tuple[int, int]] = {}  # file -> (mtime_ns, size) last sent
        self._offsets: dict[str, int] = {}  # log file -> bytes acknowledged
        self._sent_blobs: dict[str, str] = {}  # attachment name -> sha256 sent
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one delivery round at a time
        self._warned = ""
        self._thread = threading.Thread(target=self._loop, name=f"dbx-ship-{folder}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        delay = self.interval
        while not self._stop.wait(delay):
            try:
                self.deliver()
                delay = self.interval
            except UserError as exc:  # unreachable, or refused: keep the files, retry later
                self._warn(exc)
                delay = min(max(delay * 2, self.interval), 5.0)
            except Exception as exc:  # never let streaming take the experiment down
                self._warn(exc)
                delay = 5.0

    def close(self, wait: float | None = None) -> bool:
        """Stop the thread after a last delivery (tried for up to ``wait`` seconds, default
        ``$DBX_SERVER_WAIT`` or 10); True if everything reached the server."""
        if wait is None:
            wait = float(os.environ.get("DBX_SERVER_WAIT", "10"))
        self._stop.set()
        self._thread.join(timeout=wait)
        deadline = time.monotonic() + wait
        while True:
            try:
                self.deliver()
                return True
            except Exception as exc:
                if time.monotonic() >= deadline:
                    print(
                        f"dbx: warning: experiment {self.exp_id} is not fully on "
                        f"{self.client.url} ({exc}); it is safe locally: send the rest with "
                        f"`dbx sync {self.folder.parent.parent} {self.client.url}`",
                        file=sys.stderr,
                    )
                    return False
                time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))

    def _warn(self, exc: BaseException) -> None:
        text = str(exc)
        if text != self._warned:  # once per distinct problem, not every retry
            self._warned = text
            print(
                f"dbx: warning: streaming to {self.client.url}: {text} (retrying)", file=sys.stderr
            )

    # --- one delivery round ---------------------------------------------------------------
    def deliver(self) -> None:
        """Send everything new in the folder; raises (Unreachable, UserError) on failure,
        having kept whatever was acknowledged before it."""
        with self._lock:
            if not self._meta_sent:
                meta = jsonx.read_json(self.folder / "meta.json", "experiment metadata")
                self.client.request("PUT", f"/experiments/{self.exp_id}", meta)
                self._meta_sent = True
            names = sorted(os.listdir(self.folder))
            for name in names:
                if name.startswith("run-") and name.endswith(".json"):
                    self._send_file(name, self._send_run)
            for name in names:
                if name.startswith("log-") and name.endswith(".jsonl"):
                    self._send_log(name)
            self._send_file("results.json", self._send_results)
            self._send_file("notes.md", self._send_notes)
            self._send_file("attachments.json", self._send_attachments)

    def _send_file(self, name: str, send: Any) -> None:
        """Call ``send(path)`` if ``name`` changed since it was last sent."""
        path = self.folder / name
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        key = (stat.st_mtime_ns, stat.st_size)
        if self._seen.get(name) != key:
            send(path)
            self._seen[name] = key

    def _send_run(self, path: Path) -> None:
        number = int(path.name[4:-5])
        from squeezr.dbx.sync.local import with_patch

        record = with_patch(self.folder, jsonx.read_json(path, "run record"))
        self.client.request("PUT", f"/experiments/{self.exp_id}/runs/{number}", record)

    def _send_log(self, name: str) -> None:
        path = self.folder / name
        offset = self._offsets.get(name, 0)
        with open(path, "rb") as log:
            log.seek(offset)
            raw = log.read()
        end = raw.rfind(b"\n") + 1  # complete lines only; a torn tail waits
        lines = raw[:end].split(b"\n")[:-1]
        for start in range(0, len(lines), BATCH):
            chunk = lines[start : start + BATCH]
            # the log's lines are JSON already (written by jsonx): sent as they are, joined
            # into one array, not parsed and encoded again; the server checks every event
            body = b"[" + b",".join(line for line in chunk if line.strip()) + b"]"
            self.client.request(
                "POST",
                f"/experiments/{self.exp_id}/events",
                data=body,
                content_type="application/json",
            )
            offset += sum(len(line) + 1 for line in chunk)
            self._offsets[name] = offset

    def _send_results(self, path: Path) -> None:
        results = jsonx.read_json(path, "results")
        self.client.request("PUT", f"/experiments/{self.exp_id}/results", results)

    def _send_notes(self, path: Path) -> None:
        notes = path.read_text(encoding="utf-8")
        self.client.request("PUT", f"/experiments/{self.exp_id}/notes", {"notes": notes})

    def _send_attachments(self, path: Path) -> None:
        manifest = jsonx.read_json(path, "attachment list")
        for name, info in sorted(manifest.items()):
            if self._sent_blobs.get(name) == info["sha256"]:
                continue
            upload(self.client, self.folder / info["path"], info)
            self.client.request("PUT", f"/experiments/{self.exp_id}/attachments/{name}", info)
            self._sent_blobs[name] = info["sha256"]


def upload(client: Client, path: Path, info: dict[str, Any]) -> None:
    """Send the bytes of ``path`` as blob ``info["sha256"]`` unless the server has it."""
    try:
        client.request("HEAD", f"/blobs/{info['sha256']}")
        return
    except UserError as exc:
        if getattr(exc, "status", None) != 404:
            raise
    client.request("PUT", f"/blobs/{info['sha256']}", data=path.read_bytes())
