"""A dbx server as a sync endpoint, over its REST API (the same calls the shipper makes)."""

from __future__ import annotations

from typing import Any

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
