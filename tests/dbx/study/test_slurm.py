"""Studies on a real single-node SLURM (started by the fixture; needs root, slurm-wlm, munge)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx.cli import main

from . import slurm_cluster
from .conftest import write_study

pytestmark = pytest.mark.slow

EVAL_STAGE = """
[[stage]]
name = "evaluate"
after = "train"
command = "{python} -c 'from squeezr import dbx; e = dbx.create(\\"ev\\", kind=\\"evaluate\\", params=dict(seed={{seed}}, source=\\"{{train.id}}\\")); e.close()'"
experiment = "toy/eval/s{{seed}}"
seeds = [0, 1]
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    reason = slurm_cluster.missing()
    if reason is not None:
        pytest.skip(reason)
    with slurm_cluster.cluster(tmp_path_factory.mktemp("slurm")) as env:
        yield env


def test_job_array_study_runs_on_slurm_and_passes_study_test(
    slurm: dict[str, str],
    tmp_path: Path,
    study_repo: dbx.Repository,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import sys

    monkeypatch.setenv("SLURM_CONF", slurm["SLURM_CONF"])
    path = write_study(tmp_path, seeds=4, extra=EVAL_STAGE.format(python=sys.executable))
    assert main(["study", "run", str(path), "--slurm", "--limit", "2", "--poll", "0.5"]) == 0
    err = capsys.readouterr().err
    assert "submitted train as job" in err and "evaluate as job" in err
    assert "all 6 experiments done as planned" in err
    script = (study_repo.path / ".dbx/studies/toy/submit.sh").read_text()
    assert "#SBATCH --array=0-3%2" in script and "afterany:" in script
    evaluated = {
        e.value("params.seed"): e.value("params.source")
        for e in study_repo.experiments("toy/eval/")
    }
    trained = {e.value("params.seed"): e.id for e in study_repo.experiments("toy/s")}
    assert evaluated == {0: trained[0], 1: trained[1]}  # each started from its own baseline
    assert main(["study", "test", str(path)]) == 0
    # everything done: nothing is submitted again
    assert main(["study", "run", str(path), "--slurm"]) == 0
    assert "every experiment is done" in capsys.readouterr().err
