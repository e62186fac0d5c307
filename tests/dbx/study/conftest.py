"""Tiny studies for the study tests: each experiment is a Python one-liner logging to dbx."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from squeezr import dbx

PYTHON = sys.executable

# A program that records its params (seed, epochs) and logs `steps` step events, then a result.
TOY = (
    f"{PYTHON} -c 'import sys; from squeezr import dbx; "
    'e = dbx.create("toy", kind="train", params=dict(seed=int(sys.argv[1]), epochs=int(sys.argv[2]))); '
    '[e.log(f"step/{{i}}", loss=1.0 / (i + 1)) for i in range(3)]; '
    'e.results["acc"] = 0.5; e.close()\' {seed} {epochs}'
)


def write_study(folder: Path, seeds: int = 3, extra: str = "", command: str = TOY) -> Path:
    """A one-stage study of ``seeds`` experiments (params seed, epochs = 2)."""
    path = folder / "toy.toml"
    seed_list = ", ".join(str(s) for s in range(seeds))
    quoted = command.replace('"', '\\"')
    path.write_text(
        f"""name = "toy"

[[stage]]
name = "train"
command = "{quoted}"
experiment = "toy/s{{seed}}"
params = {{ epochs = 2 }}
seeds = [{seed_list}]
expect.results = ["acc"]
expect.events = {{ "step/*" = 3 }}
{extra}"""
    )
    return path


@pytest.fixture
def study_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dbx.Repository:
    """A repository at tmp_path/experiments, also $DBX_REPO, with tmp_path the current folder."""
    repo = dbx.Repository.init(tmp_path / "experiments")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DBX_REPO", str(repo.path))
    monkeypatch.delenv("DBX_EXPERIMENT", raising=False)
    # the experiments' processes import this squeezr, not another installed one
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path for path in sys.path if path))
    return repo
