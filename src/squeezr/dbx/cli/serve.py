"""``dbx serve``: run the dbx HTTP server (REST API, OpenAPI page at /docs, web UI at /ui).

Data goes to a database (``--db postgresql://...``; default: SQLite in ``--data``) and
attachment bytes to ``--data/blobs``, stored once per sha256. Every request needs a token
(``dbx token create``). Needs the ``server`` extra. Deployment: docs/dbx-server.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from squeezr.dbx.cli import common
from squeezr.dbx.errors import UserError

EPILOG = """examples:
  dbx serve --data /srv/dbx                        # SQLite in /srv/dbx/dbx.sqlite3
  dbx serve --data /srv/dbx --db postgresql://dbx@localhost/dbx --port 8765
  dbx token create --data /srv/dbx --name laptop --scope write"""


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    """``--data`` and ``--db``, shared with ``dbx token``."""
    parser.add_argument(
        "--data", required=True, help="server data folder (attachments; the SQLite database)"
    )
    parser.add_argument(
        "--db", help="database URL, e.g. postgresql://user@host/dbx (default: SQLite in --data)"
    )


def settings(args: argparse.Namespace) -> object:
    from squeezr.dbx.server.settings import DEFAULT_MAX_BODY, Settings

    max_body = getattr(args, "max_body", None)
    limit = DEFAULT_MAX_BODY if max_body is None else int(max_body * 1024 * 1024)
    if limit <= 0:
        raise UserError(f"--max-body must be a positive number of MiB (got {max_body})")
    return Settings(data=Path(args.data), database=args.db, max_body=limit)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "serve",
        __doc__,
        main,
        help="run the HTTP server (REST API and web UI)",
        epilog=EPILOG,
    )
    add_storage_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    parser.add_argument("--max-body", type=float, help="largest request body in MiB (default: 256)")


def main(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from squeezr.dbx.server.app import create_app
    except ImportError as exc:
        raise UserError(
            f"dbx serve needs the server extra ({exc.name} is missing): "
            "pip install 'squeezr[server]'"
        ) from None
    config = settings(args)
    from squeezr.dbx.server.storage import open_storage

    open_storage(config).close()  # a bad --db is a one-line error here, not a traceback later
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="warning")
    return 0
