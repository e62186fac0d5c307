"""The web UI served by ``dbx serve`` (SQLite): experiments synced to a real server, browsed
over HTTP with the server's own tokens (login page, cookie, read vs write scope)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serverkit import Server

from squeezr import dbx
from squeezr.dbx.sync import sync


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    """A ``dbx serve`` holding two synced experiments; yields it and tokens per scope."""
    root = tmp_path_factory.mktemp("ui")
    srv = Server(root / "server", None)
    tokens = {scope: srv.token(scope) for scope in ("read", "write")}
    srv.start()
    model = root / "model.txt"
    model.write_text("weights " * 100)
    repo = dbx.Repository.init(root / "experiments")
    for seed in range(2):
        with dbx.create(f"prune/s{seed}", "prune", {"seed": seed, "lr": 0.1}, repo=repo) as exp:
            for epoch in range(3):
                exp.log(f"train/epoch/{epoch}/eval", val_acc=0.5 + 0.1 * epoch + seed / 100)
            for _ in exp.progress(range(3), desc="epoch"):
                pass
            exp.results["best_val_acc"] = 0.7 + seed / 100
            exp.attach(model)
    os.environ["DBX_TOKEN"] = tokens["write"]
    try:
        sync(str(repo.path), srv.url)
    finally:
        del os.environ["DBX_TOKEN"]
    try:
        yield srv, tokens
    finally:
        srv.kill()


def _client(srv: Server, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=srv.url, headers=headers, timeout=60)


def test_pages_over_the_database(served: tuple[Server, dict[str, str]]) -> None:
    srv, tokens = served
    with _client(srv, tokens["read"]) as ui:
        assert ui.get("/", follow_redirects=False).headers["location"] == "/ui/experiments"
        listing = ui.get("/ui/experiments.json").json()
        rows = {row["name"]: row for row in listing["experiments"]}
        assert sorted(rows) == ["prune/s0", "prune/s1"]
        assert listing["states"] == {"done": 2} and listing["kinds"] == {"prune": 2}
        html = ui.get("/ui/experiments").text
        exp_id = rows["prune/s1"]["id"]
        assert f'href="/ui/e/{exp_id}"' in html and "prune/s1" in html
        data = ui.get(f"/ui/e/{exp_id}.json").json()
        assert data["status"] == "done" and data["params"] == {"seed": 1, "lr": 0.1}
        assert data["events"]["patterns"]["train/epoch/*/eval"] == 3
        assert data["progress"]["epoch"]["n"] == 3 and data["runs"][0]["status"] == "finished"
        assert data["last_events"][-1]["name"] == "progress/epoch"
        assert list(data["attachments"]) == ["model.txt"]
        assert data["plots"] == [{"query": "train/epoch/:epoch/eval", "x": "epoch"}]
        assert "train/epoch/:epoch/eval" in ui.get(f"/ui/e/{exp_id}").text
        blob = ui.get(f"/ui/e/{exp_id}/files/model.txt")
        assert blob.status_code == 200 and blob.content == b"weights " * 100
        assert "model.txt" in blob.headers["content-disposition"]
        plot = ui.get("/ui/plot.json", params={"q": "train/epoch/:epoch/eval", "x": "epoch"})
        assert plot.status_code == 200, plot.text
        assert "val_acc" in str(plot.json())
        bad = ui.get("/ui/plot.json", params={"q": "train/epoch/:epoch/eval | group ("})
        assert bad.status_code == 400 and "query syntax error" in bad.json()["error"]
        assert ui.get("/ui/e/ffffffffffff").status_code == 404


def test_notes_need_a_write_token(served: tuple[Server, dict[str, str]]) -> None:
    srv, tokens = served
    with _client(srv, tokens["read"]) as reader:
        exp_id = reader.get("/ui/experiments.json").json()["experiments"][0]["id"]
        refused = reader.post(f"/ui/e/{exp_id}/notes", data={"text": "nope"})
        assert refused.status_code == 403 and "write token" in refused.text
    with _client(srv, tokens["write"]) as writer:
        saved = writer.post(
            f"/ui/e/{exp_id}/notes", data={"text": "**pruned** well"}, follow_redirects=False
        )
        assert saved.status_code == 303
        assert writer.get(f"/ui/e/{exp_id}.json").json()["notes"] == "**pruned** well"
    with _client(srv, tokens["read"]) as reader:  # the API sees the same notes
        record = reader.get(f"/api/v1/experiments/{exp_id}").json()
        assert "**pruned** well" in str(record)


def test_login_page_and_cookie(served: tuple[Server, dict[str, str]]) -> None:
    srv, tokens = served
    with _client(srv) as browser:
        page = browser.get("/ui/experiments")
        assert page.status_code == 401 and "Access token needed" in page.text
        assert 'action="/ui/login"' in page.text and "Traceback" not in page.text
        assert "dbx token create" in page.text
        assert browser.get("/ui/experiments.json").json()["status"] == 401
        assert browser.get("/ui/static/app.css").status_code == 200
        wrong = browser.post("/ui/login", data={"token": "dbx_00000000_nope", "next": "/ui/"})
        assert wrong.status_code == 401 and "unknown API token" in wrong.text
        assert browser.get("/ui/experiments?token=" + tokens["read"]).status_code == 401
        login = browser.post(
            "/ui/login",
            data={"token": tokens["read"], "next": "/ui/experiments?prefix=prune"},
            follow_redirects=False,
        )
        assert login.status_code == 303
        assert login.headers["location"] == "/ui/experiments?prefix=prune"
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert browser.get("/ui/experiments").status_code == 200  # the cookie carries it
        # the cookie opens the UI only; the API still wants the header
        assert browser.get("/api/v1/experiments").status_code == 401
        elsewhere = browser.post(
            "/ui/login", data={"token": tokens["read"], "next": "https://evil.example/"}
        )
        assert elsewhere.url.path.startswith("/ui/")


def test_revoked_token_is_refused(served: tuple[Server, dict[str, str]], tmp_path: Path) -> None:
    srv, _ = served
    token = srv.token("read")
    with _client(srv, token) as ui:
        assert ui.get("/ui/experiments").status_code == 200
        srv.dbx("token", "revoke", token.split("_")[1])
        refused = ui.get("/ui/experiments")
        assert refused.status_code == 401 and "revoked" in refused.text


@pytest.mark.slow
@pytest.mark.skipif(
    not (os.path.exists("/usr/bin/chromium") and os.path.exists("/usr/bin/chromedriver")),
    reason="needs Debian's chromium and chromium-driver (apt install chromium-driver)",
)
def test_browser_logs_in_and_edits_notes(
    served: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    """Headless Chromium opens the server's address, logs in with a write token on the
    login page, opens an experiment from the list and saves a note."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    srv, tokens = served
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.add_argument("--window-size=1400,1000")
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    browser = webdriver.Chrome(options=options, service=service)
    wait = WebDriverWait(browser, 30)
    try:
        browser.get(srv.url + "/")
        assert "Access token needed" in browser.find_element(By.TAG_NAME, "h1").text
        browser.save_screenshot(str(tmp_path / "login.png"))
        for scope in ("read", "write"):
            browser.delete_all_cookies()
            browser.get(srv.url + "/")
            box = browser.find_element(By.NAME, "token")
            box.send_keys(tokens[scope])
            box.submit()
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "table.list"))
            assert browser.current_url == f"{srv.url}/ui/experiments"
            browser.find_element(By.LINK_TEXT, "prune/s1").click()
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".notes-edit summary"))
            browser.find_element(By.CSS_SELECTOR, ".notes-edit summary").click()
            text = browser.find_element(By.CSS_SELECTOR, ".notes-edit textarea")
            text.clear()
            text.send_keys(f"## Verdict\nkeep it ({scope})")
            browser.find_element(By.CSS_SELECTOR, ".notes-edit button").click()
            if scope == "read":
                error = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".form-error"))
                assert "needs a write token" in error[0].text
                browser.save_screenshot(str(tmp_path / "refused.png"))
        wait.until(lambda b: b.find_element(By.CSS_SELECTOR, ".notes-view h2").text == "Verdict")
        browser.save_screenshot(str(tmp_path / "experiment.png"))
    finally:
        browser.quit()
    with _client(srv, tokens["read"]) as reader:
        rows = reader.get("/ui/experiments.json").json()["experiments"]
        exp_id = next(row["id"] for row in rows if row["name"] == "prune/s1")
        assert reader.get(f"/ui/e/{exp_id}.json").json()["notes"] == "## Verdict\nkeep it (write)"


def test_live_plot_stream(served: tuple[Server, dict[str, str]]) -> None:
    """The live plot's server-sent events run the query through the server's listener."""
    srv, tokens = served
    params = {"q": "train/epoch/:epoch/eval", "x": "epoch", "prefix": "prune"}
    with (
        _client(srv, tokens["read"]) as ui,
        ui.stream("GET", "/ui/plot/stream", params=params) as events,
    ):
        assert events.headers["content-type"].startswith("text/event-stream")
        first = next(line for line in events.iter_lines() if line.startswith("data: "))
    data = json.loads(first.removeprefix("data: "))
    assert data["rows"] == 6 and data["y"] == "val_acc"
    assert data["series"][0]["n"] == [2.0, 2.0, 2.0]  # both experiments, per epoch
