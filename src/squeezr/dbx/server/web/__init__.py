"""The dbx web UI: browse the experiment tree, search with the where-language, compare
experiments, plot log queries (live while experiments run), keep Markdown notes.

``create_app(source, token, scope_of)`` (:mod:`.app`) builds the ASGI app over any
:class:`~.source.Source`: :class:`~.local.LocalSource` reads a repository folder
(``dbx ui --repo DIR``); ``dbx serve`` mounts it at ``/ui`` over its database
(:class:`~.storage_source.StorageSource`), checking the server's tokens. Pages are computed
in :mod:`.pages` and rendered by Jinja2 templates or as JSON (every page has a ``.json``
twin). Front-end libraries are vendored in ``static/vendor/`` (htmx, uPlot), so the UI
works with no network. User guide: docs/dbx-ui.md.
"""

from squeezr.dbx.server.web.app import create_app
from squeezr.dbx.server.web.local import LocalSource
from squeezr.dbx.server.web.source import Source

__all__ = ["LocalSource", "Source", "create_app"]
