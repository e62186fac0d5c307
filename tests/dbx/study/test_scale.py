"""The paths made fast for 10,000-experiment studies (issue 15's benchmark) keep their answers.

``study plan`` and ``study test`` read every experiment of a study once, fill templates
parsed once, compare values with a shortcut for scalars and print their tables without
tabulate (checked against it in tests/dbx/test_clikit.py). One repository holding every
state an experiment can be in pins what both commands say, table and JSON alike.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from squeezr import dbx
from squeezr.dbx import jsonx
from squeezr.dbx.cli import main
from squeezr.dbx.compare import same
from squeezr.dbx.errors import UserError
from squeezr.dbx.study.expand import fill

STUDY = """name = "mix"

[[stage]]
name = "base"
command = "train {seed}"
experiment = "mix/base/s{seed}"
params = { epochs = 2 }
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
expect.results = ["acc"]

[[stage]]
name = "prune"
after = "base"
command = "prune --from {base.id} --seed {seed}"
experiment = "mix/prune/s{seed}"
params = { low = 1 }
seeds = [0, 1, 2]
"""


def _run(exp: dbx.Experiment, status: str, **fields: Any) -> None:
    """Give ``exp`` a run record as dbx writes it (run 1, or the next one)."""
    number = max(exp.run_numbers(), default=0) + 1
    record = {"run": number, "status": status, "hostname": "elsewhere", "pid": 1, **fields}
    (exp.path / f"run-{number}.json").write_text(jsonx.encode(record, indent=2))
    (exp.path / f"log-{number}.jsonl").write_text("")


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, Any]]]:
    capsys.readouterr()
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def _table(capsys: pytest.CaptureFixture[str], *argv: str) -> list[list[str]]:
    capsys.readouterr()
    main(list(argv))
    header, rule, *lines = capsys.readouterr().out.splitlines()
    starts = [i for i, c in enumerate(rule) if c == "-" and (i == 0 or rule[i - 1] == " ")]
    assert [header[i:].split("  ")[0].strip() for i in starts]  # one name per column
    return [
        [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        for line in lines
    ]


def test_plan_and_test_on_a_repository_with_every_state(
    tmp_path: Path, study_repo: dbx.Repository, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mix.toml"
    path.write_text(STUDY)
    code, rows = _json(capsys, "study", "plan", str(path))
    assert code == 0 and [r["change"] for r in rows] == ["new"] * 11
    exps = {e.name: e for e in study_repo.experiments("mix/")}
    right = {"seed": 0, "epochs": 2}

    _run(exps["mix/base/s0"], "finished", exit_code=0)  # done as planned
    exps["mix/base/s0"].results["acc"] = 0.5
    _run(exps["mix/base/s1"], "failed", exit_code=1, exception={"type": "KeyError", "message": "x"})
    shutil.rmtree(exps["mix/base/s2"].path)  # never planned here (s3: planned, never ran)
    meta = exps["mix/base/s4"].meta  # ran with epochs = 3, as adopting records it
    meta["params"] = {**right, "seed": 4, "epochs": 3}
    (exps["mix/base/s4"].path / "meta.json").write_text(jsonx.encode(meta, indent=2))
    _run(exps["mix/base/s4"], "finished", exit_code=0)
    exps["mix/base/s4"].results["acc"] = 0.5
    _run(exps["mix/base/s5"], "finished", exit_code=0)  # no result acc
    _run(exps["mix/base/s6"], "running")  # on another host: still running
    _run(exps["mix/base/s7"], "finished", exit_code=0)
    exps["mix/base/s7"].results["acc"] = 0.5
    by_hand = study_repo.create_experiment("mix/base/s7", "base", {"seed": 7, "epochs": 2})
    _run(dbx.Experiment(study_repo, by_hand), "finished", exit_code=0)  # s7 twice: duplicate
    _run(exps["mix/prune/s0"], "terminated", exit_code=143)
    _run(exps["mix/prune/s1"], "finished", exit_code=0)

    code, rows = _json(capsys, "study", "test", str(path))
    assert code == 1
    found = {r["experiment"]: (r["problem"], r["detail"]) for r in rows}
    assert found == {
        "mix/base/s1": ("failed", "run 1 failed (exit 1): KeyError: x"),
        "mix/base/s2": ("missing", "not in the repository"),
        "mix/base/s3": ("missing", "planned, never ran"),
        "mix/base/s4": ("params", "epochs = 3, expected 2"),
        "mix/base/s5": ("expect", "no result acc"),
        "mix/base/s6": ("unfinished", "running"),
        "mix/base/s7": ("duplicate", found["mix/base/s7"][1]),
        "mix/prune/s0": ("unfinished", "interrupted"),
        "mix/prune/s2": ("missing", "planned, never ran"),
    }
    assert found["mix/base/s7"][1].startswith("2 runs: ")
    table = _table(capsys, "study", "test", str(path))
    assert [(r[0], r[1], r[3]) for r in table] == [
        (r["problem"], r["experiment"], r["detail"]) for r in rows
    ]

    # the file changes: prune's low 1 -> 2, base seed 3 and 5 and prune seed 1 dropped
    edited = STUDY.replace("low = 1", "low = 2").replace(
        "[0, 1, 2, 3, 4, 5, 6, 7]", "[0, 1, 2, 4, 6, 7]"
    )
    path.write_text(edited.replace("seeds = [0, 1, 2]\n", "seeds = [0, 2]\n"))
    code, dry = _json(capsys, "study", "plan", str(path), "--dry-run")
    table = _table(capsys, "study", "plan", str(path), "--dry-run")
    assert [r[:2] + r[3:] for r in table] == [
        [r["stage"], r["name"], r["status"], r["change"], r["detail"]] for r in dry
    ]
    code, rows = _json(capsys, "study", "plan", str(path))
    assert [(r["name"], r["change"], r["status"]) for r in rows] == [
        (r["name"], r["change"], r["status"]) for r in dry
    ]
    assert [(r["name"], r["change"], r["status"], r["detail"]) for r in rows] == [
        ("mix/base/s0", "same", "done", ""),
        ("mix/base/s1", "same", "failed", ""),
        ("mix/base/s2", "new", "planned", ""),
        ("mix/base/s4", "same", "done", ""),  # the plan did not change; what ran did
        ("mix/base/s6", "same", "running", ""),
        ("mix/base/s7", "same", "done", ""),
        ("mix/prune/s0", "changed, ran", "interrupted", "low 1 -> 2"),
        ("mix/prune/s2", "changed", "planned", "low 1 -> 2; depends on another experiment"),
        ("mix/base/s3", "removed", "planned", ""),
        ("mix/base/s5", "removed, ran", "done", ""),
        ("mix/prune/s1", "removed, ran", "done", ""),
    ]
    code, again = _json(capsys, "study", "plan", str(path))
    assert [(r["name"], r["change"]) for r in again] == [
        *[(r["name"], "same") for r in rows[:6]],
        ("mix/prune/s0", "changed, ran"),
        ("mix/prune/s2", "same"),
        ("mix/base/s5", "removed, ran"),
        ("mix/prune/s1", "removed, ran"),
    ]


def test_templates_fill_fields_and_keep_other_braces() -> None:
    fields = {"seed": 3, "opt.lr": 0.1, "flag": True, "tags": ["a", "b"], "gone": None}
    text = "run {seed} --lr={opt.lr} {flag} {{seed}} {1x} { } }} {{ {tags}"
    assert (
        fill(text, fields, "t", quote=False) == 'run 3 --lr=0.1 true {seed} {1x} { } } { ["a","b"]'
    )
    assert fill("echo {tags} {seed}", fields, "t", quote=True) == 'echo \'["a","b"]\' 3'
    with pytest.raises(
        UserError, match=r"t: unknown field \{gone\} \(known: flag, opt.lr, seed, tags\)"
    ):
        fill("{seed} {gone}", fields, "t", quote=False)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (1, 1.0, True),
        (True, 1, False),
        (1, True, False),
        (math.nan, math.nan, True),
        (math.nan, 1.0, False),
        (0.0, -0.0, True),
        ("1", 1, False),
        (None, None, True),
        (None, 0, False),
        ("a", "a", True),
        ([1, 2.0], [1.0, 2], True),
        ({"a": [math.nan]}, {"a": [math.nan]}, True),
        ({"a": 1}, {"a": True}, False),
    ],
)
def test_values_are_the_same_as_dbx_diff_compares_them(a: Any, b: Any, expected: bool) -> None:
    assert same(a, b) is expected
    assert same(b, a) is expected
