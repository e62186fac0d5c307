"""``dbx plot``, ``dbx table`` and ``squeezr.dbx.report``: the data behind every drawn series is
the query's answer, scripts redraw byte-identical files, LaTeX is valid booktabs, bad input is
one line."""

from __future__ import annotations

import math
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from squeezr import dbx
from squeezr.dbx import query, report
from squeezr.dbx.cli import main
from squeezr.dbx.report.tables import layout

SRC = Path(__file__).resolve().parents[2] / "src"
METHODS = {"oracle": 0.010, "random": 0.025}  # error added per pruning step
ERROR = {
    (method, seed): [0.05 + slope * k + 0.004 * seed * k for k in range(5)]
    for method, slope in METHODS.items()
    for seed in range(3)
}
QUERY = (
    "prune/step/:k | select params.method as method, k, 100 * test_err as err, "
    "params.lr as lr, exp.name"
)


def _write(root: Path, method: str, seed: int) -> None:
    params = {"method": method, "seed": seed, "lr": 0.1 * (seed + 1)}
    with dbx.create(f"prune/{method}/s{seed}", kind="prune", params=params, repo=root) as exp:
        for k, err in enumerate(ERROR[(method, seed)]):
            exp.log(f"prune/step/{k}", test_err=err, note="text")
        exp.results["final_err"] = ERROR[(method, seed)][-1]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Written once (creating experiments captures git state, which is slow); tests only read."""
    root = tmp_path_factory.mktemp("report") / "experiments"
    for method, seed in ERROR:
        _write(root, method, seed)
    return root


def _plot(repo: Path, out: Path, *extra: str) -> list[str]:
    args = ["plot", QUERY, "prune/", "--repo", str(repo), "--x", "k", "--y", "err"]
    return [*args, "--group", "method", "--out", str(out), *extra]


# -- the figure kinds, over the registry ------------------------------------------------


SAMPLE = pd.DataFrame(
    {
        "x": [1, 2, 3, 1, 2, 3],
        "y": [1.0, 4.0, 9.0, 2.0, 3.0, 5.0],
        "s": [0.1, 0.2, 0.3, 0.1, 0.1, 0.1],
        "g": ["a", "a", "a", "b", "b", "b"],
    }
)


def _line_data(fig, data):
    ax = fig.axes[0]
    drawn = {line.get_label(): line.get_xydata().tolist() for line in ax.lines}
    for name, rows in data.groupby("g"):
        assert drawn[name] == rows[["x", "y"]].astype(float).values.tolist()
    # the s.e. band spans y ± s
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].max() == pytest.approx(9.3) and band[:, 1].min() == pytest.approx(0.9)


def _scatter_data(fig, data):
    ax = fig.axes[0]
    points = {c.get_label(): c.lines[0].get_xydata().tolist() for c in ax.containers}
    for name, rows in data.groupby("g"):
        assert points[name] == rows[["x", "y"]].astype(float).values.tolist()


def _bar_data(fig, data):
    ax = fig.axes[0]
    bars = [c for c in ax.containers if type(c).__name__ == "BarContainer"]
    heights = {c.get_label(): [p.get_height() for p in c.patches] for c in bars}
    for name, rows in data.groupby("g"):
        assert heights[name] == rows["y"].tolist()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]


def _heatmap_data(fig, data):
    image = fig.axes[0].images[0].get_array()
    expected = data.pivot(index="g", columns="x", values="y").values
    assert np.array_equal(image.filled(np.nan), expected, equal_nan=True)
    assert fig.axes[1].get_ylabel() == "y"  # the colour bar is labelled


CHECKS = {
    "line": ({"group": "g", "err": "s"}, _line_data),
    "scatter": ({"group": "g", "err": "s"}, _scatter_data),
    "bar": ({"group": "g", "err": "s"}, _bar_data),
    "heatmap": ({"value": "y", "y": "g"}, _heatmap_data),
}


def test_every_registered_chart_is_tested():
    assert set(report.FIGURES) == set(CHECKS)


@pytest.mark.parametrize("chart", sorted(report.FIGURES))
def test_each_chart_draws_exactly_its_data(chart, tmp_path):
    extra, check = CHECKS[chart]
    spec = report.FigureSpec(chart, **{"x": "x", "y": "y", "xlabel": "x (s)", **extra})
    fig = report.draw(SAMPLE, spec)
    check(fig, SAMPLE)
    assert fig.axes[0].get_xlabel() == "x (s)"
    first = report.save(fig, [tmp_path / "a.png", tmp_path / "a.svg"])
    again = report.save(report.draw(SAMPLE, spec), [tmp_path / "b.png", tmp_path / "b.svg"])
    for a, b in zip(first, again, strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_style_is_applied_only_inside_drawing():
    import matplotlib as mpl

    before = dict(mpl.rcParams)
    report.draw(SAMPLE, report.FigureSpec("line", x="x", y="y"))
    assert dict(mpl.rcParams) == before


# -- dbx plot end to end -----------------------------------------------------------------


def test_plot_draws_the_querys_mean_and_standard_error(repo, tmp_path, capsys):
    out = tmp_path / "figs" / "err"
    assert main(_plot(repo, out, "--mean-se", "--format", "png,svg,pdf")) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out) + s for s in (".png", ".svg", ".pdf", ".data.csv", ".py")]
    # The CSV is exactly the query language's own aggregate over the same experiments.
    expected = query.run(
        "prune/step/:k | select params.method as method, k, 100 * test_err as err "
        "| group method, k: mean(err) as err, se(err) as err_se, count()",
        repo,
        prefix="prune/",
    )
    data = pd.read_csv(f"{out}.data.csv")
    assert list(data.columns) == ["method", "k", "err", "err_se", "count"]
    pd.testing.assert_frame_equal(data, expected, check_dtype=False, rtol=1e-12)
    for (method, k), row in data.set_index(["method", "k"]).iterrows():
        errors = [100 * ERROR[(method, seed)][k] for seed in range(3)]
        assert row["err"] == pytest.approx(statistics.mean(errors))
        assert row["err_se"] == pytest.approx(statistics.stdev(errors) / math.sqrt(3))
    # ... and what is drawn is that CSV (the script's own drawing, run in-process).
    fig = report.draw(report.read_csv(f"{out}.data.csv"), _script_spec(out))
    lines = {line.get_label(): line.get_xydata() for line in fig.axes[0].lines}
    assert sorted(lines) == sorted(METHODS)
    for method, xy in lines.items():
        rows = data[data["method"] == method]
        assert xy[:, 0].tolist() == rows["k"].tolist()
        assert xy[:, 1].tolist() == rows["err"].tolist()


def _script_spec(out: Path) -> report.FigureSpec:
    namespace: dict = {"__file__": f"{out}.py"}
    exec(Path(f"{out}.py").read_text(), namespace)  # runs only the definitions (not __main__)
    return namespace["FIGURE"]


def test_script_redraws_byte_identical_files_without_the_repository(repo, tmp_path):
    out = tmp_path / "a" / "err"
    assert main(_plot(repo, out, "--format", "png,svg,pdf", "--title", "Error")) == 0
    script = Path(f"{out}.py").read_text()
    assert script.startswith("#!/usr/bin/env python3\n")
    assert "dbx plot 'prune/step/:k | select" in script and "--title Error" in script
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    for suffix in (".data.csv", ".py"):
        shutil.copy(f"{out}{suffix}", copy / f"err{suffix}")
    shutil.move(str(repo), str(repo) + ".away")  # the repository is not needed to redraw
    try:
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        proc = subprocess.run(
            [sys.executable, "err.py"], cwd=copy, env=env, capture_output=True, text=True
        )
    finally:
        shutil.move(str(repo) + ".away", str(repo))
    assert proc.returncode == 0, proc.stderr
    for suffix in (".png", ".svg", ".pdf"):
        assert (copy / f"err{suffix}").read_bytes() == Path(f"{out}{suffix}").read_bytes()
    # Re-running the command (options in another order) rewrites every file identically.
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    args = _plot(repo, out, "--title", "Error", "--format", "png,svg,pdf")
    assert main([args[0], *args[3:], args[1], args[2]]) == 0
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before


def test_refresh_fetches_the_data_again(tmp_path):
    root = tmp_path / "experiments"
    _write(root, "oracle", 0)
    out = tmp_path / "f" / "err"
    assert main(_plot(root, out, "--mean-se")) == 0
    assert set(pd.read_csv(f"{out}.data.csv")["count"]) == {1}
    _write(root, "oracle", 1)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run(
        [sys.executable, f"{out}.py", "--refresh"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert set(pd.read_csv(f"{out}.data.csv")["count"]) == {2}


def test_plot_of_experiment_params_and_results(repo, tmp_path):
    out = tmp_path / "lr.png"
    args = ["plot", "--experiments", "prune/", "--repo", str(repo), "--chart", "scatter"]
    args += ["--x", "params.lr", "--y", "results.final_err", "--group", "params.method"]
    assert main([*args, "--logx", "--out", str(out)]) == 0
    data = pd.read_csv(tmp_path / "lr.data.csv")
    assert len(data) == len(ERROR)
    expected = {(m, round(0.1 * (s + 1), 10)): e[-1] for (m, s), e in ERROR.items()}
    got = {
        (m, round(x, 10)): y
        for m, x, y in data[["params.method", "params.lr", "results.final_err"]].values
    }
    assert got == expected
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_python_api_returns_a_figure(repo):
    fig = dbx.plot(QUERY, "prune/", x="k", y="err", group="method", mean_se=True, repo=repo)
    assert type(fig).__name__ == "Figure"
    assert {line.get_label() for line in fig.axes[0].lines} == set(METHODS)
    frame = pd.DataFrame({"a": [1, 2], "b": [3.0, 4.0]})
    assert dbx.plot(x="a", y="b", data=frame).axes[0].lines[0].get_xydata().tolist() == [
        [1.0, 3.0],
        [2.0, 4.0],
    ]


# -- dbx table ---------------------------------------------------------------------------


def _booktabs(text: str) -> list[list[str]]:
    """Parse a booktabs tabular strictly; returns the rows' cells (header first)."""
    lines = [line for line in text.splitlines() if not line.startswith("%")]
    spec = re.fullmatch(r"\\begin\{tabular\}\{([lcr]+)\}", lines[0])
    assert spec, lines[0]
    assert lines[1] == "\\toprule" and lines[3] == "\\midrule"
    assert lines[-2:] == ["\\bottomrule", "\\end{tabular}"]
    rows = [lines[2], *lines[4:-2]]
    cells = []
    for row in rows:
        assert row.endswith(" \\\\")
        body = row[: -len(" \\\\")]
        parts = re.split(r"(?<!\\)&", body)
        assert len(parts) == len(spec.group(1)), row
        for part in parts:
            assert part.count("$") % 2 == 0 and part.count("{") == part.count("}")
            assert not re.search(r"(?<!\\)[%#_]", part.replace("\\_", "")), part
        cells.append([p.strip() for p in parts])
    return cells


def test_latex_table_is_valid_booktabs_with_mean_se_and_best_in_bold(repo, tmp_path, capsys):
    args = ["table", QUERY, "prune/", "--repo", str(repo), "--rows", "method", "--values", "err"]
    args += ["--columns", "k", "--mean-se", "--best", "min", "--precision", "2"]
    assert main(args) == 0
    cells = _booktabs(capsys.readouterr().out)
    assert cells[0] == ["method", "0", "1", "2", "3", "4"]
    oracle, random = cells[1], cells[2]
    assert oracle[0] == "oracle" and random[0] == "random"
    errors = [100 * ERROR[("oracle", seed)][4] for seed in range(3)]
    mean, se = statistics.mean(errors), statistics.stdev(errors) / math.sqrt(3)
    assert oracle[5] == f"$\\mathbf{{{mean:.2f} \\pm {se:.2f}}}$"  # oracle has less error
    assert random[5].startswith("$") and "mathbf" not in random[5]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX installation")
def test_latex_table_compiles(repo, tmp_path):
    out = tmp_path / "t"
    args = ["table", QUERY, "prune/", "--repo", str(repo), "--rows", "method,k"]
    assert main([*args, "--values", "err", "--mean-se", "--out", str(out)]) == 0
    doc = tmp_path / "doc.tex"
    doc.write_text(
        "\\documentclass{article}\\usepackage{booktabs}\\begin{document}"
        f"\\input{{{out}.tex}}\\end{{document}}\n"
    )
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_table_files_markdown_csv_and_script(repo, tmp_path):
    out = tmp_path / "tab" / "results"
    args = ["table", QUERY, "prune/", "--repo", str(repo), "--rows", "method", "--values", "err"]
    args += ["--columns", "k", "--mean-se", "--best", "err=min", "--precision", "1"]
    assert main([*args, "--format", "latex,markdown,csv", "--out", str(out)]) == 0
    md = Path(f"{out}.md").read_text().splitlines()
    assert md[0] == "| method | 0 | 1 | 2 | 3 | 4 |" and md[1].startswith("| :-- | --: |")
    assert md[2].startswith("| oracle | **5.") and " ± " in md[2]
    table_csv = pd.read_csv(f"{out}.csv")
    assert list(table_csv.columns[:3]) == ["method", "0", "0 s.e."]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    before = {s: Path(f"{out}{s}").read_bytes() for s in (".tex", ".md", ".csv")}
    for suffix in before:
        Path(f"{out}{suffix}").unlink()
    proc = subprocess.run([sys.executable, f"{out}.py"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert {s: Path(f"{out}{s}").read_bytes() for s in before} == before


def test_table_layout_pivots_and_marks_each_columns_best():
    data = pd.DataFrame(
        {"m": ["a", "a", "b", "b"], "c": ["x", "y", "x", "y"], "v": [1.0, 5.0, 2.0, 4.0]}
    )
    grid = layout(data, report.TableSpec(rows=("m",), values=("v",), columns="c", best_all="max"))
    assert grid.value_headers == ["x", "y"]
    assert [[c.best for c in cells] for _, cells in grid.rows] == [[False, True], [True, False]]
    assert (
        report.render_table(data, report.TableSpec(("m", "c"), ("v",)), "csv").splitlines()[1]
        == "a,x,1.000"
    )


# -- bad input: one line, exit 2 ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["plot", "nothing/:k", "--x", "k", "--y", "v"],
            "matches 'nothing/:k'; their events are named like",
        ),
        (["plot", "prune/step/:k", "nomatch/", "--x", "k", "--y", "v"], "no experiments match"),
        (["plot", "prune/step/:k | select k, note", "--x", "k", "--y", "note"], "not numeric"),
        (["plot", "prune/step/:k", "--x", "k", "--y", "nope"], "no column 'nope'"),
        (["plot", "prune/step/:k", "--x", "k", "--y", "test_err", "--size", "x"], "--size"),
        (["plot", "prune/step/:k", "--x", "k", "--y", "test_err", "--format", "gif"], "gif"),
        (
            [
                "plot",
                "prune/step/:k",
                "--x",
                "k",
                "--y",
                "k",
                "--value",
                "test_err",
                "--chart",
                "heatmap",
                "--colormap",
                "no",
            ],
            "unknown colormap",
        ),
        (["plot", "--x", "k", "--y", "v"], "give a log QUERY"),
        (["plot", "prune/step/:k", "--x", "k", "--y", "test_err", "--chart", "heatmap"], "--value"),
        (["table", "prune/step/:k", "--rows", "k", "--values", "note"], "not numeric"),
        (["table", "prune/step/:k", "--rows", "k", "--values", "test_err"], "several rows"),
        (
            ["table", "prune/step/:k", "--rows", "k", "--values", "test_err", "--best", "top"],
            "max or min",
        ),
    ],
)
def test_bad_input_is_one_line(repo, tmp_path, capsys, args, message):
    out = [] if args[0] == "table" else ["--out", str(tmp_path / "x")]
    assert main([*args, "--repo", str(repo), *out]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.iterdir())
