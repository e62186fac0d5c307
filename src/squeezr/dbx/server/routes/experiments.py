"""Experiments: list (the ``dbx ls`` selection, run server-side), show, create, results,
notes, runs, and the inventory a sync compares."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from squeezr.dbx.errors import UserError
from squeezr.dbx.select import select_experiments
from squeezr.dbx.server.auth import require
from squeezr.dbx.server.routes.common import API, JsonBody, obj, reply, repository, storage
from squeezr.dbx.server.storage.base import Storage, check_id

router = APIRouter(prefix=API, tags=["experiments"])
READ = [Depends(require("read"))]
WRITE = [Depends(require("write"))]


@router.get("/experiments", dependencies=READ)
def list_experiments(
    request: Request,
    prefix: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    where: str | None = None,
    sort: str | None = None,
    limit: int | None = None,
) -> Response:
    """Experiments chosen as ``dbx ls`` chooses them: ``{"meta", "results", "notes"}`` each."""
    chosen = select_experiments(
        repository(request),
        prefix=prefix,
        kind=kind,
        since=since,
        where=where,
        sort=sort,
        limit=limit,
    )
    return reply([{"meta": e.meta, "results": e.results.tree(), "notes": e.notes} for e in chosen])


@router.post("/inventory", dependencies=READ)
def inventory(request: Request, selection: JsonBody) -> Response:
    """Per chosen experiment what a sync compares: meta, results, notes, run records, log
    sizes (``[events, highest seq]`` per run) and attachments. The body holds ``ls``'s
    options (``prefix``, ``kind``, ``since``, ``where``) or ``ids``."""
    selection = obj(selection or {}, "a selection")
    store = storage(request)
    if selection.get("ids") is not None:
        ids = selection["ids"]
        if not isinstance(ids, list):
            raise UserError('"ids" must be a list of experiment ids')
    else:
        options = {k: selection.get(k) for k in ("prefix", "kind", "since", "where")}
        ids = [e.id for e in select_experiments(repository(request), **options)]
    return reply(store.describe(ids))


def describe(store: Storage, exp_id: str) -> dict[str, Any]:
    """An experiment with its runs, log sizes and attachments."""
    record = store.experiment(exp_id)
    record["runs"] = store.runs(exp_id)
    record["logs"] = store.log_sizes(exp_id)
    record["attachments"] = store.attachments(exp_id)
    return record


@router.get("/lookup", dependencies=READ)
def lookup(request: Request, ref: str) -> Response:
    """The experiment ``ref`` names (id, unique id prefix, or a name, which may hold ``/``)
    as :func:`show` gives it; 404 if none, 409 if several."""
    return show(request, ref)


@router.get("/experiments/{ref}", dependencies=READ)
def show(request: Request, ref: str) -> Response:
    """One experiment by id, id prefix or name, with its runs, log sizes and attachments."""
    store = storage(request)
    return reply(describe(store, store.resolve(ref)))


@router.put("/experiments/{exp_id}", dependencies=WRITE)
def put_experiment(request: Request, exp_id: str, meta: JsonBody) -> Response:
    """Create an experiment from its ``meta.json``; repeating it is harmless."""
    meta = obj(meta, "the experiment's meta.json")
    if meta.get("id") != check_id(exp_id):
        raise UserError(f"meta id {meta.get('id')!r} differs from the URL's {exp_id}")
    return reply({"created": storage(request).put_experiment(meta)})


@router.put("/experiments/{exp_id}/results", dependencies=WRITE)
def put_results(request: Request, exp_id: str, results: JsonBody) -> Response:
    """Replace the results."""
    storage(request).set_results(check_id(exp_id), obj(results, "the results"))
    return reply({"ok": True})


@router.put("/experiments/{exp_id}/notes", dependencies=WRITE)
def put_notes(request: Request, exp_id: str, body: JsonBody) -> Response:
    """Replace the notes: ``{"notes": text}``."""
    storage(request).set_notes(check_id(exp_id), obj(body, '{"notes": text}').get("notes"))
    return reply({"ok": True})


@router.get("/experiments/{exp_id}/runs", dependencies=READ)
def runs(request: Request, exp_id: str) -> Response:
    return reply(storage(request).runs(check_id(exp_id)))


@router.put("/experiments/{exp_id}/runs/{number}", dependencies=WRITE)
def put_run(request: Request, exp_id: str, number: int, record: JsonBody) -> Response:
    """Store or replace run ``number``'s record (``run-<N>.json``)."""
    storage(request).put_run(check_id(exp_id), number, obj(record, "a run record"))
    return reply({"ok": True})
