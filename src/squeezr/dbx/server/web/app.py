"""The web UI as an ASGI application: ``create_app(source, token, scope_of)``.

Routes are thin: each reads its query string, calls one function of :mod:`pages` and renders
the result as HTML, or as JSON when the path ends in ``.json``. ``dbx ui`` serves it over a
local repository; ``dbx serve`` can mount the same app over its database by passing its own
:class:`~squeezr.dbx.server.web.source.Source`. Errors (a malformed query, an unknown
experiment, a missing token) become a page with the one-line message and the HTTP status
the error carries; anything unexpected is logged and shown as a short message, never a
traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import PurePosixPath
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from squeezr.dbx import jsonx
from squeezr.dbx.errors import UserError
from squeezr.dbx.server.web import auth, pages, render
from squeezr.dbx.server.web.source import Source

log = logging.getLogger("dbx.ui")
JSON = "application/json"
# Defence in depth: only this server's own scripts run, pages cannot be framed, attachments
# are downloads that browsers must not sniff into HTML.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    source: Source,
    token: str | None = None,
    scope_of: Callable[[str], str] | None = None,
) -> FastAPI:
    """The UI over ``source``; every request but static files must carry ``token`` (the
    one token of ``dbx ui``, also accepted as ``?token=``), or one that ``scope_of`` accepts
    (it returns the token's scope: how ``dbx serve`` checks its own tokens); neither: no
    check."""
    app = FastAPI(title="dbx", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.source = source
    app.mount("/static", StaticFiles(directory=render.HERE / "static"), name="static")
    if scope_of is not None:
        app.middleware("http")(auth.middleware(scope_of, error_response, url_token=False))
    elif token is not None:
        app.middleware("http")(auth.middleware(auth.local_scope(token), error_response))
    app.add_middleware(SecurityHeaders)  # added last: outermost, so refusals get them too
    app.add_exception_handler(UserError, _user_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    _routes(app, source)
    return app


# --- rendering ------------------------------------------------------------------------------


def wants_json(request: Request) -> bool:
    return request.url.path.endswith(".json")


def base(request: Request) -> str:
    """The path the UI is mounted at ("" at the root): every link starts with it."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def html(request: Request, template: str, code: int = 200, **values: Any) -> HTMLResponse:
    root = base(request)
    path = request.url.path
    here = path[len(root) :] if root and path.startswith(root) else path
    text = render.page(template, request=request, base=root, here=here, **values)
    return HTMLResponse(text, status_code=code)


def respond(request: Request, template: str, data: dict[str, Any]) -> Response:
    """``data`` as JSON for a ``.json`` path, else rendered with ``template``."""
    if wants_json(request):
        return Response(jsonx.encode(data), media_type=JSON)
    args = dict(request.query_params.multi_items())
    return html(request, template, data=data, args=args)


def error_response(request: Request, error: UserError) -> Response:
    status = getattr(error, "status", 400)
    message = str(error)
    if wants_json(request) or "text/event-stream" in request.headers.get("accept", ""):
        return Response(
            jsonx.encode({"error": message, "status": status}), status_code=status, media_type=JSON
        )
    return html(request, "error.html", status, status=status, message=message, args={})


async def _user_error(request: Request, exc: Exception) -> Response:
    return error_response(request, exc)  # type: ignore[arg-type]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = UserError(
        f"no page {request.url.path}; start from the experiment list at /"
        if exc.status_code == 404
        else str(exc.detail)
    )
    error.status = exc.status_code
    return error_response(request, error)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("dbx ui: error on %s", request.url.path)
    error = UserError(f"internal error ({type(exc).__name__}: {exc}); the server log has details")
    error.status = 500
    return error_response(request, error)


def _int(text: str, name: str) -> int:
    try:
        return int(text or 0)
    except ValueError:
        raise UserError(f"{name} must be a whole number, not {text!r}") from None


# --- routes -------------------------------------------------------------------------------


def _routes(app: FastAPI, source: Source) -> None:
    @app.get("/")
    def home(request: Request) -> Response:
        return RedirectResponse(f"{base(request)}/experiments", 303)

    @app.get("/experiments")
    @app.get("/experiments.json")
    def experiments(
        request: Request,
        prefix: str = "",
        kind: str = "",
        where: str = "",
        sort: str = "",
        columns: str = "",
        offset: str = "",
    ) -> Response:
        data = pages.experiments_page(
            source, prefix, kind, where, sort, columns, _int(offset, "offset")
        )
        return respond(request, "experiments.html", data)

    @app.get("/e/{ref}")
    @app.get("/e/{ref}.json")  # registered first (decorators apply bottom-up): ".json" wins
    def experiment(request: Request, ref: str) -> Response:
        return respond(request, "experiment.html", pages.experiment_page(source, ref))

    @app.get("/e/{ref}/progress")
    def progress(request: Request, ref: str) -> Response:
        return respond(request, "_progress.html", pages.progress_part(source, ref))

    @app.get("/e/{ref}/files/{name:path}")
    def attachment(ref: str, name: str) -> Response:
        path = source.attachment(ref, name)  # a server's blob is named by its checksum
        return FileResponse(path, filename=PurePosixPath(name).name)

    @app.post("/e/{ref}/notes")
    def notes(request: Request, ref: str, text: str = Form("")) -> Response:
        text = text.replace("\r\n", "\n")
        source.set_notes(ref, text)
        if request.headers.get("hx-request"):  # htmx swaps in the saved notes
            return respond(request, "_notes.html", {"id": ref, "notes": text})
        return RedirectResponse(f"{base(request)}/e/{ref}#notes", 303)

    @app.get("/compare")
    @app.get("/compare.json")
    def compare(request: Request) -> Response:
        ids = [i for value in request.query_params.getlist("id") for i in value.split(",")]
        return respond(request, "compare.html", pages.compare_page(source, ids))

    @app.get("/like/{ref}")
    @app.get("/like/{ref}.json")
    def like(request: Request, ref: str) -> Response:
        return respond(request, "like.html", pages.like_page(source, ref))

    @app.get("/plot")
    @app.get("/plot.json")
    def plot(request: Request) -> Response:
        return respond(request, "plot.html", pages.plot_page(source, **_plot_args(request)))

    @app.get("/plot/stream")
    async def stream(request: Request) -> Response:
        args = _plot_args(request)
        if not args["q"].strip():
            raise UserError("give a query (?q=...) to follow")
        pages.plot_page(source, **args)  # a bad query is an error page, not a broken stream
        return StreamingResponse(
            _follow(request, source, args),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


def _plot_args(request: Request) -> dict[str, Any]:
    query = request.query_params
    ids = [i for value in query.getlist("id") for i in value.split(",") if i]
    fields = ("q", "x", "y", "group", "prefix", "kind", "where")
    return {"ids": ids, **{name: query.get(name, "") for name in fields}}


async def _follow(request: Request, source: Source, args: dict[str, Any]) -> AsyncIterator[str]:
    """Server-sent events: the plot's data again each time the query's live listener
    (``Source.follow``) reports new or changed rows, a comment line otherwise.

    The listener runs in its own thread, handing batches over through a queue. When the
    browser goes away (this generator is cancelled or closed, or sees the disconnect), the
    ``stop`` flag ends the listener at its next poll and the thread closes it.
    """
    stopped = threading.Event()
    loop = asyncio.get_running_loop()
    batches: asyncio.Queue[Any] = asyncio.Queue()
    selection = {k: args[k] or None for k in ("prefix", "kind", "where")}
    ids = args["ids"] or None

    def hand_over(item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop has closed
            loop.call_soon_threadsafe(batches.put_nowait, item)

    def listen() -> None:
        listener = source.follow(args["q"], ids, interval=1.0, stop=stopped.is_set, **selection)
        try:
            for batch in listener:
                if stopped.is_set():
                    break
                hand_over(batch)
        except UserError as exc:  # reported to the page, not lost in a thread
            hand_over(exc)
        except Exception as exc:
            log.exception("dbx ui: live listener failed")
            hand_over(UserError(f"the live listener failed ({type(exc).__name__}: {exc})"))
        finally:
            listener.close()
            hand_over(None)

    threading.Thread(target=listen, name="dbx-ui-follow", daemon=True).start()
    try:
        while not await request.is_disconnected():
            batch = await batches.get()
            if batch is None:
                return
            if isinstance(batch, Exception):
                yield _event("problem", {"error": str(batch)})
                return
            if len(batch):
                try:
                    data = await asyncio.to_thread(pages.plot_page, source, **args)
                    yield f"data: {jsonx.encode(data)}\n\n"
                except UserError as exc:
                    yield _event("problem", {"error": str(exc)})
            else:
                yield ": waiting\n\n"
    finally:
        stopped.set()


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {jsonx.encode(data)}\n\n"
