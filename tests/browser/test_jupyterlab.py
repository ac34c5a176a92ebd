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

import os
import re
import time

import pytest
from browser_lab import REPO, wait_for
from browser_notebook import ERROR_WIDGET, NotebookPage
from conftest import notebooks_status

NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")
                   if not os.environ.get("WORKBENCH_BROWSER_NOTEBOOKS")  # e.g. "01,03": only those
                   or p.name[:2] in os.environ["WORKBENCH_BROWSER_NOTEBOOKS"].split(","))
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
    modified = []  # plotly's renderer adds a PNG to each figure it draws: reported, not saved
    for name in NOTEBOOKS:
        page = NotebookPage(browser, lab, f"notebooks/{name}")
        browser.shot(name.removesuffix(".ipynb"))
        dialogs = browser.js("return Array.from(document.querySelectorAll('.jp-Dialog')).map(d => d.innerText);")
        assert dialogs == [], f"{name}: {dialogs}"  # e.g. jupytext's "File Load Error" when the pair differs
        text = page.scroll_through()
        assert ERROR_WIDGET not in text, name
        assert "VBox(children" not in text, f"{name}: a stored widget output from before the hint: make notebooks"
        if name.startswith(("03_", "04_")):
            assert HINT in text, f"{name}: the stored widget cell does not say to run it"
        if browser.driver.find_elements("css selector", ".lm-TabBar-tab.jp-mod-dirty"):
            modified.append(name)
    print(f"marked modified in the browser after opening (not saved): {modified}")
    _clean(browser)


TINY_CELLS = [
    """from workbench.app.experiment import ExperimentConfig, prepare_data
from workbench.app.lambda_explorer import LambdaExplorer
from workbench.app.training_panel import TrainingPanel
from workbench.core.models import load_model
from workbench.data.attributes import make_attribute
from workbench.judges.offline import FunctionJudge
from workbench.steering import TrainConfig, train_steerer
from workbench.viz.notebook import use_notebook_renderer

use_notebook_renderer()
model = load_model("tiny-random-llama", n_layers=3, seed=0)
questions = [f"Tell me about thing number {i}, please?" for i in range(40)]
attribute = make_attribute("talky", "Says anything at all.", ["You talk a lot.", "Talk, talk, talk."], questions,
                           lambda r: 60.0 + min(40.0, len(r)), paraphrases=["Be very talkative."])
data = prepare_data(model, attribute, "tiny-run", ExperimentConfig(n_train=6, n_heldout=3, max_new_tokens=6, batch_size=8),
                    triplet_coherence=FunctionJudge(lambda r: 100.0), progress=False)
a_psr = train_steerer("psr-mse", model, data.soft_labels, layers=None, store=data.store, pairs=data.pairs,
                      attribute="talky", config=TrainConfig(steps=20), progress=False)""",
    """panel = TrainingPanel(model, data, others={"A-PSR": a_psr}, config=TrainConfig(steps=12, eval_every=4, patience=0))
panel""",
    """explorer = LambdaExplorer(model, a_psr, questions[:2], "You talk a lot.", alpha=1.0, max_new_tokens=8)
explorer.refresh()
explorer""",
]


def test_widgets_on_a_tiny_model(lab, browser, unchanged_notebooks):
    """The panel and the explorer on a random 3-layer model in a scratch notebook (under runs/,
    which git ignores): runs anywhere in seconds, so it needs no stored run."""
    import nbformat

    scratch = REPO / "runs" / "browser-tests"
    scratch.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in TINY_CELLS])
    notebook.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nbformat.write(notebook, scratch / "tiny_widgets.ipynb")
    page = NotebookPage(browser, lab, "runs/browser-tests/tiny_widgets.ipynb")
    page.run_cell(0, timeout=180)
    page.run_cell(1, timeout=60)
    page.wait_text("The loss curve appears here", 30)
    assert not any("training loss" in p["title"] for p in page.plots())
    browser.shot("panel_ready")

    page.set_text_field("steps", "4")
    page.button("Train").click()
    page.wait_text("finished 4 steps", 120)
    browser.shot("trained_4_steps")
    assert "S-PSR L1 compared" in page.text()
    header = browser.js("return Array.from(document.querySelectorAll('.widget-html-content table th'))"
                        ".map(th => th.innerText);")
    assert [h for h in header if h.startswith("relRMSE")] == ["relRMSE L1", "relRMSE L2"]
    (curve,) = [p for p in page.plots() if "training loss" in p["title"]]
    assert curve["points"] == 4 and "markers" in curve["mode"] and curve["svg"] > 0

    page.set_text_field("steps", "200000")
    page.button("Train").click()
    page.wait_text("training S-PSR L1: step", 60)
    assert page.button("Train").get_attribute("disabled") is not None
    assert "previous comparison (stale" in page.text()
    browser.shot("training_running")
    page.button("Stop").click()
    page.wait_text("stopped after", 60)
    wait_for(lambda: "compared" in page.text() and "stale" not in page.text(), 120, "the new comparison")
    stopped = int(re.search(r"stopped after (\d+) of 200000 steps", page.text()).group(1))
    (curve,) = [p for p in page.plots() if "training loss" in p["title"]]
    assert 1 <= stopped < 200000 and curve["points"] == stopped
    assert page.button("Train").get_attribute("disabled") is None
    browser.shot("stopped")

    page.run_cell(2, timeout=120)
    wait_for(lambda: [p for p in page.plots() if "(a) lambda" in p["title"]], 60, "the lambda map")
    (before,) = [p for p in page.plots() if "(a) lambda" in p["title"]]
    _move_alpha(page, "1.5")
    (after,) = [p for p in page.plots() if "(a) lambda" in p["title"]]
    assert (after["cmin"], after["cmax"]) == (before["cmin"], before["cmax"])  # one colour scale across alpha
    assert before["height"] >= 240
    browser.shot("explorer_alpha_1.5")

    # a browser reload with the kernel alive, unsaved (as in the repository, where autosave is off):
    # the page shows the file's outputs; displaying the panel again brings back its curve
    page.leave()
    page = NotebookPage(browser, lab, "runs/browser-tests/tiny_widgets.ipynb")
    page.append_and_run("panel")
    curves = wait_for(lambda: [p for p in page.plots() if "training loss" in p["title"]], 60, "the curve after a reload")
    assert [c["points"] for c in curves] == [stopped] and ERROR_WIDGET not in page.text()
    browser.shot("after_reload")
    # saved (this scratch copy only) and reloaded: the widgets come back from the live kernel with
    # their curve, nothing rerun (the FigureWidget came back empty here)
    page.save()
    page.leave()
    page = NotebookPage(browser, lab, "runs/browser-tests/tiny_widgets.ipynb")
    page.scroll_through(pause=0.5)
    curves = wait_for(lambda: [p for p in page.plots() if "training loss" in p["title"]], 60, "the curve after a reload")
    assert curves and all(c["points"] == stopped for c in curves) and ERROR_WIDGET not in page.text()
    browser.shot("after_reload_saved")
    _clean(browser)


def _move_alpha(page, target: str) -> None:
    """Two steps right on the alpha slider's handle (keyboard), then Generate; waits for the new map."""
    from selenium.webdriver.common.keys import Keys

    handle = page.slider_handle("alpha")
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)  # steps of 0.25
    wait_for(lambda: float(page.slider_readout("alpha")) == float(target), 20, f"the slider at {target}")
    page.wait_text("press Generate", 30)
    page.button("Generate").click()
    wait_for(lambda: any(f"alpha {target}" in p["title"] for p in page.plots()), 300, f"the map at alpha {target}")
    page.wait_text(f"alpha {target}: steered answer", 60)


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

    # a long run: Train disabled while it runs, the old table marked stale, Stop ends it. Joint
    # training (a forward and backward pass of the model per step): a layerwise fit of one layer
    # early-stops within seconds, before a click on Stop could reach it.
    page.choose("training", "joint (through the model)")
    page.set_text_field("steps", "400")
    page.button("Train").click()
    page.wait_text("preparing", 60)
    assert page.button("Train").get_attribute("disabled") is not None
    assert "previous comparison (stale" in page.text()
    wait_for(lambda: re.search(r"training S-PSR[^:]*L15: step [1-9]", page.text()), 600, "the first joint step")
    browser.shot("training_running")
    page.button("Stop").click()
    # "stopped after" is written once the stopped run has been compared (faithfulness on the
    # held-out triplets: minutes on a busy 2-core machine), hence the same allowance as a full run
    page.wait_text("stopped after", 600)
    wait_for(lambda: "compared" in page.text() and "stale" not in page.text(), 300, "the new comparison")
    stopped = int(re.search(r"stopped after (\d+) of 400 steps", page.text()).group(1))
    (curve,) = [p for p in page.plots() if "training loss" in p["title"]]
    assert 1 <= stopped < 400 and curve["points"] == stopped
    assert page.button("Train").get_attribute("disabled") is None
    browser.shot("stopped")

    # a browser reload with the kernel alive (autosave is off, so the page shows the stored outputs):
    # displaying the panel again shows its curve (it lives in the widget state), nothing lost
    page.leave()
    page = NotebookPage(browser, lab, "notebooks/03_train_probes.ipynb")
    page.append_and_run("panel")
    wait_for(lambda: [p for p in page.plots() if "training loss" in p["title"]], 60, "the curve after a reload")
    (curve,) = [p for p in page.plots() if "training loss" in p["title"]]
    assert curve["points"] == stopped and ERROR_WIDGET not in page.text()
    browser.shot("after_reload")
    _clean(browser)


def test_lambda_explorer_alpha_slider(lab, browser, unchanged_notebooks):
    _need_run()
    page = NotebookPage(browser, lab, "notebooks/04_lambda_over_text.ipynb")
    page.run_cell(0, timeout=600)
    page.run_cell(1, timeout=600)  # the explorer, generated once at alpha 1.75
    wait_for(lambda: len([p for p in page.plots() if "(a) lambda" in p["title"]]) == 1, 60, "the lambda map")
    browser.shot("explorer")
    assert any("drawn: L5, L15, L25, L29" in t for t in page.html_widgets())
    (before,) = [p for p in page.plots() if "(a) lambda" in p["title"]]
    assert before["height"] >= 240 and before["cmax"] is not None

    _move_alpha(page, "2.25")  # from 1.75
    browser.shot("explorer_alpha_2.25")
    (after,) = [p for p in page.plots() if "(a) lambda" in p["title"]]
    assert (after["cmin"], after["cmax"]) == (before["cmin"], before["cmax"])  # one colour scale across alpha
    assert ERROR_WIDGET not in page.text()
    _clean(browser)


def test_demo_report_draws_offline(browser, tmp_path):
    """reports/demo/index.html (``make demo``) from file:// with the network off: every figure draws.
    Without a demo run, a page written the same way (write_html, figure_html) stands in for it."""
    report = REPO / "reports" / "demo" / "index.html"
    if not report.exists():
        report = _stand_in_report(tmp_path / "index.html")
    browser.driver.execute_cdp_cmd("Network.enable", {})
    browser.driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    browser.driver.get(report.as_uri())
    plots = wait_for(lambda: browser.js(
        "const ps = Array.from(document.querySelectorAll('.js-plotly-plot'));"
        "return ps.length && ps.every(p => p.querySelector('.main-svg') && (p.data || []).length) ? ps.length : 0;"),
        60, "every figure of the report to draw")
    browser.shot("report")
    assert plots >= 3
    _clean(browser)


def _stand_in_report(path):
    import pandas as pd

    from workbench.viz.curves import faithfulness_curves, loss_curves, results_bars
    from workbench.viz.report import figure_html, write_html

    faith = pd.DataFrame({"method": ["A-PSR"] * 3 + ["paraphrase"] * 3, "layer": [0, 1, 2] * 2,
                          "rel_rmse": [0.2, 0.3, 0.4, 0.5, 0.6, 0.6]})
    results = pd.DataFrame({"method": ["A-PSR", "prompt"], "target": ["C80", "C80"], "attribute": [40.0, 90.0]})
    figures = [faithfulness_curves(faith), results_bars(results),
               loss_curves({"A-PSR": [{"step": 1, "train_loss": 1.0, "val_loss": 0.9}, {"step": 2, "train_loss": 0.8}]})]
    return write_html(path, "stand-in report", [figure_html(f, first=i == 0) for i, f in enumerate(figures)])
