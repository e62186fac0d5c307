"""``dbx tune FILE``: hyperparameter search over a study stage, each trial a dbx experiment.

The study file's ``[tune]`` table gives the search space, the objective (an event pattern
and a field, read by a live listener on each trial's log), the sampler (tpe, random, grid)
and the pruner (median, halving, none); pruned trials are stopped. Running it again resumes
the search (the Optuna study lives in ``<repo>/.dbx/studies/<study>/``). Needs Optuna
(``pip install 'squeezr[study]'``). Python: ``squeezr.dbx.study.tune.tune``.
"""

from __future__ import annotations

import argparse

from squeezr.dbx import clikit
from squeezr.dbx.cli import common
from squeezr.dbx.study.spec import load
from squeezr.dbx.study.tune import tune


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = common.add_command(
        subparsers,
        "tune",
        __doc__,
        main,
        help="hyperparameter search (Optuna) over a study, trials as experiments",
        epilog="example: dbx tune studies/digits-tune.toml --trials 20 --slots 2",
    )
    parser.add_argument("file", metavar="FILE", help="the study file (TOML) with a [tune] table")
    parser.add_argument("--trials", type=int, help="finished trials to reach (default: the file's)")
    parser.add_argument("--slots", type=int, default=1, help="trials at a time (default 1)")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between log reads")
    common.add_repo_option(parser)
    clikit.add_output_options(parser)


def main(args: argparse.Namespace) -> int:
    search = tune(
        common.repository(args),
        load(args.file),
        trials=args.trials,
        slots=args.slots,
        poll=args.poll,
    )
    rows = [
        {
            "trial": trial.number,
            "state": trial.state.name.lower(),
            "value": trial.value,
            "steps": len(trial.intermediate_values),
            "id": common.short_id(str(trial.user_attrs.get("dbx_id", "")), args.fmt),
            **{f"params.{key}": value for key, value in trial.params.items()},
        }
        for trial in search.get_trials(deepcopy=False)
    ]
    clikit.emit(rows, args.fmt)
    return 0
