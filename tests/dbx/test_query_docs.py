"""Every example in docs/dbx-query.md and docs/dbx-expressions.md runs, against a repository
shaped like the experiments the examples talk about (pruning runs and training runs)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx import expr
from squeezr.dbx.cli import main
from squeezr.dbx.cli.query import EPILOG
from squeezr.dbx.query import live, parse

DOCS = Path(__file__).resolve().parents[2] / "docs"


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


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<folder>/experiments``: six pruned models and two training runs."""
    folder = tmp_path_factory.mktemp("docs")
    root = folder / "experiments"
    for seed in range(6):
        params = {"seed": seed, "saliency": "oracle"}
        with dbx.create(f"prune/oracle/m{seed}", kind="prune", params=params, repo=root) as exp:
            for k in range(4):
                for epoch in range(2):
                    exp.log(f"finetune/epoch/{epoch}/eval", val_acc=0.92 - k / 100 + epoch / 200)
                exp.log(f"prune/step/{k}", test_acc=0.93 - k / 100 - seed * k / 500)
    for run in range(2):
        with dbx.create(f"train/r{run}", kind="train", repo=root) as exp:
            for epoch in range(3):
                exp.log(f"train/epoch/{epoch}/eval", val_acc=0.5 + epoch / 10 + run / 100)
    return folder


def test_the_documents_have_examples() -> None:
    assert len(commands("dbx-query.md")) >= 7
    assert len(blocks("dbx-query.md", "python")) == 1


@pytest.mark.parametrize("line", commands("dbx-query.md"))
def test_shell_examples_run(
    line: str,
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = [*shlex.split(line)[1:], "--repo", str(folder / "experiments")]
    if "--follow" in args:  # the first poll, then Ctrl-C instead of the next sleep
        monkeypatch.setattr(live.time, "sleep", _interrupt)
    status = main(args)
    out, err = capsys.readouterr()
    assert status == (130 if "--follow" in args else 0), err
    assert out.strip() and "error" not in err


def _interrupt(seconds: float) -> None:
    raise KeyboardInterrupt


def test_python_example_runs(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder)
    namespace: dict[str, object] = {}
    exec(blocks("dbx-query.md", "python")[0], namespace)
    table, again = namespace["table"], namespace["again"]
    assert len(table) == 24  # type: ignore[arg-type]
    assert again.to_dict("records")[0]["k"] == 3  # type: ignore[attr-defined]


def test_help_examples_parse() -> None:
    for line in EPILOG.splitlines():
        if line.strip().startswith("dbx query "):
            parse(shlex.split(line)[2])


def test_expression_examples_parse_and_the_python_example_runs() -> None:
    for line in blocks("dbx-expressions.md", "")[0].splitlines():
        expr.parse(line)
    exec(blocks("dbx-expressions.md", "python")[0], {})
