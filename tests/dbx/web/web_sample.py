"""The repository the web UI tests browse: every kind of content (finished, failed and
planned experiments, logs, progress, attachments)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from squeezr import dbx

TOKEN = "test-token-123"


def build_repository(root: Path) -> dbx.Repository:
    """Six pruning experiments (two methods x three seeds) logging five epochs, one failed
    training run and one planned experiment."""
    repo = dbx.Repository.init(root)
    rng = random.Random(0)
    model = root.parent / "model.txt"
    model.write_text("weights " * 100)
    for method in ("oracle", "l1norm"):
        for seed in range(3):
            params = {
                "method": method,
                "seed": seed,
                "optimizer": {"name": "sgd", "lr": 0.1 if seed < 2 else 0.05},
                "epochs": 5,
            }
            with dbx.create(f"prune/{method}/s{seed}", "prune", params, repo=repo) as exp:
                acc = 0.5 if method == "oracle" else 0.45
                for epoch in range(5):
                    acc += rng.uniform(0.02, 0.08)
                    exp.log(f"train/epoch/{epoch}/eval", val_acc=acc, loss=1 - acc)
                for _ in exp.progress(range(5), desc="epoch"):
                    pass
                exp.results["best_val_acc"] = acc
                exp.results["blocks_removed"] = rng.randint(3, 9)
                exp.attach(model)
    with pytest.raises(RuntimeError), dbx.create("train/base", "train", {"lr": 0.1}, repo=repo):
        raise RuntimeError("diverged")
    repo.create_experiment("train/planned", "train", {"lr": 0.2})
    return repo
