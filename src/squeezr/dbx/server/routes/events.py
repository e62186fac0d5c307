"""Event logs: append batches (idempotent by event id) and read them back."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from squeezr.dbx.errors import UserError
from squeezr.dbx.server.auth import require
from squeezr.dbx.server.routes.common import API, JsonBody, reply, storage
from squeezr.dbx.server.storage.base import check_id

router = APIRouter(prefix=API, tags=["events"])


@router.post("/experiments/{exp_id}/events", dependencies=[Depends(require("write"))])
def add_events(request: Request, exp_id: str, events: JsonBody) -> Response:
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
