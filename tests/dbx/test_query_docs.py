"""Every example in docs/dbx-query.md, docs/dbx-expressions.md and ``dbx query --help`` runs
as written against the repository ``squeezr demo`` records, and finds what it asks for:
the examples name events and fields squeezr really logs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx import expr
from squeezr.dbx.cli import main
from squeezr.dbx.cli.query import EPILOG
from squeezr.dbx.query import live

DOCS = Path(__file__).resolve().parents[2] / "docs"
# Running the demo, even tiny, costs tens of CPU seconds (torch, training, the oracle).
pytestmark = pytest.mark.slow


def blocks(document: str, language: str) -> list[str]:
    """The fenced code blocks of ``language`` in a docs file."""
    text = (DOCS / document).read_text()
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def commands(document: str) -> list[str]:
    return [
        line
        for block in blocks(document, "sh")
        for line in block.splitlines()
        if line.startswith("dbx query ")
    ]


def help_commands() -> list[str]:
    return [line.strip() for line in EPILOG.splitlines() if line.strip().startswith("dbx query ")]


def conditions() -> list[str]:
    return [line for line in blocks("dbx-expressions.md", "")[0].splitlines() if line.strip()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<folder>/experiments``: what ``squeezr demo`` records (a training run and a pruning
    run), with tiny sizes so that it takes seconds."""
    from squeezr.cli import main as squeezr_main

    folder = tmp_path_factory.mktemp("docs")
    args = ["demo", "--repo", str(folder / "experiments"), "--train-epochs", "2"]
    args += ["--train-images", "32", "--blocks", "2", "--finetune-epochs", "1"]
    assert squeezr_main([*args, "--device", "cpu", "--no-progress", "--json"]) == 0
    return folder


def test_the_documents_have_examples() -> None:
    assert len(commands("dbx-query.md")) >= 10
    assert len(blocks("dbx-query.md", "python")) == 1
    assert len(conditions()) >= 5 and len(help_commands()) >= 3


def _run_as_written(
    line: str, folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> str:
    args = [*shlex.split(line)[1:], "--repo", str(folder / "experiments")]
    if "--follow" in args:  # the first poll, then Ctrl-C instead of the next sleep
        monkeypatch.setattr(live.time, "sleep", _interrupt)
    status = main(args)
    out, err = capsys.readouterr()
    assert status == (130 if "--follow" in args else 0), err
    assert "error" not in err and "warning" not in err, err  # no typo, no pattern matching nothing
    return out


@pytest.mark.parametrize("line", commands("dbx-query.md") + help_commands())
def test_shell_examples_run_on_the_demo_repository(
    line: str,
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = _run_as_written(line, folder, capsys, monkeypatch)
    data_lines = [row for row in out.strip().splitlines() if row.strip("-[] ")]
    assert len(data_lines) >= 2, out  # a header (or a JSON object) and at least one row


def _interrupt(seconds: float) -> None:
    raise KeyboardInterrupt


def test_python_example_runs(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder)
    namespace: dict[str, object] = {}
    exec(blocks("dbx-query.md", "python")[0], namespace)
    table, again = namespace["table"], namespace["again"]
    assert table["k"].tolist() == [1, 2]  # type: ignore[index]
    assert again.to_dict("records")[0]["k"] == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("condition", conditions())
def test_expression_examples_filter_the_demo_experiments(
    condition: str, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each example keeps at least one of the demo's experiments, and every field it names
    is one the demo records."""
    repo = folder / "experiments"
    assert main(["ls", "--where", condition, "--repo", str(repo), "--json"]) == 0
    assert capsys.readouterr().out.strip() not in ("", "[]")
    recorded = list(dbx.Repository.find(repo).experiments())
    for path in expr.parse(condition).paths():
        assert any(exp.value(path) is not expr.MISSING for exp in recorded), path


def test_the_python_expression_example_runs() -> None:
    exec(blocks("dbx-expressions.md", "python")[0], {})
