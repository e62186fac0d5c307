"""The dbx benchmarks' own logic: timing helpers, scaling, target checks, workload, CLI errors.

Timing thresholds are not tested here (see benchmarks/README.md); what is tested is that the
scripts compute and judge their figures correctly, so a benchmark cannot pass by accident.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):
    """Import a benchmark script as a module (they import ``_common`` as a sibling)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def load(name: str) -> ModuleType:
        return importlib.import_module(name)

    return load


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True
    )


# --- _common ---------------------------------------------------------------------------------


def test_timer_measures_the_block(bench):
    common = bench("_common")
    with common.timer() as t:
        time.sleep(0.02)
    assert 0.015 < t.seconds < 1.0


def test_timer_records_even_when_the_block_raises(bench):
    common = bench("_common")
    with pytest.raises(ValueError), common.timer() as t:
        raise ValueError("boom")
    assert t.seconds > 0


@pytest.mark.parametrize(
    ("slow", "fast", "text"), [(10.0, 2.0, "5.0x"), (1.0, 4.0, "0.2x"), (3.0, 0.0, "n/a")]
)
def test_ratio(bench, slow, fast, text):
    assert bench("_common").ratio(slow, fast) == text


def test_report_prints_one_json_line_with_name_figures_and_machine(bench, capsys):
    bench("_common").report("demo", {"speedup": 3.5})
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    line = json.loads(out)
    assert line["benchmark"] == "demo"
    assert line["speedup"] == 3.5
    assert {"date", "python", "cpus"} <= set(line["machine"])


def test_parser_accepts_quick(bench):
    assert bench("_common").parser("x").parse_args(["--quick"]).quick is True


# --- dbx_logging -----------------------------------------------------------------------------


def test_summarise_scales_the_loop_but_not_close(bench):
    logging = bench("dbx_logging")
    runs = [{"setup": 1.0, "loop": loop, "close": 0.5, "written": 2000} for loop in (2, 3, 9)]
    out = logging.summarise("mlflow", n=10_000, m=2_000, runs=runs)
    assert out["extrapolated"] is True
    assert out["log_us"] == pytest.approx(3 / 2000 * 1e6)  # median loop, per event
    assert out["total_s"] == pytest.approx(3 * 5 + 0.5)
    assert out["close_s"] == 0.5
    assert "error" not in out


def test_summarise_scales_the_close_of_mlflows_async_mode(bench):
    runs = [{"setup": 1.0, "loop": 2.0, "close": 10.0, "written": 2000}]
    out = bench("dbx_logging").summarise("mlflow-async", n=10_000, m=2_000, runs=runs)
    assert out["close_s"] == pytest.approx(50.0)  # draining the queue is writing the events
    assert out["total_s"] == pytest.approx(10.0 + 50.0)


def test_the_10x_target_is_judged_against_mlflows_fastest_mode(bench):
    results = {
        "dbx": {"log_us": 4.0, "total_s": 1.0},
        "mlflow": {"log_us": 900.0, "total_s": 500.0},
        "mlflow-async": {"log_us": 50.0, "total_s": 60.0},
        "mlflow-batch": {"log_us": 80.0, "total_s": 8.0},  # the fastest: only 8x
        "mlflow-file": {"missing": "peer mlflow missing"},
    }
    figures = bench("dbx_logging").compare(results)
    assert figures["fastest_mlflow_mode"] == "mlflow-batch"
    assert figures["total_speedup_vs_fastest_mlflow"] == pytest.approx(8.0)
    assert figures["total_speedup_vs_fastest_mlflow_ge_10"] is False
    assert figures["total_speedup_vs_mlflow_ge_10"] is True


def test_summarise_flags_lost_events(bench):
    runs = [{"setup": 0.1, "loop": 1.0, "close": 0.1, "written": 1999}]
    out = bench("dbx_logging").summarise("dbx", n=2000, m=2000, runs=runs)
    assert out["error"] == "dbx wrote 1999 of 2000 events"


def test_compare_judges_each_target(bench):
    logging = bench("dbx_logging")
    results = {
        "dbx": {"log_us": 4.0, "total_s": 1.0},
        "mlflow": {"log_us": 900.0, "total_s": 9.0},  # only 9x: misses the 10x target
        "wandb": {"log_us": 600.0, "total_s": 2.0},
        "mlflow-file": {"error": "exit 1: boom"},
    }
    figures = logging.compare(results)
    assert figures["log_us_le_10"] is True
    assert figures["total_speedup_vs_mlflow_ge_10"] is False
    assert figures["total_speedup_vs_wandb_ge_1"] is True
    assert figures["log_speedup_vs_wandb"] == pytest.approx(150.0)
    assert (
        figures["total_speedup_vs_mlflow-file_ge_10"]
        == "not measured (mlflow-file failed: exit 1: boom)"
    )
    assert "log_speedup_vs_mlflow-file" not in figures


def test_a_missing_peer_is_not_measured_and_fails_the_run(bench, capsys):
    logging = bench("dbx_logging")
    results = {"dbx": {"log_us": 4.0, "total_s": 1.0}, "wandb": {"missing": "peer wandb missing"}}
    figures = logging.compare(results)
    assert figures["total_speedup_vs_wandb_ge_1"] == "not measured (peer wandb missing)"
    assert bench("_common").print_targets(figures) is False
    out = capsys.readouterr().out
    assert "target log_us_le_10: PASS" in out
    assert "target total_speedup_vs_wandb_ge_1: not measured (peer wandb missing)" in out


def test_list_compare_reports_missing_mlflow(bench):
    listing = bench("dbx_list")
    dbx = {"warm_s": 0.2, "fresh_s": 0.3}
    figures = listing.compare({"dbx": dbx, "mlflow": {"missing": "peer mlflow missing: install"}})
    assert figures["warm_lt_0.5s"] is True
    assert figures["faster_than_mlflow"].startswith("not measured (peer mlflow missing")
    measured = listing.compare({"dbx": dbx, "mlflow": {"warm_s": 0.4, "fresh_s": 0.2}})
    assert measured["faster_than_mlflow"] is False  # slower in a fresh process


def test_logging_without_a_peer_exits_1_unless_no_peers(tmp_path):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    proc = run_script("dbx_logging.py", "--events", "300", "--repeats", "1", "--tools", "dbx,wandb")
    assert proc.returncode == 1, proc.stderr
    assert (
        "total_speedup_vs_wandb_ge_1: not measured (peer wandb missing: install with" in proc.stdout
    )
    assert ".venv-bench/bin/pip install" in proc.stdout
    proc = run_script("dbx_logging.py", "--events", "300", "--repeats", "1", "--no-peers")
    assert proc.returncode == 0, proc.stderr
    assert "target log_us_le_10:" in proc.stdout and "wandb" not in proc.stdout


def test_compare_reports_a_slow_logger(bench):
    figures = bench("dbx_logging").compare({"dbx": {"log_us": 12.5, "total_s": 1.0}})
    assert figures["log_us_le_10"] is False


def test_a_failing_worker_is_reported_not_raised(bench, tmp_path):
    # The test venv has no W&B; the worker must fail in its subprocess and say why.
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    result = bench("dbx_logging").measure("wandb", 10)
    assert result["error"].startswith("exit 1: ModuleNotFoundError")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tools", "mlflow"], "--tools must include dbx"),
        (["--tools", "dbx,neptune"], "--tools must include dbx"),
        (["--peer-events", "100"], "--peer-events must be at least 2,000"),
        (["--repeats", "0"], "must be at least 1"),
    ],
)
def test_logging_rejects_bad_options(args, message):
    proc = run_script("dbx_logging.py", *args)
    assert proc.returncode == 2
    assert message in proc.stderr


# --- dbx_list --------------------------------------------------------------------------------


def test_list_workload_is_seeded_and_shaped_as_promised(bench):
    listing = bench("dbx_list")
    first, again = list(listing.specs(50)), list(listing.specs(50))
    assert first == again
    name, kind, params, results = first[7]
    assert name == f"sweep0/{params['optimizer']['name']}/run7"
    assert kind in {"train", "prune"}
    assert len(listing.flatten(params)) == 10
    assert len(results) == 5


def test_expected_matches_counts_the_filter(bench):
    listing = bench("dbx_list")
    rows = list(listing.specs(400))
    manual = [r for _, _, p, r in rows if p["optimizer"]["name"] == "adam"]
    count = sum(r["best_val_acc"] > 0.8 for r in manual)
    assert listing.expected_matches(400) == count
    assert 0 < count < 400  # the filter selects some, not all


def test_flatten_dots_nested_keys(bench):
    flat = bench("dbx_list").flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": True})
    assert flat == {"a.b": 1, "a.c.d": "x", "e": True}
