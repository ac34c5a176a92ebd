"""Paper figures of a (tiny) run: every figure is built from the run's own numbers, and writing
them without a browser still gives the HTML and a message that says how to get the rest."""

import pytest

from workbench.app.experiment import ExperimentConfig, run_experiment
from workbench.data.attributes import make_attribute
from workbench.evaluation.comparison import EvalConfig
from workbench.judges.offline import FunctionJudge
from workbench.viz.figures import FIGURE_NAMES, paper_figures, write_figures

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_run(tiny_model, tmp_path_factory):
    attribute = make_attribute("talky", "Says anything.", ["You talk a lot."],
                               [f"Question {i} about things?" for i in range(30)], lambda r: 70.0,
                               paraphrases=["Be talkative."])
    config = ExperimentConfig(n_train=5, n_heldout=3, max_new_tokens=6, steps=5, methods=("Const-DiM", "A-PSR"),
                              evaluation=EvalConfig(n_validation=2, n_test=2, max_new_tokens=5, max_steps=3))
    length = FunctionJudge(lambda r: min(100.0, 3.0 * len(r)), name="length")
    return run_experiment(tiny_model, config, tmp_path_factory.mktemp("run"), attribute=attribute,
                          coherence_judge=length, triplet_coherence=FunctionJudge(lambda r: 100.0), progress=False)


def test_every_paper_figure_comes_from_the_run(tiny_model, tiny_run):
    figures = paper_figures(tiny_model, tiny_run)
    assert tuple(figures) == FIGURE_NAMES
    faith = figures["faithfulness"]
    names = {t.name for t in faith.data}
    assert {"Const-DiM", "A-PSR", "paraphrase"} <= names
    bars = figures["ta_at_c"]
    shown = {x for t in bars.data for x in t.x}
    assert shown == set(tiny_run.results["method"])
    lam = figures["lambda_tokens"]
    assert "A-PSR" in lam.layout.title.text
    with pytest.raises(IndexError, match="sample 99"):
        paper_figures(tiny_model, tiny_run, sample=99)
    with pytest.raises(ValueError, match="no steerer 'S-PSR'"):
        paper_figures(tiny_model, tiny_run, lambda_method="S-PSR")


def test_without_a_browser_the_html_is_written_and_the_reason_given(tiny_model, tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr("workbench.viz.export.find_browser", lambda: None)
    figures = paper_figures(tiny_model, tiny_run)
    written, problem = write_figures(figures, tmp_path)
    assert {p.name for p in written} == {f"{n}.html" for n in FIGURE_NAMES} | {"plotly.min.js"}
    assert problem is not None and "Chromium" in problem
    page = (tmp_path / "faithfulness.html").read_text()
    assert 'src="plotly.min.js"' in page and "https://cdn" not in page
