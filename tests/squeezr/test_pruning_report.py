"""``squeezr report``: the thesis's figures from pruning runs, checked against the runs' logs.

The runs are written with dbx's logging API in the shape ``squeezr prune`` logs them, so the
numbers are known; the last test checks the report of a real (tiny) demo run."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import pandas as pd
import pytest

from squeezr import dbx
from squeezr.analysis import kendall_tau, ranking, step_records
from squeezr.cli import main

BLOCKS = 6
# (method, schedule, model) -> removal order; test error grows with each block removed
RUNS = {
    ("oracle", "every:1", "m0"): [5, 2, 0],
    ("oracle", "every:1", "m1"): [5, 1, 0],
    ("random", "every:1", "m0"): [0, 3, 4],
    ("random", "every:1", "m1"): [2, 4, 1],
    ("oracle", "none", "m0"): [5, 2, 3],
}


def _error(method: str, schedule: str, model: str, k: int) -> float:
    """Test error (fraction) after k blocks."""
    return (
        0.05
        + k * (0.01 if method == "oracle" else 0.03)
        + (0.02 if schedule == "none" else 0)
        + (0.005 * k if model == "m1" else 0)
    )


def _config(removed: list[int]) -> list[int]:
    return [sum(1 for b in range(g * 2, g * 2 + 2) if b not in removed) for g in range(3)]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("squeezr-report") / "experiments"
    for (method, schedule, model), order in RUNS.items():
        params = {
            "prune": {"method": method, "schedule": schedule},
            "source": {"kind": "experiment", "id": model, "name": f"train/{model}"},
        }
        name = f"prune/{method}/{schedule.replace(':', '')}/{model}"
        with dbx.create(name, kind="prune", params=params, repo=root) as exp:
            exp.log(
                "prune/initial", test_acc=1 - _error(method, schedule, model, 0), config=[2, 2, 2]
            )
            for k, block in enumerate(order, 1):
                removed = order[:k]
                left = [b for b in range(BLOCKS) if b not in order[: k - 1]]
                exp.log(
                    f"prune/step/{k}",
                    step=k,
                    chosen=[block],
                    blocks_removed=k,
                    saliency={str(b): (0.0 if b == block else 1.0 + b / 10) for b in left},
                    config=_config(removed),
                    test_acc_before=1 - _error(method, schedule, model, k) - 0.01,
                    test_acc_after=1 - _error(method, schedule, model, k),
                    params_removed_pct=10.0 * k,
                    cost=0 if schedule == "none" else 1_000_000 * k,
                )
            exp.results["blocks_removed"] = len(order)
    with dbx.create("prune/oracle/every1/m2", kind="prune", params=params, repo=root) as exp:
        exp.log("prune/initial", test_acc=0.5, config=[2, 2, 2])  # unfinished: left out
        exp.log("prune/step/1", step=1, chosen=[0], blocks_removed=1, saliency={"0": 0.0})
    with dbx.create("train/m0", kind="train", repo=root):
        pass  # not a pruning run: left out by the default --kind prune
    return root


def test_report_figures_hold_the_runs_numbers(repo, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", "--repo", str(repo), "--out", str(out), "--format", "png,svg"]) == 0
    assert "index.md" in capsys.readouterr().out
    names = [
        "error-vs-blocks",
        "error-vs-blocks-no-finetuning",
        "error-vs-params",
        "error-vs-cost",
        "blocks-per-group",
        "kendall-tau",
        "saliency-oracle",
        "saliency-random",
    ]
    for name in names:
        for suffix in (".png", ".svg", ".data.csv", ".py"):
            assert (out / f"{name}{suffix}").is_file(), name + suffix
    # error vs blocks removed: mean ± s.e. over the two initial models, in percent
    data = pd.read_csv(out / "error-vs-blocks.data.csv")
    for row in data.itertuples():
        errors = [100 * _error(row.series, "every:1", m, row.step) for m in ("m0", "m1")]
        assert row.test_error == pytest.approx(statistics.mean(errors))
        assert row.test_error_se == pytest.approx(statistics.stdev(errors) / math.sqrt(2))
        assert row.blocks_removed == row.step
    assert sorted(set(data["series"])) == ["oracle", "random"]
    alone = pd.read_csv(out / "error-vs-blocks-no-finetuning.data.csv")
    assert set(alone["series"]) == {"oracle"} and alone["test_error_se"].isna().all()
    assert alone["test_error"].tolist() == pytest.approx(
        [100 * _error("oracle", "none", "m0", k) for k in range(4)]
    )
    # blocks removed per group (blocks 0-1, 2-3, 4-5): oracle removed 5, 2, 0 from m0 and
    # 5, 1, 0 from m1; random 0, 3, 4 and 2, 4, 1
    groups = pd.read_csv(out / "blocks-per-group.data.csv").set_index(["series", "group"])
    assert groups.loc[("oracle", "group 1"), "removed"] == 1.5
    assert groups.loc[("oracle", "group 2"), "removed"] == 0.5
    assert groups.loc[("random", "group 1"), "removed"] == 1.0
    assert groups.loc[("random", "group 3"), "removed"] == 1.0
    # Kendall's tau: the mean over models of analysis.kendall_tau between the two methods
    tau = pd.read_csv(out / "kendall-tau.data.csv").set_index(["a", "b"])
    runs = {e.name: e for e in dbx.Repository.find(repo).experiments(kind="prune")}
    per_model = [
        kendall_tau(
            ranking(step_records(runs[f"prune/oracle/every1/{m}"])),
            ranking(step_records(runs[f"prune/random/every1/{m}"])),
        )
        for m in ("m0", "m1")
    ]
    assert tau.loc[("oracle", "random"), "tau"] == pytest.approx(statistics.mean(per_model))
    assert tau.loc[("oracle", "oracle"), "tau"] == 1
    # saliency heat map: the run from the first model, as logged; removed blocks have no cell
    saliency = pd.read_csv(out / "saliency-oracle.data.csv")
    assert set(saliency["run"]) == {runs["prune/oracle/every1/m0"].id}
    assert len(saliency) == 6 + 5 + 4
    logged = step_records(runs["prune/oracle/every1/m0"])
    for row in saliency.itertuples():
        assert row.saliency == logged[row.step - 1]["saliency"][str(row.block)]
    # results table and index pages
    tex = (out / "results.tex").read_text()
    assert "\\toprule" in tex and "oracle & fine-tuned" in tex and "random & fine-tuned" in tex
    index = (out / "index.md").read_text()
    for name in names:
        assert f"]({name}.png)" in index
    assert "| oracle | no fine-tuning |" in index
    html = (out / "index.html").read_text()
    assert set(re.findall(r'<img src="([^"]+)"', html)) == {f"{n}.png" for n in names}


def test_report_leaves_out_what_the_runs_cannot_show(repo, tmp_path):
    out = tmp_path / "r"
    assert main(["report", "prune/oracle/every1", "--repo", str(repo), "--out", str(out)]) == 0
    index = (out / "index.md").read_text()
    assert "left out: it needs runs of two or more methods" in index
    assert "left out: the selection has no runs (no fine-tuning)" in index
    assert not (out / "kendall-tau.png").exists()


def test_report_of_nothing_is_one_line(repo, tmp_path, capsys):
    assert main(["report", "nothing/", "--repo", str(repo), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "no experiments" in err or "no pruning runs" in err
    assert len(err.strip().splitlines()) == 1


def test_demo_ends_with_its_report(tmp_path, capsys):
    """A real (tiny) demo: its report shows the pruning run it just made."""
    repo, folder = tmp_path / "experiments", tmp_path / "figs"
    args = ["demo", "--repo", str(repo), "--train-epochs", "1", "--train-images", "64"]
    args += ["--blocks", "2", "--finetune-epochs", "1", "--device", "cpu", "--no-progress"]
    assert main([*args, "--report", str(folder)]) == 0
    assert f"Figures and tables: {folder / 'index.md'}" in capsys.readouterr().out
    run = next(dbx.Repository.find(repo).experiments(kind="prune"))
    data = pd.read_csv(folder / "error-vs-blocks.data.csv")
    steps = step_records(run)
    assert data["step"].tolist() == [0, 1, 2]
    assert data["test_error"].tolist()[1:] == pytest.approx(
        [100 * (1 - s["test_acc_after"]) for s in steps]
    )
    assert (folder / "error-vs-blocks.png").stat().st_size > 10_000
    assert (
        "squeezr report demo/prune/resnet20/oracle" in (folder / "error-vs-blocks.py").read_text()
    )
