"""A dbx server as a sync endpoint, over its REST API (the same calls the shipper makes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from squeezr.dbx import jsonx
from squeezr.dbx.errors import UserError
from squeezr.dbx.remote.client import Client

__all__ = ["HTTPTransport"]


class HTTPTransport:
    def __init__(self, url: str) -> None:
        self.client = Client(url)
        self.label = self.client.url

    def inventory(self, selection: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        return self.client.request("POST", "/inventory", selection or {})

    def events(self, exp_id: str, run: int) -> list[dict[str, Any]]:
        return self.client.request("GET", f"/experiments/{exp_id}/events", params={"run": run})

    def read_events(self, wanted: list[tuple[str, int]]) -> dict[tuple[str, int], list[Any]]:
        """The events of many runs, in one request."""
        if not wanted:
            return {}
        body = {"logs": [list(w) for w in wanted]}
        with self.client.open("POST", "/sync/events", body) as response:
            found = jsonx.loads_bulk(response.read())  # nesting: checked when written
        return {(exp_id, run): found[exp_id][str(run)] for exp_id, run in wanted}

    def write(self, bundles: list[dict[str, Any]], blob: Callable[..., bytes]) -> None:
        """The bundles in one request (one transaction on the server), after uploading the
        attachment bytes the server lacks (``blob(exp_id, name, info)`` reads them)."""
        for bundle in bundles:
            for name, info in (bundle.get("attachments") or {}).items():
                try:
                    self.client.request("HEAD", f"/blobs/{info['sha256']}")
                    continue
                except UserError as exc:
                    if getattr(exc, "status", None) != 404:
                        raise
                data = blob(bundle["id"], name, info)
                self.client.request("PUT", f"/blobs/{info['sha256']}", data=data)
        body = b"[" + b",".join(map(_bundle_json, bundles)) + b"]"
        self.client.request("POST", "/sync/apply", data=body, content_type="application/json")

    def blob(self, exp_id: str, name: str, info: dict[str, Any]) -> bytes:
        return b"".join(self.client.download(f"/blobs/{info['sha256']}"))

    def put_experiment(self, meta: dict[str, Any]) -> None:
        self.client.request("PUT", f"/experiments/{meta['id']}", meta)

    def put_run(self, exp_id: str, run: int, record: dict[str, Any]) -> None:
        self.client.request("PUT", f"/experiments/{exp_id}/runs/{run}", record)

    def add_events(self, exp_id: str, run: int, events: list[dict[str, Any]]) -> int:
        added = 0
        for start in range(0, len(events), 5000):
            batch = events[start : start + 5000]
            added += self.client.request("POST", f"/experiments/{exp_id}/events", batch)["added"]
        return added

    def set_results(self, exp_id: str, results: dict[str, Any]) -> None:
        self.client.request("PUT", f"/experiments/{exp_id}/results", results)

    def set_notes(self, exp_id: str, notes: str) -> None:
        self.client.request("PUT", f"/experiments/{exp_id}/notes", {"notes": notes})

    def put_attachment(self, exp_id: str, name: str, info: dict[str, Any], data: bytes) -> None:
        self.client.request("PUT", f"/blobs/{info['sha256']}", data=data)
        self.client.request("PUT", f"/experiments/{exp_id}/attachments/{name}", info)


def _bundle_json(bundle: dict[str, Any]) -> bytes:
    """A bundle as JSON: its events (nearly all of it) by orjson where that writes what
    ``jsonx`` would (no ``null``, so no NaN; no integer beyond 64 bits, which orjson
    refuses), the rest by ``jsonx``. Nesting is checked by the server, event by event."""
    parts = []
    for key, value in bundle.items():
        raw = None
        if key == "events":
            try:
                raw = orjson.dumps(value)
            except TypeError:
                raw = None
            if raw is not None and b"null" in raw:
                raw = None
        if raw is None:
            raw = jsonx.encode(value).encode()
        parts.append(orjson.dumps(key) + b":" + raw)
    return b"{" + b",".join(parts) + b"}"
