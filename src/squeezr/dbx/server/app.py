"""``create_app(settings)``: the ASGI application of ``dbx serve``, wired from its parts.

The storage is opened (and migrated) in the lifespan, so importing the app does nothing;
every :class:`~squeezr.dbx.errors.UserError` becomes ``{"error", "status"}`` with its
``status``; request bodies are capped by :class:`~squeezr.dbx.server.limits.BodyLimit`.
``extra_routers`` mounts more routes on the same storage (``app.state``). The web UI is
mounted at ``/ui`` over the same storage (``/`` sends a browser there); it accepts the
server's own tokens, given once on its login page and kept in an HttpOnly cookie.
The OpenAPI page is at ``/docs`` (schema: ``/openapi.json``).
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import AsyncIterator, Iterable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse

from squeezr import __version__
from squeezr.dbx.errors import UserError
from squeezr.dbx.server.auth import require, verify_token
from squeezr.dbx.server.limits import BodyLimit
from squeezr.dbx.server.routes import ROUTERS
from squeezr.dbx.server.settings import Settings
from squeezr.dbx.server.storage import open_blobs, open_storage

__all__ = ["create_app"]


def create_app(settings: Settings, extra_routers: Iterable[APIRouter] = ()) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.storage = open_storage(settings)
        app.state.blobs = open_blobs(settings)
        app.state.query_cache = _LazyCache(app.state.storage)
        # the query engine (pandas) loads in the background: the first query need not wait
        threading.Thread(
            target=importlib.import_module, args=("squeezr.dbx.query",), daemon=True
        ).start()
        try:
            yield
        finally:
            app.state.storage.close()

    app = FastAPI(
        title="dbx server",
        version=__version__,
        description="Experiments, runs, results, notes, event logs and attachments of dbx "
        "repositories. Send `Authorization: Bearer <token>` (see `dbx token create`).",
        lifespan=lifespan,
    )
    app.add_exception_handler(UserError, _render_error)
    for router in (*ROUTERS, *extra_routers):
        app.include_router(router)
    _mount_ui(app)

    @app.get("/api/v1/info", tags=["server"], dependencies=[Depends(require("read"))])
    def info(request: Request) -> dict[str, Any]:
        return {"dbx": __version__, "schema": request.app.state.storage.schema_version()}

    app.add_middleware(BodyLimit, max_body=settings.max_body)
    return app


def _mount_ui(app: FastAPI) -> None:
    """The web UI at ``/ui``: pages read the database through a ``StorageSource``; a token
    is checked by the server's own :func:`~squeezr.dbx.server.auth.verify_token`."""
    from squeezr.dbx.server.web import create_app as create_ui
    from squeezr.dbx.server.web.storage_source import StorageSource

    def scope_of(token: str) -> str:
        return verify_token(app.state.storage, token)["scope"]

    app.mount("/ui", create_ui(StorageSource(app.state), scope_of=scope_of))

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/experiments", 303)


class _LazyCache:
    """The query table cache, built on first use (it imports the query engine, pandas)."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self._cache: Any = None

    def table(self, *args: Any) -> Any:
        if self._cache is None:
            from squeezr.dbx.server.querycache import TableCache

            self._cache = TableCache(self.storage)
        return self._cache.table(*args)


async def _render_error(request: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "status", 400)
    return JSONResponse({"error": str(exc), "status": status}, status_code=status)
