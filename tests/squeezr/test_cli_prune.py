"""``squeezr prune``, ``compare`` and ``scratch`` end to end on a tiny network and dbx repo."""

import json

import pytest
import torch

from squeezr import dbx
from squeezr.analysis import ranking, step_records
from squeezr.cli import main
from squeezr.models import ResNet, count_params, load_model, save_model
from squeezr.prune import loop as loop_module
from squeezr.train import FitResult

DATASET = {"name": "synthetic", "synthetic_size": 120, "synthetic_classes": 4}
FAST = ["--epochs", "1", "--batch-size", "32", "--device", "cpu", "--no-progress"]


@pytest.fixture
def repo(tmp_path):
    """A repository holding one 'trained' (random) network, as squeezr train records it."""
    path = tmp_path / "repo"
    torch.manual_seed(0)
    model = ResNet((1, 1, 2), num_classes=4)
    save_model(model, tmp_path / "start.pt")
    with dbx.create(
        "train/tiny", kind="train", params={"dataset": DATASET, "train": {"epochs": 2}}, repo=path
    ) as exp:
        exp.attach(tmp_path / "start.pt", name="model.pt")
    return path


def prune_cli(repo, *extra):
    return main(["prune", "--from", "train/tiny", "--repo", str(repo), *FAST, *extra])


def experiments(repo):
    return sorted(e.name for e in dbx.Repository(repo).experiments())


def test_prune_records_everything(repo, capsys):
    rc = prune_cli(repo, "--target-blocks", "2", "--schedule", "uniform:2", "--name", "p/one")
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "2 blocks removed" in out
    assert "plan: remove 2 blocks (1 per step) by oracle" in out  # printed before the run
    assert "after 1, 2 blocks removed" in out
    exp = dbx.open("p/one", repo=repo)
    assert exp.kind == "prune"
    assert exp.params["prune"]["schedule"] == "uniform:2"
    assert exp.params["source"]["name"] == "train/tiny"
    results = exp.results
    assert results["blocks_removed"] == 2 and len(results["order"]) == 2
    events = exp.merged_events()
    assert {"prune/initial", "prune/step/1", "prune/step/2"} <= set(events)
    assert "prune/step/1/finetune/epoch/1" in events  # uniform:2 over 2 blocks: both steps
    step2 = events["prune/step/2"]
    assert step2["blocks_removed"] == 2 and step2["finetune"] == "final"
    assert set(step2["saliency"]) == {str(b) for b in range(4)} - {str(results["order"][0])}
    pruned = load_model(exp.attachment_path("model.pt"))
    assert sorted(pruned.removed) == sorted(results["order"])
    assert pruned.config == tuple(results["config"])


def test_prune_from_a_checkpoint_needs_a_dataset(repo, tmp_path, capsys):
    ckpt = tmp_path / "start.pt"
    args = ["prune", "--from", str(ckpt), "--repo", str(repo), "--target-left", "3", *FAST]
    assert main(args) == 2
    assert "pass --dataset" in capsys.readouterr().err
    assert main([*args, "--dataset", "synthetic", "--schedule", "none", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    exp = dbx.open(printed["id"], repo=repo)
    assert printed["name"] == exp.name == "prune/start/oracle/none"
    assert printed["final_test_acc"] == exp.results["final_test_acc"]  # raw, not rounded
    assert [r["removed"] for r in printed["steps"]] == [0, 1]


def test_resume_after_kill_matches_an_uninterrupted_run(repo, monkeypatch, capsys):
    settings = ["--target-blocks", "3", "--schedule", "every:1", "--method", "block-gradient"]
    assert prune_cli(repo, *settings, "--name", "p/whole") == 0
    real_fit, calls = loop_module.fit, {"n": 0}

    def dying_fit(*args, on_epoch_end=None, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # Ctrl-C in step 2's fine-tuning, after its first epoch

            def stop(epoch, row):
                if on_epoch_end is not None:  # the loop's own
                    on_epoch_end(epoch, row)
                raise KeyboardInterrupt

            return real_fit(*args, on_epoch_end=stop, **kwargs)
        return real_fit(*args, on_epoch_end=on_epoch_end, **kwargs)

    monkeypatch.setattr(loop_module, "fit", dying_fit)
    capsys.readouterr()
    assert prune_cli(repo, *settings, "--name", "p/killed") == 130
    killed = dbx.open("p/killed", repo=repo)
    assert "order" not in killed.results
    hint = f"continue it with: squeezr prune --resume {killed.id} --repo {repo}\n"
    assert hint in capsys.readouterr().err
    assert main(["prune", "--resume", killed.id, "--repo", str(repo), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "squeezr: resuming at step 2 (block " in err and "), fine-tuning epoch 2\n" in err
    whole = dbx.open("p/whole", repo=repo).results
    resumed = dbx.open("p/killed", repo=repo).results
    for key in ("order", "final_val_acc", "final_test_acc", "cost", "params", "epochs_used"):
        assert resumed[key] == whole[key], key


def test_compare_ranking_and_scratch(repo, capsys):
    for method in ("oracle", "weights-mean"):
        args = ["--target-blocks", "2", "--schedule", "none", "--method", method]
        assert prune_cli(repo, *args, "--name", f"p/{method}") == 0
    capsys.readouterr()
    assert main(["compare", "p/oracle", "p/weights-mean", "--repo", str(repo), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2
    assert rows[0][rows[0]["run"]] == pytest.approx(1.0)
    assert -1 <= rows[0][rows[1]["run"]] <= 1
    assert main(["compare", "p/oracle", "p/oracle", "--step", "9", "--repo", str(repo)]) == 2
    assert "--step must be between 1 and 2" in capsys.readouterr().err

    assert main(["ranking", "p/oracle", "--step", "2", "--repo", str(repo), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    exp = dbx.open("p/oracle", repo=repo)
    ranks = ranking(step_records(exp), 2)
    assert [r["block"] for r in rows] == sorted(ranks, key=lambda b: (ranks[b], b))
    assert [r["rank"] for r in rows] == sorted(ranks.values())
    first = exp.results["order"][0]
    assert rows[0]["block"] == first and rows[0]["removed_at"] == 1
    assert rows[0]["saliency"] is None and rows[1]["saliency"] is not None
    assert main(["ranking", "p/oracle", "p/weights-mean", "--repo", str(repo), "--csv"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 2 * 4

    assert main(["scratch", "--like", "p/oracle", "--repo", str(repo), "--no-progress"]) == 0
    assert (
        main(
            [
                "scratch",
                "--like",
                "p/oracle",
                "--equal",
                "--repo",
                str(repo),
                "--no-progress",
                "--epochs",
                "0",
            ]
        )
        == 0
    )
    capsys.readouterr()
    shape = dbx.open("p/oracle", repo=repo).results["config"]
    scratch = dbx.open(f"scratch/pruned-shape/{'-'.join(map(str, shape))}/0", repo=repo)
    assert list(scratch.params["config"]) == list(shape)
    assert scratch.params["train"]["epochs"] == 2  # the source network's training budget
    assert "test_acc" in scratch.results
    equal = dbx.open("scratch/equal/1-1-1/0", repo=repo)  # 2 blocks left -> (1, 1, 1)
    assert equal.params["train"]["epochs"] == 0  # --epochs 0 is kept, not replaced


def test_scratch_trains_the_exact_pruned_shape(repo, tmp_path, capsys):
    """A pruned downsampling block keeps its shortcut: the scratch model must too."""
    torch.manual_seed(1)
    pruned = ResNet((1, 1, 2), num_classes=4)
    pruned.remove_block(2)  # the first block of group 3: its 1x1 shortcut stays
    save_model(pruned, tmp_path / "pruned.pt")
    params = {"dataset": DATASET, "train": {"epochs": 1}}
    with dbx.create("p/manual", kind="prune", params=params, repo=repo) as exp:
        exp.attach(tmp_path / "pruned.pt", name="model.pt")
    assert main(["scratch", "--like", "p/manual", "--repo", str(repo), "--no-progress"]) == 0
    capsys.readouterr()
    (scratch,) = dbx.Repository(repo).experiments(prefix="scratch/")
    trained = load_model(scratch.attachment_path("model.pt"))
    assert count_params(trained) == count_params(pruned) != count_params(ResNet((1, 1, 1), 4))
    assert trained.removed == [2]


def test_fine_tuning_flags_reach_the_training_settings(repo, monkeypatch, capsys):
    used = []

    def recording_fit(model, splits, train_cfg, **kwargs):
        used.append(train_cfg)
        return FitResult(best_epoch=0, best_val_acc=0.0, test_acc=0.0, epochs_run=0, seconds=0.0)

    monkeypatch.setattr(loop_module, "fit", recording_fit)
    flags = ["--noise", "0.25", "--freeze-classifier", "--constant-lr", "--target-blocks", "1"]
    assert prune_cli(repo, *flags) == 0, capsys.readouterr().err
    (train_cfg,) = used
    assert train_cfg.noise_eta == 0.25 and train_cfg.freeze_classifier
    assert train_cfg.lr == 0.001 and train_cfg.milestones == ()
    assert (train_cfg.epochs, train_cfg.batch_size) == (1, 32)


def test_default_name_uses_the_normalised_schedule(repo, capsys):
    assert prune_cli(repo, "--target-blocks", "1", "--schedule", " AT:1 + Threshold:0.5") == 0
    assert "prune/train/tiny/oracle/at-1-threshold-0.5" in experiments(repo)


def test_prune_from_a_training_checkpoint(repo, tmp_path, capsys):
    torch.manual_seed(3)
    save_model(ResNet((1, 1, 2), num_classes=4), tmp_path / "e0.pt")
    with dbx.create("train/ckpt", kind="train", params={"dataset": DATASET}, repo=repo) as exp:
        exp.attach(tmp_path / "e0.pt", name="checkpoints/epoch-0000.pt")
        exp.attach(tmp_path / "e0.pt", name="model.pt")
    base = ["prune", "--from", "train/ckpt", "--repo", str(repo), "--target-blocks", "1", *FAST]
    assert main([*base, "--checkpoint", "7"]) == 2
    assert "no checkpoint of epoch 7; its checkpoints: 0" in capsys.readouterr().err
    assert main([*base, "--checkpoint", "0", "--name", "p/e0"]) == 0
    source = dbx.open("p/e0", repo=repo).params["source"]
    assert source["checkpoint"] == 0 and source["attachment"] == "checkpoints/epoch-0000.pt"
    assert main([*base, "--checkpoint", "0", "--from", str(tmp_path / "e0.pt")]) == 2
    assert "--checkpoint picks a checkpoint of an experiment" in capsys.readouterr().err


def test_bad_sources_and_flags(repo, capsys):
    assert main(["prune", "--from", "nowhere", "--repo", str(repo), "--target-blocks", "1"]) == 2
    assert "neither a checkpoint file nor an experiment" in capsys.readouterr().err
    assert prune_cli(repo, "--target-size", "resnet20", "--milestones", "x") == 2
    assert "--milestones" in capsys.readouterr().err
    assert main(["prune", "--repo", str(repo)]) == 2
    assert "--from SOURCE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--target-blocks", "99"], "impossible"),
        (["--target-blocks", "0"], "impossible"),
        (["--target-left", "6"], "impossible"),
        (["--target-params", "5"], "every block removed"),
        (["--target-params", "10000000"], "already has"),
        (["--target-params", "1e7"], "already has"),  # the same budget, written shorter
        (["--target-macs", "10000000000"], "already has"),
        (["--target-params", "70000", "--schedule", "uniform:2"], "block-count target"),
        (["--target-blocks", "2", "--lr", "-1", "--schedule", "once"], "lr"),
        (["--target-blocks", "2", "--batch-size", "0"], "batch_size"),
        (["--target-blocks", "2", "--milestones", "0"], "milestone"),
        (["--target-blocks", "2", "--noise", "nan"], "noise"),
        (["--target-blocks", "2", "--epochs", "0"], "--epochs"),
        (["--target-blocks", "2", "--device", "tpu"], "device"),
        (["--target-blocks", "2", "--device", "tpu", "--schedule", "none"], "device"),
        (["--target-blocks", "2", "--name", "a//b"], "empty part"),
        (["--target-blocks", "2", "--recompute-every", "-1"], "--recompute-every"),
    ],
)
def test_bad_flags_create_nothing_and_spend_no_compute(repo, monkeypatch, capsys, flags, message):
    def no_compute(*args, **kwargs):
        raise AssertionError("compute was spent before the flags were checked")

    monkeypatch.setattr(loop_module, "fit", no_compute)
    monkeypatch.setattr(loop_module, "evaluate", no_compute)
    monkeypatch.setattr(loop_module.saliency, "compute", no_compute)
    before = experiments(repo)
    assert prune_cli(repo, *flags) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("squeezr: error: ") and err.count("\n") == 1
    assert experiments(repo) == before == ["train/tiny"]


def test_budgets_must_be_whole_numbers(repo, capsys):
    with pytest.raises(SystemExit):
        prune_cli(repo, "--target-params", "1.5e-3")
    assert "expected a whole number such as 850000 or 8.5e5" in capsys.readouterr().err


def test_selection_on_images_the_network_trained_on_is_warned_about(repo, capsys):
    args = ["--target-blocks", "1", "--schedule", "none", "--selection", "prune"]
    assert prune_cli(repo, *args) == 0
    err = capsys.readouterr().err
    assert "warning: --selection prune, but train/tiny was trained without a held-out" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_a_gpu_creates_nothing(repo, capsys):
    assert prune_cli(repo, "--target-blocks", "2", "--device", "cuda") == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert experiments(repo) == ["train/tiny"]


def test_resume_checks_before_it_starts_a_run(repo, capsys):
    train = dbx.open("train/tiny", repo=repo)
    runs = train.run_numbers()
    assert main(["prune", "--resume", "train/tiny", "--repo", str(repo), "--no-progress"]) == 2
    assert "is not a pruning run" in capsys.readouterr().err
    assert dbx.open("train/tiny", repo=repo).run_numbers() == runs

    assert prune_cli(repo, "--target-blocks", "1", "--schedule", "none", "--name", "p/done") == 0
    done_runs = dbx.open("p/done", repo=repo).run_numbers()
    capsys.readouterr()
    # as `squeezr train --resume` of a finished run: a note, the results, no new run
    assert main(["prune", "--resume", "p/done", "--repo", str(repo), "--json"]) == 0
    out, err = capsys.readouterr()
    assert "has already finished" in err
    assert json.loads(out)["blocks_removed"] == 1
    assert dbx.open("p/done", repo=repo).run_numbers() == done_runs


def test_train_then_prune_workflow(tmp_path, monkeypatch, capsys):
    """`squeezr train ... --name base` then `squeezr prune --from base`: the pruning run reads
    the training's model, checkpoints and data options (subset, held-out pruning set)."""
    repo = str(tmp_path / "repo")
    train = ["train", "--config", "1,1,1", "--dataset", "synthetic", "--epochs", "1"]
    train += ["--train-images", "100", "--pruning-set", "--checkpoint-every", "1"]
    train += ["--device", "cpu", "--no-progress", "--repo", repo, "--name", "base"]
    assert main(train) == 0, capsys.readouterr().err
    seen = []

    def recording_fit(model, splits, train_cfg, **kwargs):
        seen.append(splits)
        return FitResult(best_epoch=0, best_val_acc=0.0, test_acc=0.0, epochs_run=0, seconds=0.0)

    monkeypatch.setattr(loop_module, "fit", recording_fit)
    for checkpoint in ([], ["--checkpoint", "1"]):
        args = ["prune", "--from", "base", "--repo", repo, "--target-blocks", "1", *FAST]
        assert main([*args, *checkpoint]) == 0, capsys.readouterr().err
    splits = seen[-1]
    assert len(splits.train) == 100 and splits.prune is not None  # as the training had it
    runs = list(dbx.Repository(repo).experiments(kind="prune"))
    assert sorted(e.params["source"]["attachment"] for e in runs) == [
        "checkpoints/epoch-0001.pt",
        "model.pt",
    ]
    assert all(e.params["dataset"]["train_images"] == 100 for e in runs)


def test_dataset_flags_override_only_the_options_they_name(tmp_path, monkeypatch, capsys):
    """--dataset/--data-dir start from what the training recorded: a pruning set held out by
    `squeezr train --pruning-set` and a --train-images subset stay as they were."""
    monkeypatch.chdir(tmp_path)
    repo = str(tmp_path / "repo")
    train = ["train", "--config", "1,1,1", "--dataset", "synthetic", "--epochs", "0"]
    train += ["--train-images", "100", "--pruning-set", "--device", "cpu", "--no-progress"]
    assert main([*train, "--repo", repo, "--name", "base"]) == 0, capsys.readouterr().err
    seen = []

    def recording_fit(model, splits, train_cfg, **kwargs):
        seen.append(splits)
        return FitResult(best_epoch=0, best_val_acc=0.0, test_acc=0.0, epochs_run=0, seconds=0.0)

    monkeypatch.setattr(loop_module, "fit", recording_fit)
    args = ["prune", "--from", "base", "--repo", repo, "--target-blocks", "1", *FAST]
    assert main([*args, "--dataset", "Synthetic", "--name", "p/ds"]) == 0, capsys.readouterr().err
    assert len(seen[-1].train) == 100 and seen[-1].prune is not None
    recorded = dbx.open("p/ds", repo=repo).params["dataset"]
    assert recorded == {"name": "synthetic", "pruning_set": True, "train_images": 100}
    assert main([*args, "--data-dir", "d", "--name", "p/dir"]) == 0, capsys.readouterr().err
    recorded = dbx.open("p/dir", repo=repo).params["dataset"]
    assert recorded["data_dir"] == str(tmp_path / "d")  # absolute: resumable from anywhere
    assert recorded["pruning_set"] is True and recorded["train_images"] == 100
    assert seen[-1].prune is not None


def _killed_run(repo, monkeypatch, name, *flags):
    """A pruning run killed in its first fine-tuning loop (its resume state already saved)."""

    def dying_fit(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(loop_module, "fit", dying_fit)
        settings = ["--target-blocks", "2", "--schedule", "every:1", "--method", "random"]
        assert prune_cli(repo, *settings, *flags, "--name", name) == 130
    return dbx.open(name, repo=repo)


def _write_torch_list(path):
    torch.save([1, 2, 3], path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda path: path.write_bytes(b"garbage"), "cannot read pruning resume state"),
        (_write_torch_list, "is not a pruning resume state"),
    ],
)
def test_a_damaged_resume_state_is_refused_before_a_run_starts(
    repo, monkeypatch, capsys, damage, message
):
    from squeezr.prune import STATE_FILE

    killed = _killed_run(repo, monkeypatch, "p/damaged")
    damage(killed.path / STATE_FILE)
    runs = killed.run_numbers()
    capsys.readouterr()
    for _ in range(2):
        assert main(["prune", "--resume", "p/damaged", "--repo", str(repo), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert message in err and "start" in err and err.count("\n") == 1
    assert dbx.open("p/damaged", repo=repo).run_numbers() == runs  # no failed runs added


def test_resume_may_change_the_device_and_keeps_it_otherwise(repo, monkeypatch, capsys):
    _killed_run(repo, monkeypatch, "p/moved")  # recorded with --device cpu
    used = []
    real_fit = loop_module.fit

    def recording_fit(model, splits, train_cfg, **kwargs):
        used.append(train_cfg.device)
        return real_fit(model, splits, train_cfg, **kwargs)

    monkeypatch.setattr(loop_module, "fit", recording_fit)
    resume = ["prune", "--resume", "p/moved", "--repo", str(repo), "--no-progress"]
    assert main([*resume, "--device", "auto"]) == 0, capsys.readouterr().err
    assert used == ["auto", "auto"]  # both steps' loops, on the device the resume asked for
    assert dbx.open("p/moved", repo=repo).results["blocks_removed"] == 2
    _killed_run(repo, monkeypatch, "p/kept")
    used.clear()
    assert main(["prune", "--resume", "p/kept", "--repo", str(repo), "--no-progress"]) == 0
    assert used == ["cpu", "cpu"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_run_started_on_a_gpu_resumes_on_a_cpu_as_the_error_says(repo, monkeypatch, capsys):
    killed = _killed_run(repo, monkeypatch, "p/gpu")
    meta = json.loads((killed.path / "meta.json").read_text())
    meta["params"]["prune"]["device"] = "cuda"  # as a run started on a GPU machine records it
    (killed.path / "meta.json").write_text(json.dumps(meta))
    capsys.readouterr()
    resume = ["prune", "--resume", "p/gpu", "--repo", str(repo), "--no-progress"]
    assert main(resume) == 2
    assert "use --device cpu" in capsys.readouterr().err
    assert main([*resume, "--device", "cpu"]) == 0, capsys.readouterr().err
    assert dbx.open("p/gpu", repo=repo).results["blocks_removed"] == 2


def test_scratch_uses_the_source_recipe_and_resumes_like_a_training_run(
    tmp_path, monkeypatch, capsys
):
    """A scratch baseline is a training run like any other: the training recipe of the network
    it compares with (only epochs, seed and device replaced), the exact pruned shape, and
    `squeezr train --resume` continues it after a kill."""
    import squeezr.train

    repo = str(tmp_path / "repo")
    train = ["train", "--config", "1,1,1", "--dataset", "synthetic", "--train-images", "64"]
    train += ["--epochs", "1", "--lr", "0.05", "--batch-size", "16", "--milestones", "none"]
    train += ["--stochastic-depth", "0.1", "--device", "cpu", "--no-progress"]
    assert main([*train, "--repo", repo, "--name", "base"]) == 0, capsys.readouterr().err
    base = dbx.open("base", repo=repo)
    pruned = load_model(base.attachment_path("model.pt"))
    pruned.remove_block(1)  # downsampling: its shortcut stays, unlike in ResNet((1, 0, 1))
    save_model(pruned, tmp_path / "pruned.pt")
    source = {"kind": "experiment", "id": base.id, "name": base.name}
    params = {"source": source, "dataset": {"name": "synthetic", "train_images": 64}}
    with dbx.create("p/manual", kind="prune", params=params, repo=repo) as exp:
        exp.attach(tmp_path / "pruned.pt", name="model.pt")

    real_fit = squeezr.train.fit

    def killed_after_epoch_1(*args, **kwargs):
        def stop(epoch, row):
            raise KeyboardInterrupt

        return real_fit(*args, on_epoch_end=stop, **kwargs)

    monkeypatch.setattr(squeezr.train, "fit", killed_after_epoch_1)
    scratch = ["scratch", "--like", "p/manual", "--epochs", "2", "--seed", "3", "--repo", repo]
    assert main([*scratch, "--no-progress"]) == 130
    monkeypatch.setattr(squeezr.train, "fit", real_fit)
    name = "scratch/pruned-shape/1-0-1/3"
    recorded = dbx.open(name, repo=repo).params
    assert recorded["dataset"] == "synthetic" and recorded["train_images"] == 64
    recipe = recorded["train"]
    assert (recipe["epochs"], recipe["seed"], recipe["device"]) == (2, 3, "auto")
    assert (recipe["lr"], recipe["batch_size"], recipe["milestones"]) == (0.05, 16, [])
    assert recipe["stochastic_depth"] == 0.1
    capsys.readouterr()
    resume = ["train", "--resume", "--name", name, "--repo", repo, "--device", "cpu"]
    assert main([*resume, "--no-progress", "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["epochs"] == 2
    trained = load_model(dbx.open(name, repo=repo).attachment_path("model.pt"))
    assert trained.spec() == pruned.spec()
