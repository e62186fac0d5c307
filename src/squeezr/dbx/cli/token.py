"""``dbx token create|list|revoke``: manage the API tokens of a server (run where it runs).

A token is printed once, at creation; the server keeps only its hash. Scopes: ``read``
(list, show, query, download), ``write`` (also stream and sync into the server), ``admin``
(also manage tokens over HTTP). Clients send it from ``$DBX_TOKEN``.
"""

from __future__ import annotations

import argparse

from squeezr.dbx import clikit
from squeezr.dbx.cli import common
from squeezr.dbx.cli.serve import add_storage_options, settings

EPILOG = """examples:
  dbx token create --data /srv/dbx --name ci --scope write
  dbx token list --data /srv/dbx
  dbx token revoke --data /srv/dbx 1f2e3d4c"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "token",
        __doc__,
        main,
        help="create, list or revoke server API tokens",
        epilog=EPILOG,
    )
    parser.add_argument("action", choices=["create", "list", "revoke"])
    parser.add_argument("token_id", nargs="?", metavar="ID", help="token to revoke")
    parser.add_argument("--name", help="who or what uses the token (create)")
    parser.add_argument(
        "--scope", choices=["read", "write", "admin"], default="read", help="(create; default read)"
    )
    add_storage_options(parser)
    clikit.add_output_options(parser)


def main(args: argparse.Namespace) -> int:
    from squeezr.dbx.errors import UserError
    from squeezr.dbx.server.auth import create_token
    from squeezr.dbx.server.storage import open_storage
    from squeezr.dbx.timeutil import now_iso

    storage = open_storage(settings(args))
    try:
        if args.action == "create":
            token_id, token = create_token(storage, args.name or "", args.scope)
            if args.fmt == "json":
                clikit.emit([{"id": token_id, "scope": args.scope, "token": token}], "json")
            else:
                print(f"token {token_id} ({args.scope}); shown only now, keep it secret:\n{token}")
        elif args.action == "list":
            rows = [{k: v for k, v in t.items() if k != "hash"} for t in storage.tokens()]
            clikit.emit(rows, args.fmt)
        else:
            if not args.token_id:
                raise UserError("give the ID of the token to revoke (see `dbx token list`)")
            storage.revoke_token(args.token_id, now_iso())
            print(f"token {args.token_id} revoked")
    finally:
        storage.close()
    return 0
