"""Timing and reporting helpers shared by every benchmark script.

Kept tiny on purpose: each benchmark owns its workload; this module only makes the clock,
the command-line switches and the final JSON line (see benchmarks/README.md) look the same
everywhere, so figures from different scripts can be collected by one parser.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any


class Timer:
    """Elapsed wall-clock seconds of a ``with timer():`` block (``perf_counter``, monotonic)."""

    seconds: float = 0.0


@contextmanager
def timer() -> Iterator[Timer]:
    """Measure the enclosed block; read ``.seconds`` after the block ends."""
    result = Timer()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start


# How to get the peer tools (MLflow, W&B) the dbx benchmarks compare against; see the
# benchmark docstrings. The peers live in their own environment so their dependencies never
# leak into the package's.
PEER_INSTALL = (
    "python3 -m venv .venv-bench && "
    ".venv-bench/bin/pip install -c constraints-cpu.txt torch && "
    ".venv-bench/bin/pip install -c constraints-cpu.txt -e '.[bench]'"
)


def timed_on(device: Any, fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall time; on a CUDA device the time includes the kernels it queued
    (torch is imported only then: the dbx benchmarks run without it)."""
    with timer() as t:
        out = fn()
        if device.type == "cuda":
            import torch

            torch.cuda.synchronize(device)
    return out, t.seconds


def parser(description: str, peers: bool = False) -> argparse.ArgumentParser:
    """An argument parser with the ``--quick`` switch every benchmark must accept, and for
    benchmarks against peer tools the ``--no-peers`` switch."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smaller workload, for a smoke test")
    if peers:
        p.add_argument(
            "--no-peers",
            action="store_true",
            help="measure squeezr alone (the targets against peers are then not checked)",
        )
    return p


def peer_missing(module: str) -> bool:
    """Whether peer tool ``module`` cannot be imported by this interpreter."""
    return importlib.util.find_spec(module) is None


def not_measured(reason: str) -> str:
    """What a target that could not be checked says instead of PASS or MISS."""
    return f"not measured ({reason})"


def missing_peer_reason(module: str) -> str:
    return f"peer {module} missing: install with {PEER_INSTALL}"


def print_targets(figures: dict[str, Any]) -> bool:
    """Print each target as PASS, MISS or "not measured (why)"; True if all were measured."""
    measured = True
    for key, value in figures.items():
        if isinstance(value, bool):
            print(f"target {key}: {'PASS' if value else 'MISS'}")
        elif isinstance(value, str):
            print(f"target {key}: {value}")
            measured = False
    return measured


def ratio(slow: float, fast: float) -> str:
    """``slow / fast`` as a short human string, e.g. ``'12.3x'`` (``'n/a'`` if undefined)."""
    if not fast or fast <= 0 or slow is None:
        return "n/a"
    return f"{slow / fast:.1f}x"


def print_tool_table(
    title: str,
    headers: list[str],
    results: dict[str, dict[str, Any]],
    row: Callable[[str, dict[str, Any]], list[Any]],
) -> None:
    """The comparison table of a benchmark against peer tools: ``row(tool, figures)`` for each
    measured tool; dashes and the reason for one that failed or is not installed."""
    from tabulate import tabulate

    rows = [
        [tool, *["-"] * (len(headers) - 2), r.get("error") or "not installed"]
        if "error" in r or "missing" in r
        else row(tool, r)
        for tool, r in results.items()
    ]
    print(f"\n{title}\n")
    print(tabulate(rows, headers=headers))
    print()


def machine() -> dict[str, Any]:
    """Where and when the figures were taken, so they can be written down with context."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def report(name: str, figures: dict[str, Any]) -> None:
    """Print the benchmark's last line: one JSON object ``{"benchmark": name, ...figures}``."""
    line = {"benchmark": name, **figures, "machine": machine()}
    sys.stdout.write(json.dumps(line, default=str, allow_nan=False) + "\n")
    sys.stdout.flush()
