"""HTTP routes, one module per resource, each handler a few lines over the storage,
``select`` and ``query``. Every route depends on :func:`squeezr.dbx.server.auth.require`."""

from squeezr.dbx.server.routes import attachments, events, experiments, query, tokens

ROUTERS = [experiments.router, events.router, attachments.router, query.router, tokens.router]

__all__ = ["ROUTERS"]
