"""Study files: the TOML schema, checked as it is read, and its expansion into experiments.

A study is a set of *stages* (``baseline``, ``prune``, ...). Each stage has a command
template, an experiment-name template, fixed ``params`` and rotated ones: a ``grid``
(every combination), a ``zip`` (lists walked in step) and ``cases`` (an explicit list of
tables); the three multiply. ``seeds = [0, 1, 2]`` is a grid over ``seed``. A stage may run
``after`` another one: each of its experiments depends on the earlier stage's experiment
with the same values of the ``match`` params, and its templates can name that experiment
(``{baseline.id}``, ``{baseline.name}``, ``{baseline.<param>}``). The full schema, with an
example, is in docs/studies.md.

Everything here is pure: :func:`load` reads and checks a file (the schema); the expansion
into :class:`Item` s and the templates are in :mod:`squeezr.dbx.study.expand`. Ids are given
by the planner (:mod:`squeezr.dbx.study.plan`).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from squeezr.dbx.errors import UserError
from squeezr.dbx.store import validate_kind

__all__ = ["Expect", "Item", "Stage", "Study", "Tune", "load"]

_WORD = re.compile(r"^[A-Za-z0-9_-]+$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_STUDY_KEYS = {"name", "description", "workdir", "env", "slurm", "stage", "tune"}
_STAGE_KEYS = {
    "name",
    "kind",
    "command",
    "experiment",
    "params",
    "seeds",
    "grid",
    "zip",
    "cases",
    "after",
    "match",
    "expect",
}
_EXPECT_KEYS = {"params", "results", "events", "check_params"}
_TUNE_KEYS = {
    "stage",
    "experiment",
    "objective",
    "direction",
    "step",
    "final",
    "space",
    "trials",
    "sampler",
    "pruner",
    "seed",
    "startup",
    "warmup",
}


@dataclass(frozen=True)
class Expect:
    """What ``dbx study test`` checks beyond "ran to completion".

    ``params``: experiment param path -> expected value or template (default: every study
    param at its own path); ``results``: result keys that must be present; ``events``:
    event name (or pattern with ``*``) -> exact number of distinct such events."""

    params: dict[str, Any] | None = None
    results: tuple[str, ...] = ()
    events: dict[str, int] = field(default_factory=dict)
    check_params: bool = True


@dataclass(frozen=True)
class Stage:
    name: str
    kind: str
    command: str
    experiment: str
    params: dict[str, Any]
    grid: dict[str, list[Any]]
    zip: dict[str, list[Any]]
    cases: list[dict[str, Any]]
    after: str | None
    match: tuple[str, ...] | None
    expect: Expect

    @property
    def rotated(self) -> list[str]:
        """The names of the params this stage varies."""
        names = list(self.grid) + list(self.zip)
        for case in self.cases:
            names += [key for key in case if key not in names]
        return names


@dataclass(frozen=True)
class Tune:
    """``[tune]``: hyperparameter search over one stage (``dbx tune``)."""

    stage: str
    experiment: str
    objective: str  # query pattern and field, e.g. "train/epoch/:epoch/eval val_acc"
    direction: str
    step: str | None
    final: str | None
    space: dict[str, dict[str, Any]]
    trials: int
    sampler: str
    pruner: str
    seed: int | None
    startup: int = 5
    warmup: int = 0


@dataclass(frozen=True)
class Study:
    name: str
    path: Path
    sha256: str
    description: str
    workdir: Path
    env: dict[str, str]
    slurm: dict[str, Any]
    stages: list[Stage]
    tune: Tune | None
    expanded: list[Item] = field(default_factory=list, compare=False, repr=False)

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        known = ", ".join(s.name for s in self.stages)
        raise UserError(f"study {self.name!r} has no stage {name!r} (it has: {known})")


@dataclass
class Item:
    """One planned experiment: its stage, its identity in the study (``key``: the stage and
    the rotated values), name, kind, planned params, the key of the experiment it depends
    on, and (once ids are known) its id and rendered command."""

    stage: str
    key: str
    name: str
    kind: str
    params: dict[str, Any]
    values: dict[str, Any]
    depends: str | None = None
    id: str | None = None
    command: str | None = None


def load(path: Path | str) -> Study:
    """The checked study in TOML file ``path``; UserError naming the file and the problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"no study file {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read the study file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"study file {path} is not valid TOML: {exc}") from None
    where = f"study file {path}"
    _known(data, _STUDY_KEYS, where)
    name = _word(data.get("name"), f"{where}: name")
    stages_raw = data.get("stage")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise UserError(f"{where} has no [[stage]] tables; add at least one")
    stages: list[Stage] = []
    for number, table in enumerate(stages_raw, 1):
        stages.append(_stage(table, f"{where}: stage {number}", stages))
    env = data.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise UserError(f"{where}: env must be a table of strings")
    slurm = data.get("slurm", {})
    if not isinstance(slurm, dict):
        raise UserError(f"{where}: slurm must be a table of sbatch options")
    limit = slurm.get("limit", 1)
    if type(limit) is not int or limit < 1:
        raise UserError(f"{where}: slurm.limit must be a positive number of array tasks")
    study = Study(
        name=name,
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        description=str(data.get("description", "")),
        workdir=(path.parent / str(data.get("workdir", "."))).resolve(),
        env=dict(env),
        slurm=dict(slurm),
        stages=stages,
        tune=None,
    )
    if "tune" in data:
        study = replace(study, tune=_tune(data["tune"], study, f"{where}: [tune]"))
    from squeezr.dbx.study.expand import check_templates  # expand imports this module

    check_templates(study)  # every template and dependency is checked now, not when it runs
    return study


def _stage(table: Any, where: str, earlier: list[Stage]) -> Stage:
    if not isinstance(table, dict):
        raise UserError(f"{where} must be a table")
    _known(table, _STAGE_KEYS, where)
    name = _word(table.get("name"), f"{where}: name")
    where = where.split(": stage")[0] + f": stage {name!r}"
    if any(stage.name == name for stage in earlier):
        raise UserError(f"{where} is defined twice; give each stage its own name")
    for key in ("command", "experiment"):
        if not isinstance(table.get(key), str) or not table[key].strip():
            raise UserError(f'{where} needs {key} = "..." (a template string)')
    kind = validate_kind(table.get("kind", name))
    params = _params(table.get("params", {}), f"{where}: params")
    grid = _lists(table.get("grid", {}), f"{where}: grid")
    if "seeds" in table:
        if "seed" in grid:
            raise UserError(f"{where}: give the seeds either as seeds = [...] or in the grid")
        grid["seed"] = _lists({"seed": table["seeds"]}, f"{where}: seeds")["seed"]
    zipped = _lists(table.get("zip", {}), f"{where}: zip")
    if len({len(values) for values in zipped.values()}) > 1:
        lengths = ", ".join(f"{k}: {len(v)}" for k, v in zipped.items())
        raise UserError(f"{where}: the zip lists must have the same length ({lengths})")
    cases = table.get("cases", [])
    if not isinstance(cases, list) or not all(isinstance(c, dict) and c for c in cases):
        raise UserError(f"{where}: cases must be a list of tables ([[stage.cases]])")
    cases = [_params(case, f"{where}: cases") for case in cases]
    rotated = [*grid, *zipped]
    if len(set(rotated)) < len(rotated):
        raise UserError(f"{where}: a param is both in grid and zip; rotate it in one place")
    for case in cases:
        for key in case:
            if key in rotated:
                raise UserError(f"{where}: {key!r} is in cases and in grid/zip; pick one")
    after = table.get("after")
    match = table.get("match")
    if after is not None:
        if not any(stage.name == after for stage in earlier):
            raise UserError(f"{where}: after = {after!r} must name an earlier stage")
        if match is not None and (
            not isinstance(match, list) or not all(isinstance(m, str) for m in match)
        ):
            raise UserError(f"{where}: match must be a list of param names")
    elif match is not None:
        raise UserError(f'{where}: match needs after = "<earlier stage>"')
    return Stage(
        name=name,
        kind=kind,
        command=table["command"],
        experiment=table["experiment"],
        params=params,
        grid=grid,
        zip=zipped,
        cases=cases,
        after=after,
        match=tuple(match) if match is not None else None,
        expect=_expect(table.get("expect", {}), f"{where}: expect"),
    )


def _expect(table: Any, where: str) -> Expect:
    if not isinstance(table, dict):
        raise UserError(f"{where} must be a table")
    _known(table, _EXPECT_KEYS, where)
    params = table.get("params")
    if params is not None:
        if isinstance(params, list):
            params = {key: "{" + str(key) + "}" for key in params}
        if not isinstance(params, dict):
            raise UserError(f"{where}: params must be a list of names or a table")
        params = dict(params)
    results = table.get("results", [])
    if not isinstance(results, list) or not all(isinstance(r, str) and r for r in results):
        raise UserError(f"{where}: results must be a list of result keys")
    events = table.get("events", {})
    if not isinstance(events, dict) or not all(type(n) is int and n >= 0 for n in events.values()):
        raise UserError(f"{where}: events must map event names to counts (0 or more)")
    return Expect(
        params=params,
        results=tuple(results),
        events=dict(events),
        check_params=bool(table.get("check_params", True)),
    )


def _tune(table: Any, study: Study, where: str) -> Tune:
    if not isinstance(table, dict):
        raise UserError(f"{where} must be a table")
    _known(table, _TUNE_KEYS, where)
    stage = study.stage(str(table.get("stage", study.stages[0].name)))
    objective = table.get("objective")
    if not isinstance(objective, str) or len(objective.split()) != 2:
        raise UserError(
            f'{where}: objective = "<event pattern> <field>", e.g. '
            '"train/epoch/:epoch/eval val_acc"'
        )
    direction = table.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise UserError(f"{where}: direction must be maximize or minimize")
    space = table.get("space", {})
    if not isinstance(space, dict) or not all(isinstance(s, dict) for s in space.values()):
        raise UserError(f"{where}: space must hold one table per param, e.g. lr = {{low = ...}}")
    for key, spec in space.items():
        if not ("choices" in spec or ("low" in spec and "high" in spec)):
            raise UserError(f"{where}: space.{key} needs choices = [...] or low and high")
    sampler = table.get("sampler", "tpe")
    if sampler not in ("tpe", "random", "grid"):
        raise UserError(f"{where}: sampler must be tpe, random or grid")
    pruner = table.get("pruner", "median")
    if pruner not in ("median", "halving", "none"):
        raise UserError(f"{where}: pruner must be median, halving or none")
    trials = table.get("trials", 20)
    if type(trials) is not int or trials < 1:
        raise UserError(f"{where}: trials must be a positive number")
    seed = table.get("seed")
    if seed is not None and type(seed) is not int:
        raise UserError(f"{where}: seed must be an integer")
    for key in ("startup", "warmup"):
        if type(table.get(key, 0)) is not int or table.get(key, 0) < 0:
            raise UserError(f"{where}: {key} must be a number of trials/steps (0 or more)")
    return Tune(
        stage=stage.name,
        experiment=str(table.get("experiment", f"{study.name}/tune/{{trial}}")),
        objective=objective,
        direction=direction,
        step=table.get("step"),
        final=table.get("final"),
        space={key: dict(spec) for key, spec in space.items()},
        trials=trials,
        sampler=sampler,
        pruner=pruner,
        seed=seed,
        startup=table.get("startup", 5),
        warmup=table.get("warmup", 0),
    )


def _known(table: dict[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(keys))})")


def _word(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _WORD.match(value):
        raise UserError(f"{where} must be one word (letters, digits, _ and -), got {value!r}")
    return value


def _params(table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise UserError(f"{where} must be a table")
    for key in table:
        if not _PARAM.match(key):
            raise UserError(f"{where}: {key!r} is not a param name (letters, digits, _, dots)")
    return dict(table)


def _lists(table: Any, where: str) -> dict[str, list[Any]]:
    table = _params(table, where)
    for key, values in table.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}: {key} must be a non-empty list of values")
    return table
