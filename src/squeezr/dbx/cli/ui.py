"""``dbx ui [--repo DIR]``: browse, search, compare and plot a repository in a web browser.

Serves the web UI (docs/dbx-ui.md) over a local repository folder, with no database to set
up, on 127.0.0.1 unless ``--host`` says otherwise. Every address needs the access token
printed at start (or set in ``$DBX_UI_TOKEN``): open the printed link once and the browser
keeps it. Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import socket

from squeezr.dbx.cli import common
from squeezr.dbx.errors import UserError

EPILOG = """examples:
  dbx ui --repo ./experiments
  dbx ui --port 9000                 # then, from a laptop: ssh -L 9000:127.0.0.1:9000 HEAD
  DBX_UI_TOKEN=secret dbx ui --host 0.0.0.0"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers, "ui", __doc__, main, help="web UI over a repository", epilog=EPILOG
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)"
    )
    common.add_repo_option(parser)


def main(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from squeezr.dbx.server.web import LocalSource, create_app
        from squeezr.dbx.server.web.auth import new_token
    except ImportError as exc:
        raise UserError(
            f"dbx ui needs the server extra ({exc.name} is missing): pip install 'squeezr[server]'"
        ) from None
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be 0..65535 (got {args.port})")
    source = LocalSource(common.repository(args).path)
    token = os.environ.get("DBX_UI_TOKEN") or new_token()
    listener = _listen(args.host, args.port)
    port = listener.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"dbx ui: serving {source.repo.path}", flush=True)
    print(f"dbx ui: open http://{shown}:{port}/?token={token}", flush=True)
    config = uvicorn.Config(
        create_app(source, token),
        log_level="warning",
        timeout_graceful_shutdown=2,
        access_log=False,
    )
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (bound here, so port 0 gives the real number to
    print); UserError if the address cannot be used."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise UserError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
