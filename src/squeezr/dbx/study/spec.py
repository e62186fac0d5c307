"""Study files: the TOML schema, checked as it is read, and its expansion into experiments.

A study is a set of *stages* (``baseline``, ``prune``, ...). Each stage has a command
template, an experiment-name template, fixed ``params`` and rotated ones: a ``grid``
(every combination), a ``zip`` (lists walked in step) and ``cases`` (an explicit list of
tables); the three multiply. ``seeds = [0, 1, 2]`` is a grid over ``seed``. A stage may run
``after`` another one: each of its experiments depends on the earlier stage's experiment
with the same values of the ``match`` params, and its templates can name that experiment
(``{baseline.id}``, ``{baseline.name}``, ``{baseline.<param>}``). The full schema, with an
example, is in docs/studies.md.

Everything here is pure: :func:`load` reads and checks a file, :func:`expand` turns a study
into :class:`Item` s. Ids are given by the planner (:mod:`squeezr.dbx.study.plan`), which
then fills in the commands with :func:`render_command`.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from squeezr.dbx import jsonx
from squeezr.dbx.errors import UserError
from squeezr.dbx.store import validate_kind, validate_name
from squeezr.dbx.views import flatten

__all__ = ["Expect", "Item", "Stage", "Study", "Tune", "expand", "load", "render_command"]

_WORD = re.compile(r"^[A-Za-z0-9_-]+$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_FILL = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_.]*)\}")
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
    items = expand(study)  # every template and dependency is checked now, not when it runs
    by_key = {item.key: item for item in items}
    for item in items:
        item.id = "0" * 12
    for stage in study.stages:  # a stage's items all have the same fields: try one
        first = next((item for item in items if item.stage == stage.name), None)
        if first is not None:
            render_command(study, first, by_key)
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


def combinations(stage: Stage) -> list[dict[str, Any]]:
    """The rotated values of each experiment of ``stage``: grid x zip x cases, in file order
    (the grid's last key varies fastest)."""
    grid = [
        dict(zip(stage.grid, combo, strict=True))
        for combo in itertools.product(*stage.grid.values())
    ]
    length = len(next(iter(stage.zip.values()))) if stage.zip else 1
    zipped = [{key: values[i] for key, values in stage.zip.items()} for i in range(length)]
    cases = stage.cases or [{}]
    return [{**g, **z, **c} for g in grid for z in zipped for c in cases]


def expand(study: Study) -> list[Item]:
    """Every experiment of ``study``, stage by stage (fresh copies: callers fill in ids and
    commands); UserError for a template naming an unknown field, two experiments with one
    name, or a dependency that is not one experiment."""
    if not study.expanded:
        study.expanded.extend(_expand(study))
    return [copy.copy(item) for item in study.expanded]


def _expand(study: Study) -> list[Item]:
    items: list[Item] = []
    names: dict[str, str] = {}
    for stage in study.stages:
        sources = _sources(stage, [item for item in items if item.stage == stage.after])
        for values in combinations(stage):
            flat = {**stage.params, **values}
            key = stage.name + ":" + json.dumps(values, sort_keys=True)
            item = Item(
                stage=stage.name,
                key=key,
                name="",
                kind=stage.kind,
                params=nest(flat),
                values=values,
            )
            fields = {**flat, "stage": stage.name}
            if sources is not None:
                dep = _dependency(stage, values, *sources)
                item.depends = dep.key
                fields.update(_dependency_fields(stage.after or "", dep))
            item.name = validate_name(
                fill(stage.experiment, fields, f"stage {stage.name!r}: experiment", quote=False)
            )
            if item.name in names:
                raise UserError(
                    f"study {study.name!r}: stage {stage.name!r} names two experiments "
                    f"{item.name!r}; put the rotated params ({', '.join(stage.rotated)}) in "
                    "its experiment template"
                )
            names[item.name] = key
            items.append(item)
    return items


def _sources(
    stage: Stage, earlier: list[Item]
) -> tuple[tuple[str, ...], dict[str, list[Item]]] | None:
    """The params that pick a stage's source experiment, and the earlier stage's items by
    their values of those params; None for a stage that runs after nothing."""
    if stage.after is None:
        return None
    match = stage.match
    if match is None:  # default: the rotated params both stages have
        shared = set(earlier[0].values) if earlier else set()
        match = tuple(key for key in stage.rotated if key in shared)
    index: dict[str, list[Item]] = {}
    for item in earlier:
        wanted = [_lookup(item, key) for key in match]
        index.setdefault(json.dumps(wanted), []).append(item)
    return match, index


def _dependency(
    stage: Stage, values: dict[str, Any], match: tuple[str, ...], index: dict[str, list[Item]]
) -> Item:
    found = index.get(json.dumps([_value(values, stage, key) for key in match]), [])
    if len(found) != 1:
        shown = ", ".join(f"{k}={_value(values, stage, k)!r}" for k in match) or "nothing"
        raise UserError(
            f"stage {stage.name!r}: the experiment with {shown} matches {len(found)} "
            f"experiments of stage {stage.after!r}, not one; set match = [...] to the params "
            "that pick its source"
        )
    return found[0]


def _lookup(item: Item, key: str) -> Any:
    if key in item.values:
        return item.values[key]
    return dig(item.params, key)


def _value(values: dict[str, Any], stage: Stage, key: str) -> Any:
    return values[key] if key in values else stage.params.get(key)


def _dependency_fields(prefix: str, dep: Item) -> dict[str, Any]:
    fields = {f"{prefix}.name": dep.name}
    fields.update({f"{prefix}.{key}": value for key, value in flatten(dep.params).items()})
    if dep.id is not None:
        fields[f"{prefix}.id"] = dep.id
    return fields


def render_command(study: Study, item: Item, by_key: Mapping[str, Item]) -> str:
    """``item``'s command with every ``{field}`` filled in (values shell-quoted); ids must
    have been given (:mod:`squeezr.dbx.study.plan`)."""
    stage = study.stage(item.stage)
    fields = {**flatten(item.params), "stage": item.stage, "name": item.name, "id": item.id}
    if item.depends is not None:
        fields.update(_dependency_fields(stage.after or "", by_key[item.depends]))
    return fill(stage.command, fields, f"stage {stage.name!r}: command", quote=True)


def expected_params(study: Study, item: Item) -> dict[str, Any]:
    """Experiment param path -> the value ``dbx study test`` expects there."""
    stage = study.stage(item.stage)
    if not stage.expect.check_params:
        return {}
    flat = flatten(item.params)
    if stage.expect.params is None:
        return flat
    expected = {}
    for path, wanted in stage.expect.params.items():
        whole = _FIELD.fullmatch(wanted) if isinstance(wanted, str) else None
        if whole and whole.group(1) in flat:  # "{lr}": the value itself, not its text
            expected[path] = flat[whole.group(1)]
        elif isinstance(wanted, str):
            expected[path] = fill(wanted, flat, f"stage {stage.name!r}: expect.params", False)
        else:
            expected[path] = wanted
    return expected


def fill(template: str, fields: Mapping[str, Any], where: str, quote: bool) -> str:
    """``template`` with each ``{field}`` (a name, possibly dotted) replaced by its value,
    ``{{`` and ``}}`` by one brace; other braces are left as they are. UserError naming an
    unknown field and the known ones."""

    def text(match: re.Match[str]) -> str:
        key = match.group(1)
        if key is None:
            return match.group(0)[0]
        if key not in fields or fields[key] is None:
            known = ", ".join(sorted(k for k, v in fields.items() if v is not None))
            raise UserError(f"{where}: unknown field {{{key}}} (known: {known})")
        value = _text(fields[key])
        return shlex.quote(value) if quote else value

    return _FILL.sub(text, template)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return jsonx.encode(value)
    return str(value)


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"optimizer.lr": 0.1}`` as ``{"optimizer": {"lr": 0.1}}`` (dbx params have no dots)."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, last = path.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"param {path!r} lies under {part!r}, which has a value")
        node[last] = value
    return tree


def dig(tree: Mapping[str, Any], path: str) -> Any:
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
