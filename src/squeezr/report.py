"""The thesis's figures and results table from a set of pruning runs (``squeezr report``).

Each figure is a data function here (a DataFrame from the runs' logs, read with dbx log
queries) plus a :class:`~squeezr.dbx.report.FigureSpec`; ``squeezr.dbx.report`` draws it and
writes its CSV and the script that redraws it, whose ``--refresh`` calls the same data
function again. Runs are told apart by saliency method, by whether they fine-tune (schedule
``none`` or not) and by their initial model (``params.source``): means and standard errors
are taken over the initial models of a method.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd

from squeezr.dbx.errors import UserError

__all__ = [
    "blocks_per_group",
    "error_by_step",
    "results",
    "runs",
    "saliency_map",
    "tau_between_methods",
    "write_report",
]

FT, NO_FT = "fine-tuned", "no fine-tuning"
FINISHED = "exists(results.blocks_removed)"
STEP_QUERY = (
    "prune/step/:k | select exp.id as run, params.prune.method as method, "
    "params.prune.schedule as schedule, params.source as source, k as step, "
    "blocks_removed, 100 * (1 - test_acc_after) as test_error, "
    "100 * (1 - test_acc_before) as test_error_before_ft, params_removed_pct, cost, config"
)
INITIAL_QUERY = (
    "prune/initial | select exp.id as run, params.prune.method as method, "
    "params.prune.schedule as schedule, params.source as source, "
    "100 * (1 - test_acc) as test_error, config"
)


def runs(
    repo: Any = None,
    prefix: str | None = None,
    kind: str | None = "prune",
    since: str | None = None,
    where: str | None = None,
) -> pd.DataFrame:
    """One row per run and step, step 0 being the starting model: ``run``, ``method``,
    ``schedule``, ``finetuning`` (fine-tuned / no fine-tuning), ``model`` (the initial
    model), ``step``, ``blocks_removed``, ``test_error`` (%), ``params_removed_pct``,
    ``cost`` (epoch-parameters so far) and ``config`` (blocks per group). Only finished runs
    count (a run still going, or killed, has fewer steps than it will have)."""
    from squeezr.dbx import query

    selection = {"prefix": prefix, "kind": kind, "since": since, "where": _finished(where)}
    try:
        with warnings.catch_warnings():  # an empty answer is reported below, in one line
            warnings.simplefilter("ignore", query.NoMatch)
            steps = query.run(STEP_QUERY, repo, **selection)
            initial = query.run(INITIAL_QUERY, repo, **selection)
    except UserError as exc:
        if "no column" in str(exc) or "available" in str(exc):
            raise UserError(f"the selection holds no finished pruning runs ({exc})") from exc
        raise
    if steps.empty or initial.empty:
        raise UserError(
            "the selection holds no pruning runs with logged steps; check it with dbx ls"
        )
    initial = initial.assign(step=0, blocks_removed=0, params_removed_pct=0.0, cost=0)
    initial["test_error_before_ft"] = initial["test_error"]
    table = pd.concat([initial, steps], ignore_index=True)
    table["model"] = table["source"].map(_model)
    table["finetuning"] = [NO_FT if s == "none" else FT for s in table["schedule"]]
    table = table[table["run"].isin(set(steps["run"]))]  # only runs that took a step
    table = table.sort_values(["method", "run", "step"], kind="stable").reset_index(drop=True)
    table["config"] = table["config"].map(lambda c: "-".join(map(str, c)))
    columns = [
        "run",
        "method",
        "schedule",
        "finetuning",
        "model",
        "step",
        "blocks_removed",
        "test_error",
        "test_error_before_ft",
        "params_removed_pct",
        "cost",
        "config",
    ]
    return table[columns]


def _finished(where: str | None) -> str:
    """``where`` narrowed to finished pruning runs (they record their summary as results)."""
    return FINISHED if not where else f"({where}) and {FINISHED}"


def _model(source: Any) -> str:
    """The initial model a run started from: its experiment id (and checkpoint), or file."""
    if not isinstance(source, dict):
        return "?"
    if source.get("kind") == "experiment":
        checkpoint = source.get("checkpoint")
        return source["id"] + (f"@{checkpoint}" if checkpoint is not None else "")
    return str(source.get("path", source.get("kind", "?")))


def _label_series(table: pd.DataFrame) -> pd.DataFrame:
    """``series`` = the method, plus the schedule where one method ran several."""
    several = table.groupby("method")["schedule"].transform("nunique") > 1
    labels = [
        f"{m} ({s})" if many else m
        for m, s, many in zip(table["method"], table["schedule"], several, strict=True)
    ]
    return table.assign(series=labels)


def _part(table: pd.DataFrame, finetuning: str | None) -> pd.DataFrame:
    """The rows of fine-tuned runs (or of the others), or all when ``finetuning`` is None."""
    if finetuning is None:
        return table
    return table[table["finetuning"] == finetuning]


def error_by_step(finetuning: str | None = FT, **selection: Any) -> pd.DataFrame:
    """Per series and step: mean and s.e. over initial models of test error, blocks and
    parameters removed and cost (``cost`` in millions of epoch-parameters)."""
    from squeezr.dbx.report import aggregate

    table = _label_series(_part(runs(**selection), finetuning))
    if table.empty:
        return table
    table = table.assign(cost=table["cost"] / 1e6)
    values = ["blocks_removed", "params_removed_pct", "cost", "test_error"]
    return aggregate(table, ["series", "step"], values)


def saliency_map(method: str, finetuning: str | None = None, **selection: Any) -> pd.DataFrame:
    """Saliency of each block at each step in one run of ``method``: the run from the first
    initial model (by id), as averaging would mix different removal orders. Columns
    ``run``, ``model``, ``block``, ``step``, ``saliency``; removed blocks have no row."""
    from squeezr.dbx import query

    where = f"params.prune.method == {method!r}"
    if finetuning is not None:
        op = "==" if finetuning == NO_FT else "!="
        where += f" and params.prune.schedule {op} 'none'"
    where = _finished(f"({selection['where']}) and {where}" if selection.get("where") else where)
    rows = query.run(
        "prune/step/:k | select exp.id as run, params.source as source, k as step, saliency",
        selection.get("repo"),
        prefix=selection.get("prefix"),
        kind=selection.get("kind", "prune"),
        since=selection.get("since"),
        where=where,
    )
    if rows.empty:
        return pd.DataFrame(columns=["run", "model", "block", "step", "saliency"])
    rows["model"] = rows["source"].map(_model)
    first = rows.sort_values(["model", "run"], kind="stable").iloc[0]
    chosen = rows[rows["run"] == first["run"]]
    cells = [
        {
            "run": first["run"],
            "model": first["model"],
            "block": int(block),
            "step": step,
            "saliency": float(score),
        }
        for step, scores in zip(chosen["step"], chosen["saliency"], strict=True)
        for block, score in scores.items()
    ]
    return pd.DataFrame(cells).sort_values(["block", "step"], kind="stable", ignore_index=True)


def blocks_per_group(finetuning: str | None = FT, **selection: Any) -> pd.DataFrame:
    """Blocks removed from each group (stage) of the network by each series, mean and s.e.
    over initial models: ``series``, ``group``, ``removed``, ``removed_se``, ``count``."""
    from squeezr.dbx.report import aggregate

    table = _label_series(_part(runs(**selection), finetuning))
    rows = []
    for run, steps in table.groupby("run", sort=False):
        first = list(map(int, steps["config"].iloc[0].split("-")))
        last = list(map(int, steps["config"].iloc[-1].split("-")))
        for group, (a, b) in enumerate(zip(first, last, strict=True), 1):
            rows.append(
                {
                    "series": steps["series"].iloc[0],
                    "run": run,
                    "group": f"group {group}",
                    "removed": a - b,
                }
            )
    if not rows:
        return pd.DataFrame()
    return aggregate(pd.DataFrame(rows), ["series", "group"], ["removed"])


def tau_between_methods(finetuning: str | None = FT, **selection: Any) -> pd.DataFrame:
    """Kendall's tau between the final block rankings of every pair of methods, over runs
    from the same initial model (mean and s.e. over those models): ``a``, ``b``, ``tau``."""
    from squeezr import dbx
    from squeezr.analysis import kendall_tau, ranking, step_records
    from squeezr.dbx.report import aggregate

    table = _label_series(_part(runs(**selection), finetuning))
    rankings: dict[str, dict[str, Any]] = {}
    repo = dbx.Repository.find(selection.get("repo"))
    for (model, series), rows in table.groupby(["model", "series"], sort=True):
        exp = repo.get(rows["run"].iloc[0])  # one run per method and model
        rankings.setdefault(model, {})[series] = ranking(step_records(exp))
    pairs = []
    for model, by_series in rankings.items():
        names = sorted(by_series)
        for a in names:
            pairs.append({"model": model, "a": a, "b": a, "tau": 1.0})
        for a, b in combinations(names, 2):
            tau = kendall_tau(by_series[a], by_series[b])
            pairs += [
                {"model": model, "a": a, "b": b, "tau": tau},
                {"model": model, "a": b, "b": a, "tau": tau},
            ]
    if len({p["a"] for p in pairs}) < 2:
        return pd.DataFrame()
    return aggregate(pd.DataFrame(pairs), ["a", "b"], ["tau"])


def results(**selection: Any) -> pd.DataFrame:
    """The results table: per method and fine-tuning, at the last step, mean and s.e. over
    initial models of blocks and parameters removed, test error and cost."""
    from squeezr.dbx.report import aggregate

    table = runs(**selection)
    last = table.groupby("run", sort=False).tail(1)
    start = table[table["step"] == 0].set_index("run")["test_error"]
    last = last.assign(
        initial_error=last["run"].map(start),
        cost=last["cost"] / 1e6,
    )
    values = ["blocks_removed", "params_removed_pct", "initial_error", "test_error", "cost"]
    return aggregate(last, ["method", "finetuning"], values)


# -- the report --------------------------------------------------------------------------

LABELS = {
    "blocks_removed": "blocks removed",
    "params_removed_pct": "parameters removed (%)",
    "cost": "fine-tuning cost (million epoch-parameters)",
    "test_error": "test error (%)",
    "initial_error": "initial test error (%)",
    "method": "method",
    "finetuning": "fine-tuning",
}


def _figures(methods: list[str], finetuning: str) -> list[tuple[str, str, str, dict, dict]]:
    """(file name, title, caption, data function kwargs, FigureSpec kwargs) of each figure."""

    def error(x: str) -> dict[str, Any]:
        return {
            "chart": "line",
            "x": x,
            "y": "test_error",
            "err": "test_error_se",
            "group": "series",
            "xlabel": LABELS[x],
            "ylabel": LABELS["test_error"],
            "legend_title": "method",
        }

    tail = "mean ± s.e. over initial models"
    figures = [
        (
            "error-vs-blocks",
            "Test error vs blocks removed, fine-tuned",
            f"Test error after each step's fine-tuning, per saliency method ({tail}).",
            {"function": "error_by_step", "finetuning": FT},
            error("blocks_removed"),
        ),
        (
            "error-vs-blocks-no-finetuning",
            "Test error vs blocks removed, no fine-tuning",
            f"Runs that never fine-tune (schedule none) ({tail}).",
            {"function": "error_by_step", "finetuning": NO_FT},
            error("blocks_removed"),
        ),
        (
            "error-vs-params",
            "Test error vs parameters removed",
            f"The same steps against the share of parameters removed ({finetuning}; {tail}).",
            {"function": "error_by_step", "finetuning": finetuning},
            error("params_removed_pct"),
        ),
        (
            "error-vs-cost",
            "Test error vs fine-tuning cost",
            f"Against the cumulative fine-tuning cost: epochs × parameters trained ({tail}).",
            {"function": "error_by_step", "finetuning": FT},
            error("cost"),
        ),
        (
            "blocks-per-group",
            "Blocks removed per group",
            f"Blocks removed from each group (stage) of the network ({finetuning}; {tail}).",
            {"function": "blocks_per_group", "finetuning": finetuning},
            {
                "chart": "bar",
                "x": "group",
                "y": "removed",
                "err": "removed_se",
                "group": "series",
                "xlabel": "group (stage) of the network",
                "ylabel": "blocks removed",
                "legend_title": "method",
            },
        ),
        (
            "kendall-tau",
            "Kendall's tau between methods",
            "Kendall's τ between the block rankings of each pair of methods (removed blocks in "
            f"removal order, then the rest by final saliency), runs from the same initial model "
            f"({finetuning}; mean over initial models).",
            {"function": "tau_between_methods", "finetuning": finetuning},
            {
                "chart": "heatmap",
                "x": "b",
                "y": "a",
                "value": "tau",
                "xlabel": "method",
                "ylabel": "method",
                "value_label": "Kendall's τ",
                "value_range": (-1.0, 1.0),
                "colormap": "RdBu_r",
            },
        ),
    ]
    for method in methods:
        figures.append(
            (
                f"saliency-{method}",
                f"Saliency per block and step: {method}",
                f"Block saliency computed by {method} at each step, in its run from the first "
                "initial model (removed blocks are blank).",
                {"function": "saliency_map", "method": method, "finetuning": finetuning},
                {
                    "chart": "heatmap",
                    "x": "step",
                    "y": "block",
                    "value": "saliency",
                    "xlabel": "pruning step",
                    "ylabel": "block index",
                    "value_label": "saliency (lowest is removed)",
                },
            )
        )
    return figures


def write_report(
    out: str | Path,
    *,
    repo: Any = None,
    prefix: str | None = None,
    kind: str | None = "prune",
    since: str | None = None,
    where: str | None = None,
    formats: tuple[str, ...] = ("png", "pdf"),
    command: str = "squeezr report",
) -> Path:
    """Write every figure (with its CSV and script), the results table (LaTeX, Markdown,
    CSV) and an index page (``index.md``, ``index.html``) into ``out``; returns the Markdown
    index. A figure the runs cannot fill (no runs without fine-tuning, one method only for
    Kendall's tau) is listed in the index as left out, with the reason."""
    from squeezr import dbx
    from squeezr.dbx.report import FigureSpec, TableSpec, make_figure, make_table
    from squeezr.dbx.report.index import Section, write_index
    from squeezr.dbx.report.tables import TABLE_FORMATS, layout

    folder = Path(out)
    root = str(Path(dbx.Repository.find(repo).path).resolve())
    selection = {
        k: v
        for k, v in {
            "repo": root,
            "prefix": prefix,
            "kind": kind,
            "since": since,
            "where": where,
        }.items()
        if v is not None
    }
    table = runs(**selection)
    finetuning = FT if (table["finetuning"] == FT).any() else NO_FT
    sections: list[Section] = []
    for name, title, caption, data_args, look in _figures(sorted(set(table["method"])), finetuning):
        function = data_args.pop("function")
        kwargs = {**selection, **data_args}
        data = globals()[function](**kwargs)
        if data.empty:
            sections.append(Section(title, _why_empty(function, data_args), missing=True))
            continue
        source = {"function": f"squeezr.report:{function}", "kwargs": kwargs}
        make_figure(source, FigureSpec(**look), folder / name, formats, command, table=data)
        labels = tuple(fmt.upper() for fmt in formats)
        links = _links(name, labels, tuple(f".{fmt}" for fmt in formats))
        sections.append(Section(title, caption, image=f"{name}.{formats[0]}", links=links))
    spec = TableSpec(
        rows=("method", "finetuning"),
        values=("blocks_removed", "params_removed_pct", "initial_error", "test_error", "cost"),
        precision=2,
        digits={"blocks_removed": 1, "params_removed_pct": 1, "cost": 3},
        best={"test_error": "min", "params_removed_pct": "max"},
        labels={**LABELS, "cost": "cost (M epoch-params)"},
        caption="Results at the last step: mean ± s.e. over initial models; best in bold.",
    )
    source = {"function": "squeezr.report:results", "kwargs": selection}
    data = results(**selection)
    make_table(source, spec, folder / "results", ("latex", "markdown", "csv"), command, table=data)
    grid = layout(data, spec)
    sections.append(
        Section(
            "Results",
            spec.caption or "",
            links=_links("results", ("LaTeX", "Markdown", "CSV"), (".tex", ".md", ".csv")),
            markdown=TABLE_FORMATS["markdown"][1](replace(grid, caption=None)),
            html=TABLE_FORMATS["html"][1](replace(grid, caption=None)),
        )
    )
    intro = (
        f"Made by {command}. Each figure has its data (.data.csv) and a script (.py) that "
        "redraws it; python NAME.py --refresh fetches the data again."
    )
    return write_index(folder, "Pruning report", intro, sections)


def _links(name: str, labels: tuple[str, ...], suffixes: tuple[str, ...]) -> tuple:
    """(label, file) of each format, then of the data and the script."""
    pairs = [(label, f"{name}{suffix}") for label, suffix in zip(labels, suffixes, strict=True)]
    return (*pairs, ("data", f"{name}.data.csv"), ("script", f"{name}.py"))


def _why_empty(function: str, args: dict[str, Any]) -> str:
    if function == "tau_between_methods":
        return "left out: it needs runs of two or more methods from the same initial model."
    return f"left out: the selection has no runs ({args.get('finetuning', 'any')})."
