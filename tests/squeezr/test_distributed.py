"""Data parallelism under torchrun (squeezr.distributed): 2 gloo processes on the CPU give what
one process gives.

The slow tests start ``torchrun`` on 127.0.0.1 at a free port with 2 processes running
``ddp_worker.py`` (or the ``squeezr`` command through it) and compare with the same function
run here, in one process. Tolerances: in float64 the 2-process weights equal 1 process's to
1e-10 (relative), which shows the split itself is exact; in float32, as squeezr trains,
rounding differs (a batch's sums are added in another order) and training amplifies it: after
10 SGD steps weights of size 0.1-1 differ by up to about 5e-5, so the test allows 2e-4 (the
1-process float32 run is itself 1.3e-5 away from the float64 one).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import ddp_worker
import pytest
import torch

from squeezr import distributed

WORKER = Path(ddp_worker.__file__)


def torchrun(tmp_path: Path, *args: str, nproc: int = 2, env: dict[str, str] | None = None):
    """``torchrun --nproc-per-node 2 ddp_worker.py ARGS`` on 127.0.0.1 at a free port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(nproc),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        str(WORKER),
        *args,
    ]
    src = str(Path(distributed.__file__).parents[1])
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
    }
    full_env.update(env or {})
    return subprocess.run(
        command, cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=600
    )


def run_scenario(tmp_path: Path, name: str) -> object:
    out = tmp_path / f"{name}.pt"
    proc = torchrun(tmp_path, name, str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = torch.load(out, weights_only=False)
    assert saved["world"] == 2
    return saved["outcome"]


# --------------------------------------------------------------------------- one process


@pytest.mark.parametrize("n", [0, 1, 5, 31, 32])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_cover_the_items_in_order(monkeypatch, n, world):
    parts = []
    for rank in range(world):
        monkeypatch.setattr(distributed, "world_size", lambda w=world: w)
        monkeypatch.setattr(distributed, "rank", lambda r=rank: r)
        parts.append(distributed.shard(n))
    assert [i for p in parts for i in range(n)[p]] == list(range(n))
    sizes = [len(range(n)[p]) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_one_process_helpers_change_nothing():
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    t = torch.tensor([1.5, 2.0])
    assert distributed.all_reduce(t) is t and t.tolist() == [1.5, 2.0]
    obj = {"a": [1, 2]}
    assert distributed.broadcast_object(obj) is obj
    assert distributed.local_device(torch.device("cpu")) == torch.device("cpu")


def test_a_gpu_index_under_torchrun_is_refused(monkeypatch):
    """Every process would take that one GPU; each takes its LOCAL_RANK's instead."""
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(distributed.UserError, match=r"use --device cuda \(or auto\)"):
        distributed.local_device(torch.device("cuda", 1))


def test_a_half_launched_group_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(distributed.UserError, match="start the run with torchrun"):
        distributed.world_size()


@pytest.mark.parametrize("momentum", [0.1, None])
def test_global_batch_norm_computes_what_batch_norm_does(momentum):
    """Forward, backward and running statistics of the global batch norm (here over a
    1-process gloo group) equal nn.BatchNorm2d's; evaluation mode is BatchNorm2d itself."""
    import copy

    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        ref = torch.nn.BatchNorm2d(3, momentum=momentum)
        torch.nn.init.uniform_(ref.weight, 0.5, 1.5)
        torch.nn.init.uniform_(ref.bias, -0.5, 0.5)
        bn = copy.deepcopy(ref)
        bn.__class__ = distributed._global_class(torch.nn.BatchNorm2d)
        assert (
            isinstance(bn, torch.nn.BatchNorm2d)
            and bn.state_dict().keys() == ref.state_dict().keys()
        )
        for _ in range(2):
            x = torch.randn(4, 3, 5, 5) * 2 + 1
            w = torch.randn(4, 3, 5, 5)
            a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
            ((bn(a) * w).sum()).backward()
            ((ref(b) * w).sum()).backward()
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bn.bias.grad, ref.bias.grad)
        for key, value in ref.state_dict().items():
            torch.testing.assert_close(bn.state_dict()[key], value)
        bn.eval()
        ref.eval()
        torch.testing.assert_close(bn(x), ref(x))
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------- two processes


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    """Final weights (and the per-epoch records) of 2 gloo ranks equal 1 process's on the
    same global batch, with an uneven shard (31 = 16 + 15) and an empty one (1 = 1 + 0; an
    empty batch through batch norm, a stand-in sample at weight 0 without)."""
    two = run_scenario(tmp_path, "training")
    one = ddp_worker.SCENARIOS["training"]()
    cases = (("float64", 1e-10, 1e-12), ("float64-no-bn", 1e-10, 1e-12), ("float32", 1e-5, 2e-4))
    for dtype, rtol, atol in cases:
        for batch, run in one[dtype].items():
            other = two[dtype][batch]
            for key, value in run["state"].items():
                torch.testing.assert_close(other["state"][key], value, rtol=rtol, atol=atol)
            for a, b in zip(run["history"], other["history"], strict=True):
                assert (a["val_acc"], a["test_acc"]) == (b["val_acc"], b["test_acc"])
                assert a.get("train_acc") == b.get("train_acc")
                assert a.get("train_loss", 0) == pytest.approx(b.get("train_loss", 0), rel=1e-5)


@pytest.mark.slow
def test_two_processes_score_blocks_like_one(tmp_path):
    """Every data-driven saliency method, the selection set split across 2 ranks."""
    two = run_scenario(tmp_path, "scores")
    one = ddp_worker.SCENARIOS["scores"]()
    assert set(two) == set(one)
    for name, scores in one.items():
        assert two[name].keys() == scores.keys()
        for block, score in scores.items():
            assert two[name][block] == pytest.approx(score, rel=1e-5, abs=1e-7), (name, block)
    assert two["oracle"] == one["oracle"]  # error counts: exact


@pytest.mark.slow
def test_two_processes_train_and_score_a_language_model_like_one(tmp_path):
    """The task-generic path: token NLL, next-token accuracy, no batch norm."""
    two = run_scenario(tmp_path, "language")
    one = ddp_worker.SCENARIOS["language"]()
    for batch, run in one.items():
        for key, value in run["state"].items():
            torch.testing.assert_close(two[batch]["state"][key], value, rtol=1e-10, atol=1e-12)
        assert two[batch]["oracle"] == pytest.approx(run["oracle"], rel=1e-10)


@pytest.mark.slow
def test_two_processes_train_and_score_a_hugging_face_decoder_like_one(tmp_path):
    """A transformers decoder through its adapter (squeezr.networks.hf) on a token file
    (squeezr.textdata): float64 weights to 1e-10 (relative) and oracle perplexities to 1e-10,
    as for the tiny test LM above."""
    two = run_scenario(tmp_path, "hf_decoder")
    one = ddp_worker.SCENARIOS["hf_decoder"]()
    assert (two["train"], two["val"]) == (one["train"], one["val"]) == (63, 7)
    assert two["state"].keys() == one["state"].keys()
    for key, value in one["state"].items():
        torch.testing.assert_close(two["state"][key], value, rtol=1e-10, atol=1e-12)
    assert two["oracle"] == pytest.approx(one["oracle"], rel=1e-10)


def _source(repo: Path) -> None:
    """A trained tiny network (one process) to prune."""
    from squeezr.baselines import train_experiment, training_params
    from squeezr.train import TrainConfig

    dataset = {"name": "synthetic", "synthetic_size": 256, "synthetic_classes": 4, "seed": 0}
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, device="cpu")
    params = training_params(arch="tiny", config=(1, 1, 1), dataset=dataset, cfg=cfg)
    train_experiment(params, repo=repo, name="base", progress=False)


PRUNE = [
    "prune",
    "--from",
    "base",
    "--method",
    "oracle",
    "--target-blocks",
    "2",
    "--schedule",
    "every:1",
    "--epochs",
    "1",
    "--lr",
    "0.02",
    "--milestones",
    "none",
    "--batch-size",
    "45",
    "--device",
    "cpu",
    "--no-progress",
    "--json",
]


def _prune_runs(repo: Path) -> list:
    from squeezr import dbx

    return [e for e in dbx.Repository(repo).experiments() if e.kind == "prune"]


@pytest.mark.slow
def test_two_process_prune_writes_one_experiment_and_resumes_after_a_crash(tmp_path):
    """``squeezr prune`` under torchrun: one experiment, the blocks and figures of a 1-process
    run; a rank that crashes mid-run leaves that one experiment resumable, and the resumed
    run ends as the uninterrupted one."""
    from squeezr.cli import main

    repo = tmp_path / "repo"
    _source(repo)
    assert main([*PRUNE, "--repo", str(repo), "--name", "one"]) == 0
    proc = torchrun(tmp_path, "cli", *PRUNE, "--repo", str(repo), "--name", "two")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {e.name: e for e in _prune_runs(repo)}
    assert sorted(runs) == ["one", "two"]
    one, two = dict(runs["one"].results), dict(runs["two"].results)
    assert two["order"] == one["order"]
    assert two["final_val_acc"] == one["final_val_acc"]
    assert two["cost"] == one["cost"]

    crashed = torchrun(
        tmp_path,
        "cli",
        *PRUNE,
        "--repo",
        str(repo),
        "--name",
        "crash",
        env={"DDP_WORKER_CRASH": "1:2"},  # rank 1, in step 2's fine-tuning
    )
    assert crashed.returncode != 0
    assert "rank 1 crashes (test)" in crashed.stderr
    (run,) = [e for e in _prune_runs(repo) if e.name == "crash"]
    assert "model.pt" not in run.attachments and "order" not in run.results
    resumed = torchrun(tmp_path, "cli", "prune", "--resume", run.id, "--repo", str(repo))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at step 2 (block" in resumed.stderr
    (run,) = [e for e in _prune_runs(repo) if e.name == "crash"]
    assert dict(run.results)["order"] == one["order"]
    assert dict(run.results)["final_val_acc"] == one["final_val_acc"]


@pytest.mark.slow
def test_two_process_train_writes_one_experiment(tmp_path):
    """``squeezr train`` under torchrun: one experiment (rank 0's), its checkpoints attached
    once, and the accuracies of a 1-process run."""
    from squeezr import dbx
    from squeezr.cli import main

    repo = tmp_path / "repo"
    train = ["train", "--config", "1,1,1", "--dataset", "digits", "--train-images", "64"]
    train += ["--epochs", "1", "--batch-size", "16", "--checkpoint-every", "1", "--device", "cpu"]
    train += ["--no-progress", "--json", "--repo", str(repo)]
    assert main([*train, "--name", "one"]) == 0
    proc = torchrun(tmp_path, "cli", *train, "--name", "two")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {e.name: e for e in dbx.Repository(repo).experiments()}
    assert sorted(runs) == ["one", "two"]
    two, one = runs["two"], runs["one"]
    assert len(two.runs()) == 1
    assert sorted(two.attachments) == sorted(one.attachments)
    assert [f"checkpoints/epoch-000{e}.pt" in two.attachments for e in (0, 1)] == [True, True]
    assert not list(two.path.glob("resume-*.pt"))
    for key in ("best_epoch", "val_acc", "test_acc", "params"):
        assert dict(two.results)[key] == dict(one.results)[key]


@pytest.mark.slow
def test_two_process_channel_stage_writes_one_experiment_like_one_process(tmp_path):
    """``squeezr prune --then channels`` under torchrun: one experiment, and the blocks, the
    channel widths and the figures of a 1-process run (taylor importance: its gradients on
    one selection batch are the same on every rank)."""
    from squeezr.cli import main

    repo = tmp_path / "repo"
    _source(repo)
    prune = [*PRUNE, "--then", "channels:0.5,steps=2,importance=taylor", "--repo", str(repo)]
    prune[prune.index("--target-blocks") + 1] = "1"
    assert main([*prune, "--name", "one"]) == 0
    proc = torchrun(tmp_path, "cli", *prune, "--name", "two")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {e.name: e for e in _prune_runs(repo)}
    assert sorted(runs) == ["one", "two"]
    assert len(runs["two"].runs()) == 1
    assert sorted(runs["two"].attachments) == sorted(runs["one"].attachments)
    one, two = dict(runs["one"].results), dict(runs["two"].results)
    for key in ("order", "channel_widths", "channels_removed_pct", "params", "macs", "cost"):
        assert two[key] == one[key], key
    assert two["final_val_acc"] == one["final_val_acc"]
