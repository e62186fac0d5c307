"""A repository squeezr cannot create (issue 11) is a one-line error from dbx's repository
creation, naming the path and the problem, through squeezr's command line too."""

from pathlib import Path

import pytest

from squeezr import data
from squeezr.cli import main
from squeezr.prune import records


@pytest.fixture
def tiny_data(monkeypatch):
    real = data.load_dataset

    def load(name, data_dir=None, download=True, **kw):
        return real("synthetic", synthetic_size=60, synthetic_classes=3, seed=0, **kw)

    monkeypatch.setattr(data, "load_dataset", load)
    monkeypatch.setattr(records, "load_dataset", load)


@pytest.mark.parametrize(
    ("repo", "problem"),
    [("/proc/x/repo", "/proc/x: No such file or directory"), ("file/repo", "it is a file")],
)
def test_train_under_an_impossible_repository_path(
    tmp_path: Path, capsys, tiny_data, repo: str, problem: str
) -> None:
    (tmp_path / "file").write_text("x")
    target = repo if repo.startswith("/") else str(tmp_path / repo)
    argv = ["train", "--config", "1,0,1", "--epochs", "1", "--device", "cpu"]
    rc = main([*argv, "--dataset", "synthetic", "--repo", target, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"squeezr: error: cannot create a repository at {target}: ")
    assert problem in err
