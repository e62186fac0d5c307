"""Expanding a study into its experiments, and the templates that name and run them.

grid x zip x cases multiply into one :class:`Item` per experiment (its stage, key, name,
kind, params and the key of the experiment it depends on); templates fill ``{field}`` with
params, ``{name}``, ``{id}``, ``{stage}`` and, after another stage, ``{<stage>.id}``,
``{<stage>.name}``, ``{<stage>.<param>}``.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import re
import shlex
from collections.abc import Mapping
from typing import Any

from squeezr.dbx import jsonx
from squeezr.dbx.errors import UserError
from squeezr.dbx.store import validate_name
from squeezr.dbx.study.spec import Item, Stage, Study
from squeezr.dbx.views import flatten

__all__ = [
    "check_templates",
    "combinations",
    "dig",
    "expand",
    "expected_params",
    "fill",
    "nest",
    "render_command",
]

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_FILL = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_KEY = json.JSONEncoder(sort_keys=True)  # json.dumps(values, sort_keys=True), made once


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


def check_templates(study: Study) -> None:
    """Expand ``study`` (names, dependencies) and fill each stage's command once with
    placeholder ids: a UserError now for a template that names an unknown field, rather
    than when the experiment runs. A stage's items all have the same fields, so one each
    is enough."""
    if not study.expanded:
        study.expanded.extend(_expand(study))
    by_key = {item.key: item for item in study.expanded}
    for stage in study.stages:
        first = next((item for item in study.expanded if item.stage == stage.name), None)
        if first is None:
            continue
        probe = copy.copy(first)
        probe.id = "0" * 12
        known: dict[str, Item] = {}
        if first.depends is not None:
            dep = known[first.depends] = copy.copy(by_key[first.depends])
            dep.id = "0" * 12
        render_command(study, probe, known)


def _expand(study: Study) -> list[Item]:
    items: list[Item] = []
    names: dict[str, str] = {}
    for stage in study.stages:
        sources = _sources(stage, [item for item in items if item.stage == stage.after])
        for values in combinations(stage):
            flat = {**stage.params, **values}
            key = stage.name + ":" + _KEY.encode(values)
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
    out = []
    for literal, key in _parts(template):
        out.append(literal)
        if key is None:
            continue
        value = fields.get(key)
        if value is None:
            known = ", ".join(sorted(k for k, v in fields.items() if v is not None))
            raise UserError(f"{where}: unknown field {{{key}}} (known: {known})")
        text = _text(value)
        out.append(shlex.quote(text) if quote else text)
    return "".join(out)


@functools.lru_cache(maxsize=256)
def _parts(template: str) -> tuple[tuple[str, str | None], ...]:
    """``template`` cut once into (literal text, field name or None) pairs: a study fills
    each of its few templates thousands of times (10,000 experiment names)."""
    parts: list[tuple[str, str | None]] = []
    start = 0
    for match in _FILL.finditer(template):
        literal = template[start : match.start()]
        key = match.group(1)
        parts.append((literal + match.group(0)[0], None) if key is None else (literal, key))
        start = match.end()
    parts.append((template[start:], None))
    return tuple(parts)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return jsonx.encode(value)
    return str(value)


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"optimizer.lr": 0.1}`` as ``{"optimizer": {"lr": 0.1}}`` (dbx params have no dots)."""
    if not any("." in path for path in flat):  # the common case: nothing to nest
        return dict(flat)
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
