"""Log queries executed on the server: the experiments are chosen like ``dbx ls`` and their
events read from the database in one statement; the query engine is the local one, so a
query means the same thing wherever it runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from squeezr.dbx import jsonx
from squeezr.dbx.errors import UserError
from squeezr.dbx.select import select_experiments
from squeezr.dbx.server.auth import require
from squeezr.dbx.server.routes.common import API, JsonBody, obj, reply, repository

router = APIRouter(prefix=API, tags=["query"])


def run_query(request: Request, body: dict[str, Any]) -> Any:
    """The result DataFrame of the query ``body`` describes."""
    text = body.get("query")
    if not isinstance(text, str) or not text.strip():
        raise UserError('give a query, e.g. {"query": "train/epoch/:epoch/eval"}')
    options = {k: body.get(k) for k in ("prefix", "kind", "since", "where")}
    handles = select_experiments(repository(request), **options)
    return stored_query(text, handles, request.app.state.query_cache, raw=body.get("raw", False))


def stored_query(text: str, handles: list[Any], cache: Any, raw: bool = False) -> Any:
    """The query ``text`` over the stored experiments ``handles``, reading their events
    through the server's table ``cache`` (the web UI's queries run here too)."""
    from squeezr.dbx.query.engine import Engine
    from squeezr.dbx.query.language import parse
    from squeezr.dbx.server.querycache import StoredSource

    parsed = parse(text)
    sources = [StoredSource(experiment=h, cache=cache) for h in handles]
    return Engine(sources, merge=not raw).run(parsed)


@router.post("/query", dependencies=[Depends(require("read"))])
def query(request: Request, body: JsonBody) -> Any:
    """``{"query", "prefix", "kind", "since", "where", "raw"}`` -> ``{"columns", "rows"}``."""
    frame = run_query(request, obj(body, "a query"))
    frame = frame.astype(object).where(frame.notna(), None)
    payload = {"columns": [str(c) for c in frame.columns], "rows": frame.values.tolist()}
    return reply(payload)


@router.post("/query/follow", dependencies=[Depends(require("read"))])
async def follow(request: Request, body: JsonBody) -> StreamingResponse:
    """A live listener: server-sent events, each ``data:`` line a batch
    ``{"columns", "rows"}`` of rows that are new or changed since the previous batch (the
    first batch is the whole result), re-evaluated every ``interval`` seconds (default 1)
    while the client listens; a ``: keep-alive`` comment when nothing changed."""
    body = obj(body, "a query")
    interval = body.get("interval", 1.0)
    if not isinstance(interval, (int, float)) or not 0.05 <= interval <= 3600:
        raise UserError(f"interval must be between 0.05 and 3600 seconds, not {interval!r}")
    await run_in_threadpool(run_query, request, body)  # a bad query fails before streaming

    async def batches() -> AsyncIterator[str]:
        seen: set[str] = set()
        columns: list[str] | None = None
        while not await request.is_disconnected():
            try:
                frame = await run_in_threadpool(run_query, request, body)
            except UserError as exc:
                yield f"data: {jsonx.encode({'error': str(exc)})}\n\n"
                return
            frame = frame.astype(object).where(frame.notna(), None)
            if columns is None:
                columns = [str(c) for c in frame.columns]
            frame = frame.reindex(columns=columns)
            rows = [row for row in frame.values.tolist() if jsonx.encode(row) not in seen]
            seen.update(jsonx.encode(row) for row in rows)
            if rows:
                yield f"data: {jsonx.encode({'columns': columns, 'rows': rows})}\n\n"
            else:
                yield ": keep-alive\n\n"
            await asyncio.sleep(interval)

    return StreamingResponse(batches(), media_type="text/event-stream")
