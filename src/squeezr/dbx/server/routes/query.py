"""Log queries executed on the server: the experiments are chosen like ``dbx ls`` and their
events read from the database in one statement; the query engine is the local one, so a
query means the same thing wherever it runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from squeezr.dbx.errors import UserError
from squeezr.dbx.select import select_experiments
from squeezr.dbx.server.auth import require
from squeezr.dbx.server.routes.common import API, JsonBody, obj, reply, repository, storage

router = APIRouter(prefix=API, tags=["query"])


def run_query(request: Request, body: dict[str, Any]) -> Any:
    """The result DataFrame of the query ``body`` describes."""
    from squeezr.dbx.query.engine import Engine, Source
    from squeezr.dbx.query.language import parse
    from squeezr.dbx.query.logs import numbered

    text = body.get("query")
    if not isinstance(text, str) or not text.strip():
        raise UserError('give a query, e.g. {"query": "train/epoch/:epoch/eval"}')
    parsed = parse(text)
    options = {k: body.get(k) for k in ("prefix", "kind", "since", "where")}
    handles = select_experiments(repository(request), **options)
    logs = storage(request).events([h.id for h in handles])
    sources = [Source(experiment=h, events=numbered(logs[h.id])) for h in handles]
    return Engine(sources, merge=not body.get("raw", False)).run(parsed)


@router.post("/query", dependencies=[Depends(require("read"))])
def query(request: Request, body: JsonBody) -> Any:
    """``{"query", "prefix", "kind", "since", "where", "raw"}`` -> ``{"columns", "rows"}``."""
    frame = run_query(request, obj(body, "a query"))
    frame = frame.astype(object).where(frame.notna(), None)
    payload = {"columns": [str(c) for c in frame.columns], "rows": frame.values.tolist()}
    return reply(payload)
