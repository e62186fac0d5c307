"""Malformed repository files (issue 11, "must hold"): 204 seeded mutations of meta.json,
results.json, run-N.json, log lines and attachments.json, each fed to ``dbx ls / show /
query / verify / missing / diff``. Every command must end with exit status 0, 1 or 2 and
say what it has to say in ``dbx: ...`` lines: no traceback, no hang."""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from squeezr import dbx
from squeezr.dbx.cli import main

CASES = 204
SECONDS_PER_COMMAND = 20
pytestmark = pytest.mark.slow

ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5e308,
    "",
    "x" * 300,
    "\udc80",
    "é/../..",
    [],
    {},
    [1, "a", None],
    {"$numberDouble": "NaN"},
    {"$numberDouble": "bogus"},
    {"a.b": 1},
    {"": 2},
]
RAW_TEXTS = [
    "",
    "{",
    "[",
    "null",
    "nan",
    '{"a": NaN}',
    "\ufeff{}",
    "[" * 3000 + "]" * 3000,
    '{"a":' * 2000 + "1" + "}" * 2000,
    "1" * 5000,
    '{"x": ' + "9" * 5000 + "}",
    '{"x": "\\ud800"}',
    "\x00\x01\x02",
]
FIELDS = {
    "meta.json": ["id", "name", "kind", "created", "params", "format"],
    "results.json": ["acc", "loss", "nested"],
    "run-1.json": ["run", "argv", "git", "status", "start", "end", "env", "exit_code"],
    "attachments.json": ["m.bin"],
}


def _template(root: Path) -> Path:
    """A sound repository with experiments a (everything) and b."""
    repo = root / "template"
    source = root / "m.bin"
    source.write_bytes(b"weights")
    with dbx.create("a", params={"lr": 0.1}, repo=repo) as exp:
        exp.results["acc"] = 0.5
        exp.results["nested"] = {"k": [1, 2]}
        for i in range(3):
            exp.log("step", i=i, loss=1.0 / (i + 1))
        exp.attach(source)
    with dbx.create("b", params={"lr": 0.2}, repo=repo) as other:
        other.results["acc"] = 0.6
        other.log("step", i=0)
    return repo


def _mutations(rng: random.Random) -> list[tuple[str, Callable[[Path], None]]]:
    """CASES (file, mutation) pairs; each mutation damages one file of experiment a."""
    cases: list[tuple[str, Callable[[Path], None]]] = []
    names = [*FIELDS, "log-1.jsonl"]
    while len(cases) < CASES:
        name = names[len(cases) % len(names)]
        kind = rng.randrange(5)
        if kind == 0:
            text = rng.choice(RAW_TEXTS)
            cases.append((name, lambda p, t=text: p.write_text(t, errors="surrogatepass")))
        elif kind == 1:
            cut = rng.random()
            cases.append(
                (
                    name,
                    lambda p, c=cut: p.write_bytes(p.read_bytes()[: int(len(p.read_bytes()) * c)]),
                )
            )
        elif kind == 2:
            junk = rng.randbytes(rng.randrange(1, 64))
            pos = rng.random()
            cases.append((name, lambda p, j=junk, q=pos: _splice(p, j, q)))
        elif kind == 3 and name != "log-1.jsonl":
            field, value = rng.choice(FIELDS[name]), rng.choice(ODD_VALUES)
            cases.append((name, lambda p, f=field, v=value: _set_field(p, f, v)))
        elif kind == 3:
            field, value = rng.choice(["name", "id", "ts", "run", "data"]), rng.choice(ODD_VALUES)
            line = rng.randrange(3)
            cases.append((name, lambda p, f=field, v=value, n=line: _set_event(p, n, f, v)))
        else:
            cases.append((name, lambda p: (p.unlink(), p.mkdir())))
    return cases


def _splice(path: Path, junk: bytes, where: float) -> None:
    data = path.read_bytes()
    at = int(len(data) * where)
    path.write_bytes(data[:at] + junk + data[at:])


def _encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)


def _set_field(path: Path, field: str, value: Any) -> None:
    data = json.loads(path.read_text())
    data[field] = value
    path.write_text(_encode(data))


def _set_event(path: Path, line: int, field: str, value: Any) -> None:
    lines = path.read_text().splitlines()
    event = json.loads(lines[line])
    event[field] = value
    lines[line] = _encode(event)
    path.write_text("\n".join(lines) + "\n")


class _Hang(Exception):
    pass


def _on_alarm(*_: Any) -> None:
    raise _Hang


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    signal.alarm(SECONDS_PER_COMMAND)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(argv)
    except _Hang:
        pytest.fail(f"dbx {' '.join(argv)} hung")
    finally:
        signal.alarm(0)
    return code, err.getvalue()


COMMANDS = [
    ["ls", "--columns", "name,params.lr,results.acc", "--where", "results.acc > 0"],
    ["show", "a"],
    ["query", "step | select i, loss"],
    ["verify"],
    ["missing", "--event", "eval", "--result", "acc"],
    ["diff", "a", "b", "--results"],
]


def test_malformed_files_never_give_a_traceback_or_a_hang(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    template = _template(tmp_path)
    folder_a = next(p for p in template.glob("a/*") if p.is_dir())
    relative = folder_a.relative_to(template)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    rng = random.Random(11)
    try:
        for number, (name, mutate) in enumerate(_mutations(rng)):
            repo = tmp_path / f"case-{number}"
            shutil.copytree(template, repo, symlinks=True)
            mutate(repo / relative / name)
            monkeypatch.setenv("DBX_REPO", str(repo))
            for argv in COMMANDS:
                code, err = _run(argv)
                where = f"case {number} ({name}): dbx {' '.join(argv)}"
                assert code in (0, 1, 2), f"{where} exited {code}\n{err}"
                lines = err.splitlines()
                assert all(line.startswith("dbx: ") for line in lines), f"{where}\n{err}"
            shutil.rmtree(repo)
    finally:
        signal.signal(signal.SIGALRM, previous)
