"""Study files, their expansion, planning and re-planning, and adopting planned experiments."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx.cli import main
from squeezr.dbx.errors import UserError
from squeezr.dbx.runs import experiment_status
from squeezr.dbx.study.expand import expand
from squeezr.dbx.study.plan import plan
from squeezr.dbx.study.spec import load

from .conftest import write_study


def _study(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n' + text)
    return path


def test_grid_zip_and_cases_multiply(tmp_path: Path) -> None:
    path = _study(
        tmp_path,
        """
[[stage]]
name = "train"
command = "run {seed} {lr} {wd} {opt.momentum}"
experiment = "s/{seed}/{lr}/{opt.momentum}"
seeds = [0, 1]
zip = { lr = [0.1, 0.01], wd = [1e-4, 1e-5] }
cases = [{ "opt.momentum" = 0.9 }, { "opt.momentum" = 0.0 }]
""",
    )
    items = expand(load(path))
    assert len(items) == 2 * 2 * 2
    first = items[0]
    assert first.name == "s/0/0.1/0.9"
    assert first.params == {"seed": 0, "lr": 0.1, "wd": 1e-4, "opt": {"momentum": 0.9}}
    assert {(i.params["lr"], i.params["wd"]) for i in items} == {(0.1, 1e-4), (0.01, 1e-5)}


def test_dependency_picks_the_matching_experiment(tmp_path: Path) -> None:
    path = _study(
        tmp_path,
        """
[[stage]]
name = "base"
command = "train {seed}"
experiment = "s/base/{seed}"
seeds = [0, 1]

[[stage]]
name = "prune"
after = "base"
command = "prune --from {base.id} --method {method}"
experiment = "s/prune/{method}/{seed}"
grid = { method = ["oracle", "random"], seed = [0, 1] }
""",
    )
    items = expand(load(path))
    base = {i.params["seed"]: i.key for i in items if i.stage == "base"}
    for item in items:
        if item.stage == "prune":
            assert item.depends == base[item.params["seed"]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[stage]]\nname='a'\ncommand='x'\nexperiment='a'\ngrdi={x=[1]}", "unknown key 'grdi'"),
        ("[[stage]]\nname='a'\ncommand='x {nope}'\nexperiment='a'", "unknown field {nope}"),
        ("[[stage]]\nname='a'\ncommand='x'\nexperiment='a'\nseeds=[1,2]", "names two experiments"),
        (
            "[[stage]]\nname='a'\ncommand='x'\nexperiment='a/{x}'\nzip={x=[1,2],y=[1]}",
            "same length",
        ),
        ("[[stage]]\nname='a'\ncommand='x'\nexperiment='a'\nafter='b'", "earlier stage"),
        ("[[stage]]\nname='a'\ncommand='x'", 'needs experiment = "..."'),
        ("", "no [[stage]] tables"),
        ("[[stage]\n", "not valid TOML"),
    ],
)
def test_bad_study_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("{", r"\{")):
        load(_study(tmp_path, text))


def test_plan_records_planned_experiments_and_replans_by_difference(
    tmp_path: Path, study_repo: dbx.Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_study(tmp_path, seeds=3)
    changes = plan(study_repo, load(path))
    assert [c.change for c in changes] == ["new"] * 3
    assert [experiment_status(e) for e in study_repo.experiments()] == ["planned"] * 3
    ids = [c.item.id for c in changes]
    assert [c.change for c in plan(study_repo, load(path))] == ["same"] * 3
    assert [c.item.id for c in plan(study_repo, load(path))] == ids

    # seed 0 runs; then epochs change (2 -> 5) and seed 2 is dropped, seed 3 added
    with dbx.create("toy/s0", params={"seed": 0, "epochs": 2}, repo=study_repo) as exp:
        pass
    assert exp.id != ids[0]  # without $DBX_EXPERIMENT, create makes a new experiment
    _adopt(study_repo, ids[0], {"seed": 0, "epochs": 2}, monkeypatch)
    text = path.read_text().replace("epochs = 2", "epochs = 5").replace("[0, 1, 2]", "[0, 1, 3]")
    path.write_text(text)
    rows = {c.item.name: c for c in plan(study_repo, load(path))}
    assert rows["toy/s0"].change == "changed, ran"
    assert rows["toy/s0"].item.id == ids[0]
    assert "epochs 2 -> 5" in rows["toy/s0"].detail
    assert rows["toy/s1"].change == "changed"
    assert rows["toy/s2"].change == "removed"
    assert rows["toy/s3"].change == "new"
    names = sorted(e.name for e in study_repo.experiments() if experiment_status(e) == "planned")
    assert names == ["toy/s1", "toy/s3"]


def _adopt(
    repo: dbx.Repository, exp_id: str, params: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBX_EXPERIMENT", exp_id)
    with dbx.create("ignored", params=params, repo=repo) as exp:
        assert exp.id == exp_id
    assert "DBX_EXPERIMENT" not in os.environ  # used once: later creates make their own


def test_create_adopts_the_planned_experiment(
    tmp_path: Path, study_repo: dbx.Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    (item,) = [c.item for c in plan(study_repo, load(write_study(tmp_path, seeds=1)))]
    monkeypatch.setenv("DBX_EXPERIMENT", item.id)
    with dbx.create("other/name", kind="fit", params={"seed": 0, "epochs": 3}) as exp:
        exp.log("step/0", loss=1.0)
    again = dbx.open(item.id)
    assert again.name == "toy/s0" and again.kind == "fit"
    assert again.value("params") == {"seed": 0, "epochs": 3}  # what really ran
    assert again.meta["study"]["params"] == {"seed": 0, "epochs": 2}  # what was planned
    assert experiment_status(again) == "done"
    assert len(list(study_repo.experiments())) == 1

    monkeypatch.setenv("DBX_EXPERIMENT", "0123456789ab")
    with pytest.raises(UserError, match="names no experiment"):
        dbx.create("x", params={})


STUDIES = Path(__file__).resolve().parents[3] / "studies"


def test_shipped_study_files(
    study_repo: dbx.Repository, capsys: pytest.CaptureFixture[str]
) -> None:
    """squeezr's own grids load, expand as documented and generate SLURM arrays."""
    digits = expand(load(STUDIES / "digits.toml"))
    assert len(digits) == 2 + 2 * 2 * 2
    cifar = expand(load(STUDIES / "cifar10.toml"))
    assert len(cifar) == 6 + 6 * 8 * 4
    assert main(["study", "generate", str(STUDIES / "cifar10.toml"), "--slurm"]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --array=0-191%8" in script and "#SBATCH --gres=gpu:1" in script
    assert "--from " + dbx.open("cifar10/resnet110/s3").id in script
