"""dbx import from MLflow (a file store written by mlflow itself) and TensorBoard (event
files written by tensorboard's own writer): what arrives, and that importing twice adds
nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from squeezr import dbx
from squeezr.dbx.cli import main

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")


def _import(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict]:
    assert main(["import", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_mlflow_runs_become_experiments(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path / "mlruns"
    mlflow.set_tracking_uri(store.as_uri())
    mlflow.set_experiment("resnet")
    artifact = tmp_path / "notes.txt"
    artifact.write_text("hello")
    with mlflow.start_run(run_name="lr0.1"):
        mlflow.log_param("lr", 0.1)
        mlflow.set_tag("team", "a")
        for step in range(5):
            mlflow.log_metric("loss", 1 / (step + 1), step=step)
        mlflow.log_artifact(str(artifact), artifact_path="docs")
    repo = tmp_path / "repo"
    rows = _import(capsys, "mlflow", str(store), "--prefix", "imported", "--repo", str(repo))
    assert [(r["name"], r["events_added"], r["files"]) for r in rows] == [
        ("imported/resnet/lr0.1", 5, 1)
    ]
    exp = dbx.open("imported/resnet/lr0.1", repo=repo)
    assert exp.kind == "mlflow" and exp.params["lr"] == "0.1"
    assert exp.results["loss"] == 0.2 and exp.results["mlflow_tags.team"] == "a"
    assert [e["name"] for e in exp.events()] == [f"loss/{s}" for s in range(5)]
    assert exp.attachment_path("docs/notes.txt").read_text() == "hello"
    assert exp.runs()[0]["status"] == "finished"
    again = _import(capsys, "mlflow", str(store), "--prefix", "imported", "--repo", str(repo))
    assert again[0]["events_added"] == 0 and len(exp.events()) == 5
    assert dbx.Repository(repo).verify() == []


def test_tensorboard_scalars_become_events(tmp_path: Path, capsys) -> None:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    for run in ("a", "b"):
        writer = EventFileWriter(str(tmp_path / "logs" / run))
        for step in range(4):
            value = Summary.Value(tag="train/loss", simple_value=step * (2 if run == "b" else 1))
            writer.add_event(
                Event(wall_time=1000.0 + step, step=step, summary=Summary(value=[value]))
            )
        writer.close()
    repo = tmp_path / "repo"
    rows = _import(
        capsys, "tensorboard", str(tmp_path / "logs"), "--prefix", "tb", "--repo", str(repo)
    )
    assert [(r["name"], r["events_added"]) for r in rows] == [("tb/a", 4), ("tb/b", 4)]
    b = dbx.open("tb/b", repo=repo)
    assert [e["data"]["value"] for e in b.events()] == [0, 2, 4, 6]
    assert b.results["train_loss"] == 6
    from squeezr.dbx import query

    table = query.run("train/loss/:step", repo=repo, prefix="tb/a")
    assert list(table["value"]) == [0, 1, 2, 3]
    assert (
        _import(
            capsys, "tensorboard", str(tmp_path / "logs"), "--repo", str(repo), "--prefix", "tb"
        )[0]["events_added"]
        == 0
    )


def test_bad_sources_are_one_line_errors(tmp_path: Path, capsys) -> None:
    assert main(["import", "tensorboard", str(tmp_path), "--repo", str(tmp_path / "r")]) == 2
    assert "holds no TensorBoard event files" in capsys.readouterr().err
    assert main(["import", "mlflow", str(tmp_path / "none"), "--repo", str(tmp_path / "r")]) == 2
    assert "no MLflow folder" in capsys.readouterr().err
