"""Every shell example of the README and docs/ runs as written, after the demo ran twice.

The convention (docs/architecture.md, "Examples that run"): a fenced ```bash (or ```sh)
block is a shell example, run as one ``bash -e`` script in a folder where ``make demo`` ran
(``experiments/`` holds the demo's runs, ``.venv/bin`` has the commands) with
``DBX_REPO=experiments``; a block preceded by ``<!-- docs-test: skip REASON -->`` is not run
(a GPU, CIFAR-10, hours of training, a synopsis with placeholders). Blocks without a
language show output or layouts and are never run. docs/dbx-query.md and
docs/dbx-expressions.md are run by tests/dbx/test_query_docs.py instead.

The demo runs twice, as a user re-running ``make demo`` would, so every follow-up command
must cope with two experiments of each demo name. The demo runs with small sizes (the
commands read names and events, which do not depend on the sizes); the README's own commands
run at their documented sizes (a few CPU minutes, so the test is marked slow).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = re.compile(r"^<!-- docs-test: skip (?P<reason>.+?) -->$")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")
QUERY_DOCS = {"dbx-query.md", "dbx-expressions.md"}  # tests/dbx/test_query_docs.py
DOCS = sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md") if p.name not in QUERY_DOCS)
DOCUMENTS = ["README.md", *DOCS]
SMALL_DEMO = ["--train-epochs", "1", "--train-images", "64", "--blocks", "1"]
SMALL_DEMO += ["--finetune-epochs", "1", "--no-progress"]


def shell_blocks(document: str) -> list[tuple[int, str, str | None]]:
    """``(line, script, reason to skip or None)`` of each bash/sh block of ``document``."""
    lines = (ROOT / document).read_text().splitlines()
    found, index, previous = [], 0, ""
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            if lines[index].strip():
                previous = lines[index].strip()
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        if fence["lang"] in ("bash", "sh"):
            skip = SKIP.match(previous)
            found.append((index + 1, "\n".join(lines[index + 1 : end]), skip and skip["reason"]))
        previous, index = "", end + 1
    return found


def run_script(folder: Path, script: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "PATH": os.pathsep.join([str(folder / ".venv" / "bin"), os.environ.get("PATH", "")]),
        "DBX_REPO": str(folder / "experiments"),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as after ``make demo`` twice in a checkout: ``.venv/bin``, ``experiments/``
    and the shipped ``studies/``."""
    folder = tmp_path_factory.mktemp("first-session")
    # The whole environment, not just bin/: its pyvenv.cfg makes .venv/bin/python the venv's.
    (folder / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (folder / "studies").symlink_to(ROOT / "studies")  # as in a checkout (docs/studies.md)
    for _ in range(2):
        done = run_script(folder, " ".join([".venv/bin/squeezr", "demo", *SMALL_DEMO]))
        assert done.returncode == 0, done.stderr
    return folder


def test_the_convention_finds_the_examples() -> None:
    blocks = {document: shell_blocks(document) for document in DOCUMENTS}
    assert len(blocks["README.md"]) >= 2
    assert any(reason is None for _, _, reason in blocks["docs/dbx.md"])
    assert all(reason for _, _, reason in blocks["docs/pruning.md"][:1])  # the synopsis


@pytest.mark.slow
@pytest.mark.parametrize("document", DOCUMENTS)
def test_shell_examples_run_as_written(document: str, demo_folder: Path) -> None:
    for line, script, reason in shell_blocks(document):
        if reason is not None:
            continue
        done = run_script(demo_folder, script)
        assert done.returncode == 0, (
            f"{document} line {line}: exit {done.returncode}\n{script}\n"
            f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        )
        assert "Traceback" not in done.stderr, done.stderr
