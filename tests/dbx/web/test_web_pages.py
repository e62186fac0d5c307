"""Every page of the web UI in both forms, HTML and its ``.json`` twin, through an ASGI test
client over the sample repository; the access token; error pages."""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path

import pandas as pd
import pytest
from starlette.testclient import TestClient
from web_sample import TOKEN

from squeezr import dbx
from squeezr.dbx.cli import main as dbx_main
from squeezr.dbx.server.web import LocalSource, create_app, plotdata
from squeezr.dbx.server.web.render import HERE, VENDOR


def exp_id(repo: dbx.Repository, name: str) -> str:
    return next(repo.experiments(prefix=name)).id


# --- the list and the tree ---------------------------------------------------------------


def test_experiments_json_counts_states_and_tree(client: TestClient) -> None:
    data = client.get("/experiments.json").json()
    assert data["total"] == 8
    assert data["states"] == {"planned": 1, "done": 6, "failed": 1}
    assert data["kinds"] == {"prune": 6, "train": 2}
    top = {node["path"]: node for node in data["tree"]}
    assert top["prune"]["count"] == 6 and top["train"]["states"] == {"planned": 1, "failed": 1}
    assert "params.method" in data["columns"] and "results.best_val_acc" in data["columns"]


def test_tree_opens_along_the_selected_prefix(client: TestClient) -> None:
    data = client.get("/experiments.json", params={"prefix": "prune/oracle"}).json()
    paths = [node["path"] for node in data["tree"]]
    assert paths[:4] == ["prune", "prune/l1norm", "prune/oracle", "prune/oracle/s0"]
    assert [e["name"] for e in data["experiments"]] == [f"prune/oracle/s{i}" for i in range(3)]
    assert next(n for n in data["tree"] if n["path"] == "prune/oracle")["selected"]


def test_where_sort_and_columns(client: TestClient) -> None:
    data = client.get(
        "/experiments.json",
        params={
            "where": "params.optimizer.lr == 0.1",
            "sort": "-results.best_val_acc",
            "columns": "results.best_val_acc",
        },
    ).json()
    values = [row["cells"][0] for row in data["experiments"]]
    assert data["total"] == 4 and values == sorted(values, reverse=True)


def test_experiments_html_has_the_rows_and_sort_links(client: TestClient) -> None:
    html = client.get("/experiments", params={"prefix": "prune"}).text
    assert html.count('name="id" value=') == 6
    assert "prune/oracle/s2" in html and "train/planned" not in html.split("<table")[1]
    assert "sort=-results.best_val_acc" in html  # results sort best-first on first click


def test_bad_where_is_a_clear_error_in_both_forms(client: TestClient) -> None:
    response = client.get("/experiments.json", params={"where": "params.lr <"})
    assert response.status_code == 400 and "bad expression" in response.json()["error"]
    response = client.get("/experiments", params={"where": "param.lr < 1"})
    assert response.status_code == 400 and "not a field of an experiment" in response.text
    assert "Traceback" not in response.text
    response = client.get("/experiments", params={"offset": "x"})
    assert response.status_code == 400 and "whole number" in response.text


# --- one experiment ----------------------------------------------------------------------


def test_experiment_json(client: TestClient, sample: dbx.Repository) -> None:
    ref = exp_id(sample, "prune/oracle/s1")
    data = client.get(f"/e/{ref}.json").json()
    assert data["status"] == "done" and data["flat_params"]["optimizer.lr"] == 0.1
    run = data["runs"][0]
    assert run["status"] == "finished" and "# dbx experiment" in run["command"]
    assert (
        data["attachments"]["model.txt"]["sha256"] == hashlib.sha256(b"weights " * 100).hexdigest()
    )
    assert data["progress"]["epoch"]["n"] == 5
    assert data["events"]["patterns"]["train/epoch/*/eval"] == 5
    assert data["last_events"][-1]["name"].startswith("progress/")
    assert data["plots"][0] == {"query": "train/epoch/:epoch/eval", "x": "epoch"}


def test_experiment_html_shows_runs_attachments_and_failed_runs(
    client: TestClient, sample: dbx.Repository
) -> None:
    html = client.get(f"/e/{exp_id(sample, 'prune/oracle/s1')}").text
    assert "Command to run it again" in html and "model.txt" in html
    failed = client.get(f"/e/{exp_id(sample, 'train/base')}").text
    assert "RuntimeError: diverged" in failed and "failed" in failed
    planned = client.get(f"/e/{exp_id(sample, 'train/planned')}").text
    assert "Planned: no run yet." in planned


def test_unknown_experiment(client: TestClient) -> None:
    response = client.get("/e/0123456789ab")
    assert response.status_code == 404 and "no experiment &#39;0123456789ab&#39;" in response.text
    assert client.get("/e/0123456789ab.json").json()["status"] == 404


def test_attachment_download_and_unknown_file(client: TestClient, sample: dbx.Repository) -> None:
    ref = exp_id(sample, "prune/oracle/s0")
    response = client.get(f"/e/{ref}/files/model.txt")
    assert response.status_code == 200 and response.content == b"weights " * 100
    assert client.get(f"/e/{ref}/files/nope.bin").status_code == 404
    assert client.get(f"/e/{ref}/files/../meta.json").status_code == 404


def test_notes_are_saved_and_rendered_safely(client: TestClient, sample: dbx.Repository) -> None:
    ref = exp_id(sample, "prune/l1norm/s2")
    text = "# Why\n\n<script>alert(1)</script> [bad](javascript:alert(1)) **ok**"
    response = client.post(f"/e/{ref}/notes", data={"text": text}, follow_redirects=False)
    assert response.status_code == 303
    assert dbx.open(ref, repo=sample).notes == text
    html = client.get(f"/e/{ref}").text
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript:' not in html and "<strong>ok</strong>" in html
    part = client.post(f"/e/{ref}/notes", data={"text": "short"}, headers={"HX-Request": "1"})
    assert part.text.lstrip().startswith('<div id="notes-box">') and "short" in part.text


def test_progress_part_refreshes_only_while_running(
    client: TestClient, sample: dbx.Repository
) -> None:
    html = client.get(f"/e/{exp_id(sample, 'prune/oracle/s0')}/progress").text
    assert "5 / 5" in html and "hx-trigger" not in html


# --- compare, like ----------------------------------------------------------------------


def test_compare_both_forms(client: TestClient, sample: dbx.Repository) -> None:
    a, b = exp_id(sample, "prune/oracle/s0"), exp_id(sample, "prune/l1norm/s2")
    data = client.get("/compare.json", params=[("id", a), ("id", b)]).json()
    keys = [row["key"] for row in data["diff"]]
    assert {"params.method", "params.seed", "params.optimizer.lr"} <= set(keys)
    assert "params.epochs" not in keys
    assert [row["key"] for row in data["results"]] == ["best_val_acc", "blocks_removed"]
    html = client.get("/compare", params={"id": f"{a},{b}"}).text
    assert "What differs" in html and "data-plot=" in html and "group=exp.name" in html


def test_compare_needs_two(client: TestClient, sample: dbx.Repository) -> None:
    response = client.get("/compare", params={"id": exp_id(sample, "prune/oracle/s0")})
    assert response.status_code == 400 and "at least two experiments" in response.text


def test_like_orders_by_distance(client: TestClient, sample: dbx.Repository) -> None:
    data = client.get(f"/like/{exp_id(sample, 'prune/oracle/s0')}.json").json()
    distances = [row["distance"] for row in data["rows"]]
    assert distances == sorted(distances) and data["rows"][0]["name"] == "prune/l1norm/s0"
    assert "Experiments like" in client.get(f"/like/{exp_id(sample, 'prune/oracle/s0')}").text


# --- plots ------------------------------------------------------------------------------


def test_plot_json_means_and_bands(client: TestClient) -> None:
    q = "train/epoch/:epoch/eval | select exp.name, params.method, epoch, val_acc"
    data = client.get("/plot.json", params={"q": q, "group": "params.method"}).json()
    assert (data["x"], data["y"]) == ("epoch", "val_acc")
    assert [s["label"] for s in data["series"]] == ["l1norm", "oracle"]
    series = data["series"][0]
    assert series["x"] == [0, 1, 2, 3, 4] and series["n"] == [3] * 5
    assert all(
        lo < m < hi for lo, m, hi in zip(series["lo"], series["mean"], series["hi"], strict=True)
    )
    assert data["points"] == 30 and not data["downsampled"]
    html = client.get("/plot", params={"q": q}).text
    assert 'data-plot="/plot.json?' in html and "<option selected>epoch</option>" in html


def test_plot_errors(client: TestClient) -> None:
    response = client.get("/plot.json", params={"q": "train/epoch/:epoch/eval | group ("})
    assert response.status_code == 400 and "query syntax error" in response.json()["error"]
    response = client.get("/plot", params={"q": "train/epoch/:epoch/eval", "group": "params.lr"})
    assert response.status_code == 400 and "select it in the query" in response.text


def test_plot_of_100000_points_is_downsampled() -> None:
    n = 100_000
    frame = pd.DataFrame({"step": range(n), "loss": [1 / (i + 1) for i in range(n)]})
    data = plotdata.series(frame, "step", "loss")
    (series,) = data["series"]
    assert data["points"] == n and data["downsampled"]
    assert 1000 < len(series["x"]) <= plotdata.MAX_POINTS
    assert series["x"] == sorted(series["x"]) and series["mean"][0] > series["mean"][-1]


# --- access, static files, the command ---------------------------------------------------


def test_token_is_required(sample: dbx.Repository) -> None:
    bare = TestClient(create_app(LocalSource(sample.path), TOKEN))
    response = bare.get("/experiments")
    assert response.status_code == 401 and "Access token needed" in response.text
    assert bare.get("/experiments.json").json()["status"] == 401
    wrong = bare.get("/experiments", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "wrong access token" in wrong.text
    login = bare.get(f"/experiments?prefix=prune&token={TOKEN}", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"].endswith("prefix=prune")
    assert "httponly" in login.headers["set-cookie"].lower()
    assert "samesite=strict" in login.headers["set-cookie"].lower()
    assert bare.get("/experiments").status_code == 200  # the cookie now carries it


def test_static_files_are_served_without_token(sample: dbx.Repository) -> None:
    bare = TestClient(create_app(LocalSource(sample.path), TOKEN))
    for path in VENDOR.values():
        assert bare.get(f"/static/{path}").status_code == 200
        assert re.search(r"-\d+\.\d+\.\d+\.", path)  # the version is in the file name
    for licence in ("htmx-2.0.11.LICENSE", "uPlot-1.6.32.LICENSE"):
        assert (HERE / "static" / "vendor" / licence).stat().st_size > 100


def test_unknown_page(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404 and "no page /nowhere" in response.text


def test_dbx_ui_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dbx_main(["ui", "--repo", str(tmp_path / "none")]) == 2
    assert "is not a dbx repository" in capsys.readouterr().err
    repo = dbx.Repository.init(tmp_path / "r")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert dbx_main(["ui", "--repo", str(repo.path), "--port", str(port)]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def test_security_headers(client: TestClient, sample: dbx.Repository) -> None:
    response = client.get("/experiments")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    ref = exp_id(sample, "prune/oracle/s0")
    download = client.get(f"/e/{ref}/files/model.txt")
    assert download.headers["content-disposition"].startswith("attachment")


def test_mounted_under_a_prefix(sample: dbx.Repository) -> None:
    """``dbx serve`` may mount the UI below its API: every link then starts with the mount."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/ui", app=create_app(LocalSource(sample.path), None))])
    client = TestClient(outer)
    html = client.get("/ui/experiments").text
    ref = exp_id(sample, "prune/oracle/s0")
    assert f'href="/ui/e/{ref}"' in html and 'src="/ui/static/app.js"' in html
    assert 'href="/ui/experiments.json"' in html
    assert client.get("/ui/static/app.js").status_code == 200
    assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/experiments"
    page = client.get(f"/ui/e/{ref}").text
    assert 'data-plot="/ui/plot.json?' in page


def test_listing_sees_changes_made_while_it_runs(tmp_path: Path) -> None:
    """The listing cache follows the files: new, changed, finished and deleted experiments."""
    import shutil

    repo = dbx.Repository.init(tmp_path / "r")
    source = LocalSource(repo.path)
    exp = dbx.create("a/one", "train", {"lr": 0.1}, repo=repo)
    first = source.summaries()
    assert [(s["name"], s["status"], s["results"]) for s in first] == [("a/one", "running", {})]
    exp.results["acc"] = 0.5
    exp.close()
    assert [(s["status"], s["results"]) for s in source.summaries()] == [("done", {"acc": 0.5})]
    other = repo.create_experiment("a/two", "train", {})
    assert [s["status"] for s in source.summaries(prefix="a/")] == ["done", "planned"]
    assert source.experiment(exp.id)["results"] == {"acc": 0.5}  # found by id
    shutil.rmtree(other)
    assert [s["name"] for s in source.summaries()] == ["a/one"]


def test_closing_a_live_plot_stops_its_listener(sample: dbx.Repository) -> None:
    """The server-sent event stream of a live plot ends its query listener when the browser
    goes away, so closed tabs do not keep polling the logs."""
    import threading
    import time

    import httpx
    import uvicorn

    stopped = threading.Event()

    class Watched(LocalSource):
        def follow(self, text, ids=None, *, interval=1.0, stop=None, **selection):  # type: ignore[no-untyped-def]
            inner = super().follow(text, ids, interval=0.2, stop=stop, **selection)
            try:
                yield from inner
            finally:
                stopped.set()

    app = create_app(Watched(sample.path), TOKEN)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}/plot/stream"
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        params = {"q": "train/epoch/:epoch/eval"}
        with httpx.stream("GET", url, params=params, headers=headers, timeout=30) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            first = next(response.iter_lines())
            assert first.startswith("data: ") and '"series"' in first
        assert stopped.wait(20), "the listener kept running after the client left"
    finally:
        server.should_exit = True
        thread.join(10)


def test_event_summary_of_lines_written_by_other_tools(tmp_path: Path) -> None:
    """The page reads event names without parsing lines dbx wrote; lines written otherwise
    (another key order, escapes) are parsed."""
    repo = dbx.Repository.init(tmp_path / "r")
    folder = repo.create_experiment("x", "train", {})
    lines = [
        '{"name":"fit/step/1","id":"1-1","ts":1.0,"run":1,"data":{"loss":1}}',
        '{"id":"1-2","name":"fit/step/2","ts":2.0,"run":1,"data":{"loss":0.5}}',
        '{"name":"odd\\"name/3","id":"1-3","ts":3.0,"run":1,"data":{}}',
    ]
    (folder / "log-1.jsonl").write_text("\n".join(lines) + "\n")
    data = LocalSource(repo.path).experiment(folder.name)
    assert data["events"] == {"total": 3, "patterns": {"fit/step/*": 2, 'odd"name/*': 1}}
    assert [e["id"] for e in data["last_events"]] == ["1-1", "1-2", "1-3"]
