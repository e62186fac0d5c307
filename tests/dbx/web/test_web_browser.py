"""End to end: a real ``dbx ui`` server on 127.0.0.1 and a real headless Chromium (Debian's
chromium and chromedriver, through Selenium): browse, search, open, compare, plot, edit a
note, watch a live plot grow while another process logs, and the error pages. Each test
writes screenshots of the pages it visits under its tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from web_sample import TOKEN, build_repository

from squeezr import dbx

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
        reason="needs Debian's chromium and chromium-driver (apt install chromium-driver)",
    ),
]
MAIN = "from squeezr.dbx.cli import main; raise SystemExit(main())"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> dbx.Repository:
    return build_repository(tmp_path_factory.mktemp("browser") / "experiments")


@pytest.fixture(scope="module")
def server(repo: dbx.Repository) -> Iterator[str]:
    """``dbx ui`` started as users start it; yields its base URL (without the token)."""
    env = {**os.environ, "DBX_UI_TOKEN": TOKEN}
    env.pop("DBX_REPO", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", MAIN, "ui", "--repo", str(repo.path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    url = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if "open http://" in line:
            url = line.split("open ", 1)[1].strip()
            break
    assert url and url.endswith(f"?token={TOKEN}"), url
    try:
        yield url.split("/?", 1)[0]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1440,1000",
    ):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def ui(browser: Any, server: str, tmp_path: Path) -> Iterator[Any]:
    """The browser, logged in (the token link opened once), with ``shot(name)``."""
    browser.get(f"{server}/?token={TOKEN}")

    def shot(name: str) -> None:
        browser.execute_script("window.scrollTo(0, 0)")
        height = browser.execute_script("return document.body.scrollHeight")
        browser.set_window_size(1440, min(max(int(height) + 120, 900), 4000))
        browser.save_screenshot(str(tmp_path / f"{name}.png"))
        browser.set_window_size(1440, 1000)

    browser.shot = shot
    browser.base = server
    yield browser


def wait(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except WebDriverException:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def rows(ui: Any) -> list[Any]:
    return ui.find_elements(By.CSS_SELECTOR, "table.list tbody tr td.name")


def chart_ready(ui: Any) -> Any:
    figure = ui.find_element(By.CSS_SELECTOR, "figure.chart")
    wait(lambda: figure.get_attribute("data-ready"), what="the chart")
    assert ui.find_elements(By.CSS_SELECTOR, "figure.chart canvas"), "no chart drawn"
    return figure


def test_browse_tree_search_and_sort(ui: Any) -> None:
    assert ui.current_url.endswith("/experiments")  # the token left the URL
    assert len(rows(ui)) == 8
    ui.shot("01-experiments")
    ui.find_element(By.XPATH, "//nav[@class='tree']//a[span[.='prune']]").click()
    wait(lambda: "prefix=prune" in ui.current_url, what="the tree link")
    assert len(rows(ui)) == 6
    assert "6 done" in ui.find_element(By.CSS_SELECTOR, ".summary").text
    box = ui.find_element(By.NAME, "where")
    box.send_keys("params.method == 'oracle' and results.best_val_acc > 0")
    box.submit()
    wait(lambda: "where=" in ui.current_url, what="the search")
    assert [r.text for r in rows(ui)] == ["prune/oracle/s0", "prune/oracle/s1", "prune/oracle/s2"]
    shared = ui.current_url
    ui.find_element(By.CSS_SELECTOR, "a.sort[href*='sort=-results.best_val_acc']").click()
    wait(lambda: "sort=-results.best_val_acc" in ui.current_url, what="sorting")
    accuracies = [
        float(row.find_elements(By.CSS_SELECTOR, "td.num")[-2].text)
        for row in ui.find_elements(By.CSS_SELECTOR, "table.list tbody tr")
    ]
    assert accuracies == sorted(accuracies, reverse=True) and len(accuracies) == 3
    ui.shot("02-search-sorted")
    ui.get(shared)  # a shared URL shows the same view
    assert len(rows(ui)) == 3


def test_open_an_experiment(ui: Any, repo: dbx.Repository) -> None:
    exp = next(repo.experiments(prefix="prune/oracle/s1"))
    ui.find_element(By.LINK_TEXT, "prune/oracle/s1").click()
    wait(lambda: f"/e/{exp.id}" in ui.current_url, what="the experiment page")
    page = ui.find_element(By.TAG_NAME, "main").text
    for expected in ("optimizer.lr", "best_val_acc", "Command to run it again", "model.txt"):
        assert expected in page
    assert exp.attachments["model.txt"]["sha256"] in page
    chart_ready(ui)
    link = ui.find_element(By.LINK_TEXT, "model.txt").get_attribute("href")
    body = ui.execute_async_script(
        "fetch(arguments[0]).then(r => r.text()).then(arguments[1])", link
    )
    assert body == "weights " * 100
    ui.shot("03-experiment")


def test_edit_notes_persist(ui: Any, repo: dbx.Repository) -> None:
    exp = next(repo.experiments(prefix="prune/l1norm/s0"))
    ui.get(f"{ui.base}/e/{exp.id}")
    ui.find_element(By.CSS_SELECTOR, ".notes-edit summary").click()
    box = ui.find_element(By.CSS_SELECTOR, ".notes-edit textarea")
    box.clear()
    box.send_keys("## Verdict\n\nLR too **high**; <script>x()</script> retry with 0.05.")
    ui.find_element(By.CSS_SELECTOR, ".notes-edit button").click()
    wait(
        lambda: ui.find_element(By.CSS_SELECTOR, ".notes-view h2").text == "Verdict",
        what="the saved note",
    )
    ui.refresh()
    view = ui.find_element(By.CSS_SELECTOR, ".notes-view")
    assert "LR too high" in view.text and "<script>x()</script>" in view.text  # shown, not run
    assert view.find_element(By.TAG_NAME, "strong").text == "high"
    assert "retry with 0.05" in dbx.open(exp.id, repo=repo).notes
    ui.shot("04-notes")


def test_compare_and_find_like(ui: Any) -> None:
    ui.get(f"{ui.base}/experiments?prefix=prune")
    boxes = ui.find_elements(By.CSS_SELECTOR, "input[name=id]")
    boxes[0].click()
    boxes[4].click()
    button = ui.find_element(By.ID, "compare-button")
    assert button.text == "Compare 2 selected"
    button.click()
    wait(lambda: "/compare?" in ui.current_url, what="the compare page")
    diff = ui.find_element(By.CSS_SELECTOR, "table.diff").text
    assert "params.method" in diff and "params.seed" in diff and "results.best_val_acc" in diff
    chart_ready(ui)
    legend = ui.find_element(By.CSS_SELECTOR, ".u-legend").text
    assert "prune/l1norm/s0" in legend and "prune/oracle/s1" in legend
    ui.shot("05-compare")
    ui.find_elements(By.LINK_TEXT, "find like this one")[0].click()
    wait(lambda: "/like/" in ui.current_url, what="the like page")
    first = ui.find_element(By.CSS_SELECTOR, "table.list tbody tr")
    assert first.find_element(By.CSS_SELECTOR, "td.num").text == "1"  # one param differs
    ui.shot("06-like")


def test_plot_a_query(ui: Any) -> None:
    ui.get(f"{ui.base}/plot")
    box = ui.find_element(By.NAME, "q")
    box.send_keys("train/epoch/:epoch/eval | select exp.name, params.method, epoch, val_acc")
    box.submit()
    wait(lambda: "q=" in ui.current_url, what="the plot")
    chart_ready(ui)
    group = ui.find_element(By.NAME, "group")
    group.find_element(By.CSS_SELECTOR, "option[value='params.method'], option").click()
    for option in group.find_elements(By.TAG_NAME, "option"):
        if option.text == "params.method":
            option.click()
    ui.find_element(By.CSS_SELECTOR, ".plot-form button").click()
    wait(lambda: "group=params.method" in ui.current_url, what="grouping")
    chart_ready(ui)
    legend = ui.find_element(By.CSS_SELECTOR, ".u-legend").text
    assert "oracle" in legend and "l1norm" in legend
    ui.shot("07-plot")


def test_live_plot_gains_points(ui: Any, repo: dbx.Repository, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from squeezr import dbx
        with dbx.create("live/run", "train", {{"lr": 0.1}}, repo={str(repo.path)!r}) as exp:
            for step in range(3):
                exp.log(f"fit/step/{{step}}", loss=1.0 / (step + 1))
            exp.flush()
            print("started", flush=True)
            for step in range(3, 200):
                time.sleep(0.25)
                exp.log(f"fit/step/{{step}}", loss=1.0 / (step + 1))
                exp.flush()
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "started"
        ui.get(f"{ui.base}/plot?q=fit/step/:step&prefix=live/&live=1")
        figure = chart_ready(ui)
        first = int(figure.get_attribute("data-points"))
        wait(
            lambda: int(figure.get_attribute("data-points")) >= first + 4,
            timeout=30,
            what="the live plot to gain points",
        )
        ui.shot("08-live-plot")
        exp = next(repo.experiments(prefix="live/run"))
        ui.get(f"{ui.base}/e/{exp.id}")  # its page: running, with a live chart of its log
        assert "running" in ui.find_element(By.CSS_SELECTOR, "h1 .pill").text
        figure = chart_ready(ui)
        assert figure.get_attribute("data-live")
        first = int(figure.get_attribute("data-points"))
        wait(
            lambda: int(figure.get_attribute("data-points")) > first,
            timeout=30,
            what="the experiment page's chart to gain points",
        )
        ui.shot("09-live-experiment")
    finally:
        writer.kill()
        writer.wait()


def test_error_pages(ui: Any, server: str) -> None:
    ui.get(f"{server}/experiments?where=params.lr <")
    text = ui.find_element(By.CSS_SELECTOR, ".error-box").text
    assert "Cannot show this page" in text and "Traceback" not in ui.page_source
    ui.shot("10-error-query")
    ui.get(f"{server}/e/0123456789ab")
    assert "no experiment '0123456789ab'" in ui.find_element(By.CSS_SELECTOR, ".message").text
    ui.shot("11-error-unknown")
    ui.get(f"{server}/plot?q=train/epoch/:epoch | group (")
    assert "query syntax error" in ui.find_element(By.CSS_SELECTOR, ".message").text
    ui.delete_all_cookies()
    ui.get(f"{server}/experiments")
    assert "Access token needed" in ui.find_element(By.TAG_NAME, "h1").text
    ui.shot("12-error-token")
    box = ui.find_element(By.NAME, "token")  # pasting the token opens the page
    box.send_keys(TOKEN)
    box.submit()
    wait(lambda: ui.find_elements(By.CSS_SELECTOR, "table.list"), what="the list after login")
    assert "token" not in ui.current_url
