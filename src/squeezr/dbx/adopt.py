"""Adopting a planned experiment: how a study's runs land in the experiments it planned.

``dbx study plan`` records each experiment of a study before it runs (a ``meta.json`` with
the planned params under ``study``, no runs: status ``planned``). The runner, the generated
scripts and ``dbx tune`` start the experiment's command with ``$DBX_EXPERIMENT`` set to its
id; the program's ``dbx.create(...)`` then records its run in that experiment instead of
creating a second one, so any program that logs to dbx can be run by a study unchanged.

The first run replaces the planned params and kind by the ones the program passes (what
really ran: ``dbx study test`` compares them with the plan, which stays in ``study``); the
folder, hence the name, stays the planned one. A later run (a retry) is a new run of the
same experiment, like :func:`squeezr.dbx.resume`. The variable is removed from the
environment once used, so further ``create`` calls and child processes make experiments of
their own.
"""

from __future__ import annotations

import os
from typing import Any

from squeezr.dbx import jsonx
from squeezr.dbx.errors import UserError
from squeezr.dbx.fileio import atomic_write, locked
from squeezr.dbx.store import LOCK, Experiment, Repository, validate_kind
from squeezr.dbx.views import check_keys

__all__ = ["ENV", "adopt_planned"]

ENV = "DBX_EXPERIMENT"


def adopt_planned(
    repository: Repository, kind: str, params: dict[str, Any] | None
) -> Experiment | None:
    """The experiment ``$DBX_EXPERIMENT`` names, with ``kind`` and ``params`` recorded if it
    has not run yet; None when the variable is not set."""
    ref = os.environ.pop(ENV, "")
    if not ref:
        return None
    try:
        exp = repository.get(ref)
    except UserError:
        raise UserError(
            f"${ENV}={ref} names no experiment in {repository.path}; plan the study into this "
            "repository (dbx study plan FILE --repo ...) or unset the variable"
        ) from None
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise UserError(f"params must be a JSON object (a dict), not {type(params).__name__}")
    check_keys(params, "param")
    validate_kind(kind)
    with locked(exp.path / LOCK):
        if exp.run_numbers():
            return exp
        meta = exp.meta
        meta.update(kind=kind, params=params)
        try:
            text = jsonx.encode(meta, indent=2) + "\n"
        except (TypeError, ValueError) as exc:
            raise UserError(f"params of {exp.name!r} cannot be stored as JSON: {exc}") from None
        atomic_write(exp.path / "meta.json", text)
    return Experiment(repository, exp.path)
