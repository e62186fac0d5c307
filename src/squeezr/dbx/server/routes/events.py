"""Event logs: append batches (idempotent by event id) and read them back; and the two
calls a sync makes to move many experiments at once (``/sync/apply``, ``/sync/events``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from squeezr.dbx.errors import UserError
from squeezr.dbx.server.auth import require
from squeezr.dbx.server.routes.common import API, BulkBody, JsonBody, blobs, obj, reply, storage
from squeezr.dbx.server.storage.base import check_id

router = APIRouter(prefix=API, tags=["events"])


@router.post("/experiments/{exp_id}/events", dependencies=[Depends(require("write"))])
def add_events(request: Request, exp_id: str, events: BulkBody) -> Response:
    """Store the events (a JSON list of log lines) not stored yet; an event already stored
    (same id) is skipped, so a client may resend a batch whose answer it did not get."""
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise UserError("the request body must be a JSON list of events")
    return reply({"added": storage(request).add_events(check_id(exp_id), events)})


@router.get("/experiments/{exp_id}/events", dependencies=[Depends(require("read"))])
def events(request: Request, exp_id: str, run: int | None = None, after: int = 0) -> Response:
    """The experiment's log in time order; with ``run``, that run's events after seq
    ``after`` in logging order."""
    return reply(storage(request).events([check_id(exp_id)], run=run, after=after)[exp_id])


@router.post("/sync/apply", dependencies=[Depends(require("write"))])
def apply(request: Request, bundles: BulkBody) -> Response:
    """Write many experiments' changes in one transaction: a JSON list of bundles
    ``{"id", "meta"?, "attachments"?, "events"?, "runs"?, "results"?, "notes"?}`` (blobs
    uploaded first). All or nothing; answers ``{"added": {id: new events}}``."""
    store = blobs(request)
    for bundle in bundles if isinstance(bundles, list) else []:
        attachments = bundle.get("attachments") if isinstance(bundle, dict) else None
        for name, info in (attachments if isinstance(attachments, dict) else {}).items():
            digest = info.get("sha256") if isinstance(info, dict) else None
            if not store.has(digest) or store.size(digest) != info.get("size"):
                raise UserError(f"upload the bytes of {name!r} first (PUT /api/v1/blobs/<sha256>)")
    return reply({"added": storage(request).apply(bundles)})


@router.post("/sync/events", dependencies=[Depends(require("read"))])
def many_events(request: Request, body: JsonBody) -> Response:
    """The events of many runs at once: ``{"logs": [[id, run], ...]}`` ->
    ``{id: {run: [events in seq order]}}``."""
    logs = obj(body, '{"logs": [[id, run], ...]}').get("logs")
    if not isinstance(logs, list) or not all(
        isinstance(item, list) and len(item) == 2 and isinstance(item[1], int) for item in logs
    ):
        raise UserError('give {"logs": [[experiment id, run number], ...]}')
    body = storage(request).runs_json([(check_id(exp_id), run) for exp_id, run in logs])
    return Response(body, media_type="application/json")
