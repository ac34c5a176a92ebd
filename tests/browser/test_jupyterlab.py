"""The notebooks as a user meets them: JupyterLab 4 in headless Chromium, offline.

Opens every stored notebook (nothing reads "Error displaying widget", a widget cell shows a hint
to run it), runs the training panel of notebook 3 (Train, the table's layer columns, the curve's
point count, Train disabled while running, Stop, a browser reload with the kernel alive) and the
lambda explorer of notebook 4 (the alpha slider, one colour scale across alpha), then checks that
no request left 127.0.0.1, that the console holds no error, and that ``git status`` of notebooks/
is as before. The demo report is drawn from ``file://`` with the network off.

Notebooks 3 and 4 need notebook 2's run (``runs/notebooks/pirate``, about 30 minutes to make on
2 cores: ``make notebooks``); without it those two tests are skipped, saying so.
"""

from __future__ import annotations

import re
import time

import pytest
from browser_lab import REPO, wait_for
from browser_notebook import ERROR_WIDGET, NotebookPage
from conftest import notebooks_status

NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
RUN = REPO / "runs" / "notebooks" / "pirate"
HINT = "an interactive widget; run this cell"


def _need_run():
    if not (RUN / "steerers").is_dir():
        pytest.skip(f"needs notebook 2 and 3's run in {RUN.relative_to(REPO)} (make notebooks, about 30 minutes)")


def _clean(browser) -> None:
    """No request outside 127.0.0.1 and no error in the console, over the whole test."""
    browser.collect_logs()
    assert browser.requests, "the performance log recorded no request at all"
    assert browser.outside_requests() == []
    assert browser.console_errors() == []


@pytest.fixture
def unchanged_notebooks(lab):
    before = notebooks_status()
    yield
    lab.shutdown_kernels()
    time.sleep(1)
    assert notebooks_status() == before, "opening or running a notebook changed files under notebooks/"


def test_stored_notebooks_open_without_widget_errors(lab, browser, unchanged_notebooks):
    for name in NOTEBOOKS:
        page = NotebookPage(browser, lab, f"notebooks/{name}")
        text = page.text()
        browser.shot(name.removesuffix(".ipynb"))
        assert ERROR_WIDGET not in text, name
        assert "VBox(children" not in text, name
        if name.startswith(("03_", "04_")):
            assert HINT in text, f"{name}: the stored widget cell does not say to run it"
    _clean(browser)


def test_training_panel_train_stop_reload(lab, browser, unchanged_notebooks):
    _need_run()
    page = NotebookPage(browser, lab, "notebooks/03_train_probes.ipynb")
    page.run_cell(0, timeout=600)  # model, data (reused) and the four steerers (reloaded)
    page.run_cell(1, timeout=120)  # the panel
    page.wait_text("The loss curve appears here", 30)
    assert not any("training loss" in p["title"] for p in page.plots())  # no empty figure before training
    browser.shot("panel_ready")

    page.set_text_field("steps", "4")
    page.button("Train").click()
    page.wait_text("finished 4 steps", 600)
    browser.shot("trained_4_steps")
    text = page.text()
    assert "S-PSR L15 compared" in text
    header = browser.js("return Array.from(document.querySelectorAll('.widget-html-content table th'))"
                        ".map(th => th.innerText);")
    assert [h for h in header if h.startswith("relRMSE")] == ["relRMSE L15", "relRMSE L29"]
    assert "best val loss (per layer)" in header
    (curve,) = [p for p in page.plots() if "training loss" in p["title"]]
    assert curve["points"] == 4 and curve["svg"] > 0

    # a long run: Train disabled while it runs, the old table marked stale, Stop ends it
    page.set_text_field("steps", "400")
    page.button("Train").click()
    page.wait_text("training S-PSR L15: step", 120)
    assert page.button("Train").get_attribute("disabled") is not None
    assert "previous comparison (stale" in page.text()
    browser.shot("training_running")
    page.button("Stop").click()
    page.wait_text("stopped after", 120)
    wait_for(lambda: "compared" in page.text() and "stale" not in page.text(), 300, "the new comparison")
    stopped = int(re.search(r"stopped after (\d+) of 400 steps", page.text()).group(1))
    (curve,) = [p for p in page.plots() if "training loss" in p["title"]]
    assert 1 <= stopped < 400 and curve["points"] == stopped
    assert page.button("Train").get_attribute("disabled") is None
    browser.shot("stopped")

    # a browser reload with the kernel alive: the curve is drawn again (it lives in the widget state)
    browser.driver.refresh()
    page = NotebookPage(browser, lab, "notebooks/03_train_probes.ipynb")
    wait_for(lambda: [p for p in page.plots() if "training loss" in p["title"]], 60, "the curve after a reload")
    (curve,) = [p for p in page.plots() if "training loss" in p["title"]]
    assert curve["points"] == stopped and ERROR_WIDGET not in page.text()
    browser.shot("after_reload")
    _clean(browser)


def test_lambda_explorer_alpha_slider(lab, browser, unchanged_notebooks):
    from selenium.webdriver.common.keys import Keys

    _need_run()
    page = NotebookPage(browser, lab, "notebooks/04_lambda_over_text.ipynb")
    page.run_cell(0, timeout=600)
    page.run_cell(1, timeout=600)  # the explorer, generated once at alpha 1.75
    wait_for(lambda: len([p for p in page.plots() if "(a) lambda" in p["title"]]) == 1, 60, "the lambda map")
    browser.shot("explorer")
    assert any("drawn: L5, L15, L25, L29" in t for t in page.html_widgets())
    (before,) = [p for p in page.plots() if "(a) lambda" in p["title"]]
    assert before["height"] >= 240 and before["cmax"] is not None

    handle = page.slider_handle("alpha")
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)  # 1.75 -> 2.25 in steps of 0.25
    wait_for(lambda: page.slider_readout("alpha") == "2.25", 20, "the slider at 2.25")
    page.wait_text("press Generate", 30)
    page.button("Generate").click()
    wait_for(lambda: any("alpha 2.25" in p["title"] for p in page.plots()), 300, "the map at alpha 2.25")
    page.wait_text("alpha 2.25: steered answer", 60)
    browser.shot("explorer_alpha_2.25")
    (after,) = [p for p in page.plots() if "(a) lambda" in p["title"]]
    assert (after["cmin"], after["cmax"]) == (before["cmin"], before["cmax"])  # one colour scale across alpha
    assert ERROR_WIDGET not in page.text()
    _clean(browser)


def test_demo_report_draws_offline(browser):
    report = REPO / "reports" / "demo" / "index.html"
    if not report.exists():
        pytest.skip("no demo report yet: make demo writes reports/demo/index.html")
    browser.driver.execute_cdp_cmd("Network.enable", {})
    browser.driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    browser.driver.get(report.as_uri())
    plots = wait_for(lambda: browser.js(
        "const ps = Array.from(document.querySelectorAll('.js-plotly-plot'));"
        "return ps.length && ps.every(p => p.querySelector('.main-svg') && (p.data || []).length) ? ps.length : 0;"),
        60, "every figure of the report to draw")
    browser.shot("demo_report")
    assert plots >= 3
    _clean(browser)
