"""``dbx import mlflow|tensorboard SOURCE``: bring other trackers' runs into a repository.

MLflow: SOURCE is an ``mlruns`` folder or a tracking URI (``sqlite:///mlflow.db``,
``http://host:5000``); params, metric histories, tags and artifacts. TensorBoard: SOURCE is a
log folder; every run folder below it with event files, its scalars as events. Importing
again adds only what is new. Needs the ``import`` extra (``mlflow-skinny``, ``tensorboard``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from squeezr.dbx import clikit
from squeezr.dbx.cli import common

EPILOG = """examples:
  dbx import mlflow ./mlruns --prefix mlflow
  dbx import mlflow http://127.0.0.1:5000 --repo ./experiments
  dbx import tensorboard ./runs --prefix tb
  dbx query "loss/:step" tb/ --csv"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "import",
        __doc__,
        main,
        help="import MLflow runs or TensorBoard logs",
        epilog=EPILOG,
    )
    parser.add_argument("tool", choices=["mlflow", "tensorboard"])
    parser.add_argument("source", metavar="SOURCE", help="MLflow folder/URI or TensorBoard logs")
    parser.add_argument("--prefix", default="", help="name prefix for the new experiments")
    common.add_repo_option(parser)
    clikit.add_output_options(parser)


def main(args: argparse.Namespace) -> int:
    from squeezr.dbx.errors import UserError
    from squeezr.dbx.importers import write
    from squeezr.dbx.store import DEFAULT_REPO, Repository, validate_name

    if args.prefix:
        validate_name(args.prefix)
    repo = getattr(args, "repo", None)
    if repo is None:  # where dbx ls looks, else a new ./experiments (as dbx.create does)
        try:
            repo = Repository.find().path
        except UserError:
            repo = Path(DEFAULT_REPO)
    with tempfile.TemporaryDirectory(prefix="dbx-import-") as scratch:
        if args.tool == "mlflow":
            from squeezr.dbx.importers import mlflow

            runs = mlflow.read(args.source, args.prefix, Path(scratch))
        else:
            from squeezr.dbx.importers import tensorboard

            runs = tensorboard.read(args.source, args.prefix)
        rows = write(repo, runs)
    clikit.emit(rows, args.fmt)
    return 0
