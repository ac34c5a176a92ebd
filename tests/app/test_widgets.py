"""The notebook widgets, driven from code as a browser would drive them (no frontend needed).

A small PreparedData on the tiny model (a planted attribute, every triplet kept) feeds the
training panel; steerers trained on it feed the lambda explorer. Each test checks the panel or
explorer against the library call it stands for (train_steerer, faithfulness, generate_answers,
pair_magnitudes).
"""

from __future__ import annotations

import html
import threading
from dataclasses import replace

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from workbench.activations.deltas import pair_magnitudes
from workbench.app import lambda_explorer, steerer_comparison
from workbench.app.experiment import ExperimentConfig, faithfulness_strengths, prepare_data
from workbench.app import training_panel
from workbench.app.lambda_explorer import LambdaExplorer
from workbench.app.steerer_comparison import BEST_VAL_LOSS as BEST
from workbench.app.steerer_comparison import FINAL_TRAIN_LOSS as FINAL
from workbench.app.training_panel import TrainingPanel
from workbench.core.chat import align
from workbench.core.generation import SamplingConfig, generate_answers
from workbench.data.attributes import make_attribute
from workbench.evaluation.faithfulness import faithfulness
from workbench.judges.offline import FunctionJudge
from workbench.steering import TrainConfig, train_steerer
from workbench.steering.names import parse_method

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTIONS = [f"Tell me about thing number {i}, please?" for i in range(40)]
INSTRUCTION = "You talk a lot."
CONFIG = TrainConfig(steps=12, eval_every=4, patience=0)


@pytest.fixture(scope="module")
def data(tiny_model, tmp_path_factory):
    attribute = make_attribute("talky", "Says anything at all.", [INSTRUCTION, "Talk, talk, talk."], QUESTIONS,
                               lambda r: 60.0 + min(40.0, len(r)), paraphrases=["Be very talkative."])
    config = ExperimentConfig(n_train=6, n_heldout=3, max_new_tokens=6, batch_size=8)
    return prepare_data(tiny_model, attribute, tmp_path_factory.mktemp("widgets"), config,
                        triplet_coherence=FunctionJudge(lambda r: 100.0), progress=False)


def trained(model, data, method, layers, **kwargs):
    return train_steerer(method, model, data.soft_labels, layers=layers, store=data.store, pairs=data.pairs,
                         attribute=data.attribute.name, progress=False, **kwargs)


@pytest.fixture(scope="module")
def s_psr(tiny_model, data):
    return trained(tiny_model, data, "psr-mse", 1, config=TrainConfig(steps=20))


@pytest.fixture(scope="module")
def a_psr(tiny_model, data):
    return trained(tiny_model, data, "psr-mse", None, config=TrainConfig(steps=20))


def choose(panel, method, scope="single", rank=1, training=None, layer=None, steps=None):
    """Set the controls in the order a user would: method first (it fixes what else is allowed)."""
    panel.method.value = method
    panel.scope.value = scope
    panel.rank.value = rank
    if training is not None:
        panel.training.value = training
    if layer is not None:
        panel.layer.value = layer
    if steps is not None:
        panel.steps.value = steps


def shown(output) -> str:
    """The title of the one plotly figure an Output widget shows (as the frontend receives it)."""
    (item,) = output.outputs
    return item["data"]["application/vnd.plotly.v1+json"]["layout"]["title"]["text"]


# ---------------------------------------------------------------------------------------------
# TrainingPanel: controls


def test_controls_enable_what_the_method_allows(tiny_model, data):
    panel = TrainingPanel(tiny_model, data, config=CONFIG)
    assert (panel.layer.min, panel.layer.max, panel.layer.value) == (0, 2, 1)
    assert panel.steps.value == 12 and panel.attribute.options == ("talky",)
    assert not panel.rank.disabled and not panel.training.disabled and not panel.layer.disabled
    panel.rank.value = 3
    panel.method.value = "Const-MSE"  # a constant vector has rank 1; its training is a choice
    assert panel.rank.disabled and panel.rank.value == 1 and not panel.training.disabled
    panel.method.value = "Const-DiM"  # closed form: never joint
    assert panel.training.disabled and panel.training.value == "layerwise"
    panel.method.value = "PSR-LL"  # trained on the likelihood through the model: always joint
    assert panel.training.disabled and panel.training.value == "joint"
    assert not panel.rank.disabled and panel.rank.value == 3  # the PSR rank comes back
    panel.method.value = "PSR-MSE"  # free again: the user's own choice comes back
    assert not panel.training.disabled and panel.training.value == "layerwise"
    panel.scope.value = "all"
    assert panel.layer.disabled and panel.choice.layers is None
    panel.scope.value = "single"
    assert not panel.layer.disabled and panel.choice.layers == 1
    bundle = panel._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.widget.model_id


@pytest.mark.parametrize("method, scope, rank, training, name", [
    ("PSR-MSE", "single", 1, "layerwise", "S-PSR"),
    ("PSR-MSE", "all", 2, "layerwise", "A-PSR r2"),
    ("PSR-MSE", "all", 1, "joint", "A-PSR (joint)"),
    ("PSR-LL", "single", 1, None, "S-PSR-LL"),
    ("Const-DiM", "single", 1, None, "Const-DiM"),
    ("Const-MSE", "all", 1, "layerwise", "A-Const-MSE"),
    ("Const-MSE", "single", 1, "joint", "Const-MSE (joint)"),
])
def test_choices_are_named_like_the_experiment(tiny_model, data, method, scope, rank, training, name):
    panel = TrainingPanel(tiny_model, data, config=CONFIG)
    choose(panel, method, scope, rank, training)
    choice = panel.choice
    run = name if scope == "all" else f"{name} L1"  # a one-layer run says its layer
    assert choice.method_name == name and choice.name == run and run in panel.preview.value
    spec = parse_method(name)
    assert (spec.method, spec.scope, spec.rank, spec.training) == (choice.method, scope, rank, choice.training)


# ---------------------------------------------------------------------------------------------
# TrainingPanel: training


@pytest.mark.parametrize("method, scope, rank, training, steps", [
    ("PSR-MSE", "single", 1, "layerwise", 12),
    ("PSR-MSE", "all", 2, "layerwise", 12),
    ("Const-MSE", "all", 1, "layerwise", 12),
    ("PSR-LL", "single", 1, None, 4),
])
def test_trained_steerer_is_what_train_steerer_gives(tiny_model, data, method, scope, rank, training, steps):
    panel = TrainingPanel(tiny_model, data, config=CONFIG)
    choose(panel, method, scope, rank, training, layer=2, steps=steps)
    choice = panel.choice
    steerer = panel.train(blocking=True)

    assert steerer is panel.steerer and panel.trained == {choice.name: steerer} and not panel.running
    info = steerer.info
    assert (info.method, info.rank, info.training) == (choice.method, rank, choice.training)
    assert steerer.layers == ((2,) if scope == "single" else (0, 1, 2))
    expected = trained(tiny_model, data, choice.method, choice.layers, rank=rank, training=choice.training,
                       config=replace(CONFIG, steps=steps))
    assert expected.name == steerer.name
    for key, value in expected.params().items():
        torch.testing.assert_close(steerer.params()[key], value, rtol=0, atol=0)

    train_x, val_x = list(panel.figure.data[0].x), list(panel.figure.data[1].x)
    if method == "Const-MSE":  # closed form: nothing to draw
        assert panel.history == [] and train_x == [] and "closed form" in panel.status.value
        return
    assert [h["step"] for h in panel.history] == list(range(1, steps + 1)) == train_x
    assert list(panel.figure.data[0].y) == [h["train_loss"] for h in panel.history]
    assert val_x == list(range(4, steps + 1, 4))  # eval_every=4
    assert list(panel.figure.data[1].y) == [h["val_loss"] for h in panel.history if h["val_loss"] is not None]
    assert panel.figure.layout.yaxis.type == "log"  # every loss is positive
    assert f"finished {steps} steps" in panel.status.value


def test_stop_from_a_callback_ends_training_early(tiny_model, data):
    panel = TrainingPanel(tiny_model, data, config=replace(CONFIG, steps=200))
    panel.step_callbacks.append(lambda p: panel.stop_button.click() if p.step == 3 else None)
    steerer = panel.train(blocking=True)
    assert len(panel.history) == 3 < panel.steps.value
    assert steerer.info.history["steps"] == 3 and list(panel.figure.data[0].x) == [1, 2, 3]
    assert "stopped after 3 of 200 steps" in panel.status.value
    assert panel.trained["S-PSR L1"] is steerer
    assert [h["step"] for h in panel.history_of("S-PSR L1")] == [1, 2, 3]
    with pytest.raises(ValueError, match="no steerer 'A-PSR' trained"):
        panel.history_of("A-PSR")


def test_train_button_runs_in_a_thread_and_refuses_a_second_train(tiny_model, data):
    panel = TrainingPanel(tiny_model, data, config=replace(CONFIG, steps=500), min_redraw_seconds=0)
    panel.steps.value = 3
    panel.train(blocking=True)  # a first run, so that a comparison table is up
    before = panel.results.value
    panel.steps.value = 500
    held = {2: threading.Event(), 5: threading.Event()}
    release = {2: threading.Event(), 5: threading.Event()}
    threads = []

    def hold(progress):
        threads.append(threading.current_thread())
        if progress.step in held:
            held[progress.step].set()
            release[progress.step].wait(30)

    panel.step_callbacks.append(hold)
    panel.train_button.click()
    try:
        assert held[2].wait(30), "training did not start"
        assert panel.running and not panel.stop_button.disabled and panel.train_button.disabled
        assert panel.results.value.startswith('<div class="workbench-stale">') and before in panel.results.value
        panel.train(blocking=False)  # what a click would do if the button were enabled
        assert "already training" in panel.notice.value
        with pytest.raises(RuntimeError, match="already training"):
            panel.train(blocking=True)
        release[2].set()
        assert held[5].wait(30)
        assert "step 5/500" in panel.status.value  # the status moved on; the warning stayed
        assert "already training" in panel.notice.value
        panel.stop_button.click()
    finally:
        for event in release.values():
            event.set()
        panel.wait(timeout=60)
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert not panel.running and panel.stop_button.disabled
    assert len(panel.history) == 5 and "stopped after 5 of 500 steps" in panel.status.value
    assert panel.trained == {"S-PSR L1": panel.steerer}
    assert not panel.train_button.disabled and panel.notice.value == ""
    assert not panel.results.value.startswith('<div class="workbench-stale">')


def test_live_curve_redraws_every_step_with_readable_ticks(tiny_model, data):
    panel = TrainingPanel(tiny_model, data, config=CONFIG, min_redraw_seconds=0)
    # before any training: a message, no empty figure
    assert panel.curve_plot.layout.display == "none" and panel.curve_plot.outputs == ()
    assert "Train" in panel.placeholder.value and panel.placeholder.layout.display != "none"
    seen = []

    def look(progress):  # called after the redraw of each step
        seen.append((progress.step, len(panel.figure.data[0].x), panel.redraws, f"step {progress.step}/" in panel.status.value))
        return progress.step == 1  # a one-step run

    panel.step_callbacks.append(look)
    panel.train(blocking=True)
    assert seen == [(1, 1, 1, True)]
    assert panel.placeholder.layout.display == "none" and panel.curve_plot.layout.display is None
    (item,) = panel.curve_plot.outputs
    drawn = item["data"]["application/vnd.plotly.v1+json"]["data"][0]
    assert drawn["x"] == [1] and "markers" in drawn["mode"]  # one point is a marker, not an invisible line
    yaxis = panel.figure.layout.yaxis
    assert yaxis.type == "log" and yaxis.title.text == "relative MSE"
    labels = [float(t) for t in yaxis.ticktext]  # whole numbers, not plotly's bare mantissas
    assert labels == pytest.approx(list(yaxis.tickvals)) and labels == sorted(labels)
    # a longer all-layer run: every step drawn, losses per layer (the layerwise fit sums its 3 layers)
    steps = []
    panel.step_callbacks[:] = [lambda p: steps.append((p.step, len(panel.figure.data[0].x), p.train_loss))]
    choose(panel, "PSR-MSE", "all", steps=6)
    steerer = panel.train(blocking=True)
    assert [(s, n) for s, n, _ in steps] == [(k, k) for k in range(1, 7)]
    assert [h["train_loss"] for h in panel.history] == pytest.approx([loss / 3 for _, _, loss in steps])
    assert panel.comparison.set_index("method").at["A-PSR", BEST] == pytest.approx(
        steerer.info.history["best_val_loss"] / 3)
    assert "relative MSE per layer" == panel.figure.layout.yaxis.title.text


def test_fast_steps_do_not_flood_the_browser(tiny_model, data):
    panel = TrainingPanel(tiny_model, data, config=CONFIG, redraw_seconds=1000, min_redraw_seconds=1000)
    panel.train(blocking=True)
    assert len(panel.history) == 12 and panel.redraws == 2  # the first step, then the end of the run
    assert list(panel.figure.data[0].x) == list(range(1, 13))
    with pytest.raises(ValueError, match="min_redraw_seconds"):
        TrainingPanel(tiny_model, data, redraw_seconds=1, min_redraw_seconds=2)


def test_stop_interrupts_the_preparation(tiny_model, data, monkeypatch):
    panel = TrainingPanel(tiny_model, data, config=CONFIG)
    real = training_panel.make_trainer

    statuses = []

    def stop_then_record(method, *args, training=None, **kwargs):
        statuses.append(panel.status.value)
        if training == "joint":  # recording the prompt-steered targets: model passes
            panel.stop_button.click()
            statuses.append(panel.status.value)
        return real(method, *args, training=training, **kwargs)

    monkeypatch.setattr(training_panel, "make_trainer", stop_then_record)
    choose(panel, "PSR-LL", steps=4)
    assert panel.train(blocking=True) is None
    assert panel._model_passes == 1  # interrupted in its first model pass
    assert "preparing S-PSR-LL L1: reading the training data" in statuses[0]
    assert "preparing S-PSR-LL L1: recording the prompt-steered targets of" in statuses[1]
    assert "stopping S-PSR-LL L1 now" in statuses[2]
    assert "stopped while preparing" in panel.status.value and panel.trained == {} and panel.history == []
    assert not panel.running and not panel.train_button.disabled and panel.error is None
    monkeypatch.setattr(training_panel, "make_trainer", real)
    steerer = panel.train(blocking=True)  # the model is usable again: no hook left behind
    assert steerer is not None and panel.trained == {"S-PSR-LL L1": steerer}
    assert panel._model_passes > 1


def test_panel_runs_figure_keeps_loss_kinds_apart(tiny_model, data):
    panel = TrainingPanel(tiny_model, data, config=CONFIG)
    choose(panel, "PSR-MSE", steps=4)
    panel.train(blocking=True)
    choose(panel, "PSR-LL", steps=2)
    panel.train(blocking=True)
    table = panel.comparison.set_index("method")
    assert table.at["S-PSR L1", "loss"] == "relative MSE" and table.at["S-PSR-LL L1", "loss"] == "NLL per token"
    fig = panel.loss_figure(title="Panel runs")
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["relative MSE", "NLL per token"]
    by_axis = {}
    for trace in fig.data:
        by_axis.setdefault(trace.yaxis, set()).add(trace.name.rsplit(" ", 1)[0])
    assert by_axis == {"y": {"S-PSR L1"}, "y2": {"S-PSR-LL L1"}}
    assert fig.layout.yaxis.title.text == "relative MSE" and fig.layout.yaxis2.title.text == "NLL per token"


def test_errors_go_to_the_status_line(tiny_model, data):
    def load(name):
        if name == "broken":
            raise RuntimeError("only 0 of 6 prompt-steered samples of 'broken' were kept")
        return data

    panel = TrainingPanel(tiny_model, load, attributes=["talky", "broken"], config=CONFIG)
    panel.method.value = "Const-DiM"
    panel.training.value = "joint"  # set in code past the disabled dropdown: snapped back
    assert panel.training.value == "layerwise" and panel.choice.name == "Const-DiM L1"
    panel.method.value = "PSR-MSE"
    panel.steps.value = -1  # invalid: the button path reports it, the blocking path raises it
    panel.train_button.click()
    panel.wait(timeout=30)
    assert "error: ValueError: TrainConfig: steps must be an integer &gt;= 0" in panel.status.value
    assert isinstance(panel.error, ValueError) and not panel.running and panel.steerer is None
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        panel.train(blocking=True)
    panel.steps.value = 4
    panel.attribute.value = "broken"  # the data cannot be prepared
    panel.train_button.click()
    panel.wait(timeout=30)
    assert "RuntimeError: only 0 of 6" in panel.status.value and not panel.running
    with pytest.raises(RuntimeError, match="only 0 of 6"):
        panel.train(blocking=True)
    panel.attribute.value = "talky"  # and the panel still works afterwards
    assert panel.train(blocking=True) is panel.steerer and panel.error is None


# ---------------------------------------------------------------------------------------------
# TrainingPanel: comparison


def test_comparison_lists_the_new_steerer_and_the_others(tiny_model, data, monkeypatch):
    dim = trained(tiny_model, data, "const-dim", 2)
    elsewhere = train_steerer("const-dim", tiny_model, data.soft_labels, layers=2, store=data.store,
                              attribute="another attribute", progress=False)
    measured = []
    real = steerer_comparison.faithfulness

    def spy(model, pairs, methods=None, **kwargs):
        measured.append(sorted(methods or {}) + (["paraphrase"] if kwargs.get("paraphrase") else []))
        return real(model, pairs, methods, **kwargs)

    monkeypatch.setattr(steerer_comparison, "faithfulness", spy)
    panel = TrainingPanel(tiny_model, data, others={"Const-DiM": dim, "Cat DiM": elsewhere}, config=CONFIG)
    new = panel.train(blocking=True)  # S-PSR at layer 1

    table = panel.comparison.set_index("method")
    assert list(table.index) == ["Const-DiM", "S-PSR L1", "paraphrase"]  # another attribute's steerer is left out
    assert [c for c in table.columns if c.startswith("relRMSE")] == ["relRMSE L1", "relRMSE L2"]
    expected = faithfulness(tiny_model, data.heldout_pairs,
                            faithfulness_strengths({"Const-DiM": dim, "S-PSR L1": new}, data.heldout_labels),
                            paraphrase=data.paraphrase_pairs).set_index(["method", "layer"])["rel_rmse"]
    for method in ("Const-DiM", "S-PSR L1", "paraphrase"):
        for layer in (1, 2):
            assert table.at[method, f"relRMSE L{layer}"] == pytest.approx(expected[(method, layer)], rel=1e-6)
    assert table.at["S-PSR L1", FINAL] == panel.history[-1]["train_loss"]
    assert table.at["S-PSR L1", BEST] == pytest.approx(new.info.history["best_val_loss"])  # one layer: as trained
    assert table.at["S-PSR L1", "loss"] == "relative MSE" and table.at["Const-DiM", "loss"] == "—"
    assert np.isnan(table.at["Const-DiM", FINAL]) and table.at["S-PSR L1", "steers"] == "layer 1"
    assert panel.faithfulness_figure is None and panel.results_plot.outputs == ()
    assert "<td>S-PSR L1</td>" in panel.results.value and "<td>Const-DiM</td>" in panel.results.value

    # an all-layer steerer next: every layer measured, curves drawn, earlier results reused
    choose(panel, "Const-MSE", "all")
    panel.train(blocking=True)
    assert set(panel.trained) == {"S-PSR L1", "A-Const-MSE"}
    table = panel.comparison.set_index("method")
    assert list(table.index) == ["Const-DiM", "S-PSR L1", "A-Const-MSE", "paraphrase"]
    assert [c for c in table.columns if c.startswith("relRMSE")] == ["relRMSE L0", "relRMSE L1", "relRMSE L2"]
    assert table.at["S-PSR L1", "relRMSE L0"] == pytest.approx(1.0, abs=1e-6)  # a layer-1 steerer leaves layer 0 alone
    figure = panel.faithfulness_figure
    assert {t.name for t in figure.data} == {"Const-DiM", "S-PSR L1", "A-Const-MSE", "paraphrase"}
    assert shown(panel.results_plot) == figure.to_plotly_json()["layout"]["title"]["text"]
    assert "<td>A-Const-MSE</td>" in panel.results.value
    # a run at another layer is a new run; the same method at the same layer replaces the old one
    choose(panel, "PSR-MSE", "single", layer=2)
    at2 = panel.train(blocking=True)
    table = panel.comparison.set_index("method")
    assert table.at["S-PSR L1", "steers"] == "layer 1" and table.at["S-PSR L2", "steers"] == "layer 2"
    assert [c for c in table.columns if c.startswith("relRMSE")] == ["relRMSE L2"]  # its layer is the last one
    choose(panel, "PSR-MSE", "single", layer=2, steps=3)
    again = panel.train(blocking=True)
    assert again is not at2 and panel.trained["S-PSR L2"] is again and len(panel.trained) == 3
    assert measured == [["Const-DiM", "S-PSR L1", "paraphrase"], ["A-Const-MSE"], ["S-PSR L2"], ["S-PSR L2"]]


def test_others_must_fit_the_model(tiny_model, data):
    dim = trained(tiny_model, data, "const-dim", 2)
    other = dim.with_params(info=replace(dim.info, model_id="someone/else"))
    with pytest.raises(ValueError, match=r"others\['mine'\].*'someone/else'"):
        TrainingPanel(tiny_model, data, others={"mine": other})
    with pytest.raises(ValueError, match="others\\['x'\\] is a str"):
        TrainingPanel(tiny_model, data, others={"x": "not a steerer"})


def test_a_panel_run_is_compared_at_its_own_layer(tiny_model, data, s_psr):
    # the notebook's S-PSR steers layer 1; a panel S-PSR at layer 0 is its own row, and the table's
    # columns are the new run's layer and the last layer (not those of the other S-PSR)
    panel = TrainingPanel(tiny_model, data, others={"S-PSR": s_psr}, config=CONFIG)
    choose(panel, "PSR-MSE", "single", layer=0, steps=4)
    new = panel.train(blocking=True)
    table = panel.comparison.set_index("method")
    assert list(table.index) == ["S-PSR", "S-PSR L0", "paraphrase"]
    assert [c for c in table.columns if c.startswith("relRMSE")] == ["relRMSE L0", "relRMSE L2"]
    assert table.at["S-PSR", "steers"] == "layer 1" and table.at["S-PSR L0", "steers"] == "layer 0"
    assert table.at["S-PSR", "relRMSE L0"] == pytest.approx(1.0, abs=1e-6)  # the layer-1 one leaves layer 0 alone
    assert table.at["S-PSR L0", "relRMSE L0"] < 1.0
    assert panel.results.value.startswith("<b>S-PSR L0</b> compared")
    assert panel.trained == {"S-PSR L0": new} and panel.others == {"S-PSR": s_psr}
    # a name that does collide is kept apart, and the comparison still finds the panel's run
    clash = TrainingPanel(tiny_model, data, others={"S-PSR L1": s_psr}, config=CONFIG)
    choose(clash, "PSR-MSE", "single", layer=1, steps=4)
    mine = clash.train(blocking=True)
    table = clash.comparison.set_index("method")
    assert list(table.index) == ["S-PSR L1", "S-PSR L1 (panel)", "paraphrase"]
    assert clash.trained == {"S-PSR L1": mine} and mine is not s_psr


def test_attributes_from_a_lazy_loader(tiny_model, data):
    calls = []

    def load(name):
        calls.append(name)
        return data

    with pytest.raises(ValueError, match="attributes="):
        TrainingPanel(tiny_model, load)
    with pytest.raises(ValueError, match="'cat' is not in the data"):
        TrainingPanel(tiny_model, {"talky": data}, attributes=["cat"])
    panel = TrainingPanel(tiny_model, load, attributes=["talky", "chatty"], config=CONFIG)
    assert calls == [] and panel.attribute.options == ("talky", "chatty")
    panel.train(blocking=True)
    assert calls == ["talky"] and set(panel.trained) == {"S-PSR L1"}
    panel.attribute.value = "chatty"
    assert panel.trained == {} and calls == ["talky"]
    panel.method.value = "Const-DiM"
    panel.train(blocking=True)
    assert calls == ["talky", "chatty"] and set(panel.trained) == {"Const-DiM L1"}
    assert list(panel.comparison["method"]) == ["Const-DiM L1", "paraphrase"]  # talky's S-PSR stays with talky
    panel.attribute.value = "talky"
    assert set(panel.trained) == {"S-PSR L1"} and calls == ["talky", "chatty"]


# ---------------------------------------------------------------------------------------------
# LambdaExplorer


def heat_values(fig: go.Figure) -> tuple[set[str], set[str]]:
    """(the rows' layer labels, the raw values shown in hover) of a token_heatmap."""
    labels = set(fig.layout.yaxis.ticktext)
    values = {str(cell[1]) for trace in fig.data for row in trace.customdata for cell in row}
    return labels, values


def test_explorer_tables_are_the_generation_and_the_deltas(tiny_model, a_psr):
    greedy = SamplingConfig(max_new_tokens=8, temperature=0)
    explorer = LambdaExplorer(tiny_model, a_psr, QUESTIONS[:2], INSTRUCTION, alpha=1.5, max_new_tokens=8)
    assert explorer.layers.value == (0, 1, 2) and explorer.steered is None
    explorer.refresh()

    steered = generate_answers(tiny_model, [QUESTIONS[0]], steerers=[(a_psr, 1.5)], config=greedy, progress=False)[0]
    assert explorer.steered.ids == steered.ids
    lam = steered.lambdas[0]  # [layers, header + answer tokens, rank]
    assert len(explorer.lambda_table) == lam.numel()
    np.testing.assert_allclose(explorer.lambda_table["lambda"].to_numpy(), lam.reshape(-1).numpy(), rtol=1e-6)
    assert list(explorer.lambda_table["layer"].unique()) == [0, 1, 2]

    prompted = generate_answers(tiny_model, [QUESTIONS[0]], instruction=INSTRUCTION, config=greedy, progress=False)[0]
    assert explorer.prompted.ids == prompted.ids
    pair = align(tiny_model.tokenizer, QUESTIONS[0], INSTRUCTION, prompted.ids, max_len=tiny_model.n_ctx)
    assert explorer.pair == pair
    pd.testing.assert_frame_equal(explorer.delta_table, pair_magnitudes(tiny_model, [pair], layers=[0, 1, 2]))

    assert set(explorer.figures) == {"lambda", "delta"}
    labels, values = heat_values(explorer.figures["lambda"])
    assert labels == {"L0", "L1", "L2"} and values == {f"{v:.4g}" for v in lam.reshape(-1).tolist()}
    assert "log" in explorer.figures["delta"].layout.coloraxis.colorbar.title.text
    assert "layer median" in explorer.figures["delta"].layout.coloraxis.colorbar.title.text
    assert shown(explorer.steered_plot) == explorer.figures["lambda"].layout.title.text
    assert shown(explorer.prompted_plot) == explorer.figures["delta"].layout.title.text
    assert html.escape(explorer.steered.text) in explorer.steered_text.value
    assert "(b) prompted with: You talk a lot." in explorer.prompted_text.value

    # choosing layers redraws from the tables, without generating again
    before = explorer.steered
    explorer.layers.value = (2,)
    assert explorer.steered is before
    assert heat_values(explorer.figures["lambda"])[0] == {"L2"} == heat_values(explorer.figures["delta"])[0]


def test_alpha_zero_is_the_unsteered_answer_with_lambdas(tiny_model, s_psr):
    explorer = LambdaExplorer(tiny_model, s_psr, QUESTIONS[:1], INSTRUCTION, alpha=2.0, max_new_tokens=8)
    assert explorer.layers.value == (1,)
    explorer.alpha.value = 0.0
    explorer.refresh()
    plain = generate_answers(tiny_model, QUESTIONS[:1], config=SamplingConfig(8, temperature=0), progress=False)[0]
    assert explorer.steered.ids == plain.ids
    n_tokens = explorer.steered.header_len + len(plain.ids)
    assert len(explorer.lambda_table) == n_tokens and explorer.lambda_table["lambda"].gt(0).any()
    assert "alpha 0" in explorer.figures["lambda"].layout.title.text


def test_prompted_side_is_cached_and_auto_regenerates(tiny_model, s_psr, monkeypatch):
    calls = []
    real = lambda_explorer.generate_answers

    def spy(*args, **kwargs):
        calls.append(kwargs.get("instruction"))
        return real(*args, **kwargs)

    monkeypatch.setattr(lambda_explorer, "generate_answers", spy)
    explorer = LambdaExplorer(tiny_model, s_psr, QUESTIONS[:2], INSTRUCTION, max_new_tokens=6)
    assert not explorer.auto.value
    explorer.refresh()
    assert calls == [None, INSTRUCTION]
    explorer.alpha.value = 0.5  # auto is off: nothing happens until Generate
    assert calls == [None, INSTRUCTION] and "press Generate" in explorer.status.value
    explorer.generate_button.click()
    assert calls == [None, INSTRUCTION, None]  # the prompted answer does not depend on alpha
    title = explorer.figures["lambda"].layout.title.text
    assert "(a) lambda" in title and "alpha 0.5" in title
    explorer.auto.value = True
    explorer.question.value = QUESTIONS[1]
    assert calls[3:] == [None, INSTRUCTION] and explorer.steered.question == explorer.prompted.question == QUESTIONS[1]
    explorer.question.value = QUESTIONS[0]
    assert calls[5:] == [None]  # back to a question whose prompted side is cached


def test_explorer_components_of_a_rank_2_steerer(tiny_model, data):
    steerer = trained(tiny_model, data, "psr-mse", None, rank=2, config=TrainConfig(steps=10))
    explorer = LambdaExplorer(tiny_model, steerer, QUESTIONS[:1], INSTRUCTION, max_new_tokens=5, layers=[0, 2])
    assert explorer.component.options == (0, 1) and explorer.component.layout.display is None
    explorer.refresh()
    explorer.component.value = 1
    lam = explorer.steered.lambdas[0][[0, 2], :, 1]  # layers 0 and 2, component 1
    labels, values = heat_values(explorer.figures["lambda"])
    assert labels == {"L0", "L2"} and values == {f"{v:.4g}" for v in lam.reshape(-1).tolist()}
    assert "component 1" in explorer.figures["lambda"].layout.title.text


def test_explorer_refuses_bad_inputs(tiny_model, s_psr):
    with pytest.raises(ValueError, match="questions is empty"):
        LambdaExplorer(tiny_model, s_psr, [], INSTRUCTION)
    with pytest.raises(ValueError, match="question '  ' is not a non-empty string"):
        LambdaExplorer(tiny_model, s_psr, ["Why?", "  "], INSTRUCTION)
    with pytest.raises(ValueError, match="single string 'Why\\?'"):
        LambdaExplorer(tiny_model, s_psr, "Why?", INSTRUCTION)
    with pytest.raises(ValueError, match="instruction must be a non-empty string, got ''"):
        LambdaExplorer(tiny_model, s_psr, ["Why?"], "")
    other = s_psr.with_params(info=replace(s_psr.info, model_id="someone/else"))
    with pytest.raises(ValueError, match="'someone/else'"):
        LambdaExplorer(tiny_model, other, ["Why?"], INSTRUCTION)
    with pytest.raises(ValueError, match=r"layer 0 is not steered by S-PSR, which steers layers \[1\]"):
        LambdaExplorer(tiny_model, s_psr, ["Why?"], INSTRUCTION, layers=[0])
    with pytest.raises(ValueError, match="alpha must be finite"):
        LambdaExplorer(tiny_model, s_psr, ["Why?"], INSTRUCTION, alpha=float("nan"))
    with pytest.raises(ValueError, match="max_new_tokens"):
        LambdaExplorer(tiny_model, s_psr, ["Why?"], INSTRUCTION, max_new_tokens=0)
    explorer = LambdaExplorer(tiny_model, s_psr, ["Why?"], INSTRUCTION, max_new_tokens=4)
    explorer.layers.value = ()
    explorer.generate_button.click()  # an error in a widget callback goes to the status line
    assert "no layer selected" in explorer.status.value and explorer.steered is None
    with pytest.raises(ValueError, match="no layer selected"):
        explorer.refresh()


def test_explorer_colour_scale_is_fixed_across_alpha(tiny_model, a_psr):
    explorer = LambdaExplorer(tiny_model, a_psr, QUESTIONS[:1], INSTRUCTION, alpha=0.5, max_new_tokens=6, layers=[1])
    assert explorer.lambda_range is None
    explorer.refresh()
    first_max = float(explorer.lambda_table["lambda"].max())
    lo, hi = explorer.lambda_range
    assert lo == 0 and first_max <= hi <= 1.5 * first_max + 1e-9  # 0 to the first answer's max, rounded up
    axes = []
    for alpha in (0.0, 3.0):
        explorer.alpha.value = alpha
        explorer.refresh()
        axes.append(explorer.figures["lambda"].layout.coloraxis)
    assert {(a.cmin, a.cmax) for a in axes} == {(lo, hi)}  # the same colours for every alpha
    assert "fixed" in axes[0].colorbar.title.text and "fixed for every alpha" in explorer.figures["lambda"].layout.title.text
    # a given range is used as is; a bad one is refused
    given = LambdaExplorer(tiny_model, a_psr, QUESTIONS[:1], INSTRUCTION, max_new_tokens=4, lambda_range=(0, 7))
    given.refresh()
    assert (given.figures["lambda"].layout.coloraxis.cmin, given.figures["lambda"].layout.coloraxis.cmax) == (0, 7)
    with pytest.raises(ValueError, match="lambda_range"):
        LambdaExplorer(tiny_model, a_psr, QUESTIONS[:1], INSTRUCTION, lambda_range=(2, 1))


def test_explorer_names_the_selected_layers_and_one_layer_keeps_a_colour_bar(tiny_model, a_psr):
    explorer = LambdaExplorer(tiny_model, a_psr, QUESTIONS[:1], INSTRUCTION, max_new_tokens=4, layers=[0, 2])
    assert "drawn: <b>L0, L2</b>" in explorer.layers_shown.value
    assert explorer.layers.rows == 3  # every layer of a short list is in view
    explorer.refresh()
    explorer.layers.value = (2,)
    assert "drawn: <b>L2</b>" in explorer.layers_shown.value
    fig = explorer.figures["lambda"]
    margin = fig.layout.margin
    assert fig.layout.height - margin.t - margin.b >= 150  # the colour bar spans at least 150 px


def test_widget_outputs_say_what_to_do_where_widgets_cannot_be_drawn(tiny_model, data, monkeypatch):
    from workbench.app import widget_base

    panel = TrainingPanel(tiny_model, data, config=CONFIG)
    bundle = panel._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.widget.model_id
    assert "VBox" not in bundle["text/plain"] and "run this cell" in bundle["text/plain"]
    assert "TrainingPanel" in bundle["text/html"] and "run this cell" in bundle["text/html"]
    published = []
    monkeypatch.setattr(widget_base, "publish_display_data", published.append)
    panel._ipython_display_()
    assert [sorted(p) for p in published] == [sorted(bundle), ["text/html", "text/plain"]]
    assert "kernel restart" in published[1]["text/plain"] and "model not found" in published[1]["text/plain"]
    # a figure an Output shows carries a description for viewers without plotly's renderer
    panel.train(blocking=True)
    (item,) = panel.curve_plot.outputs
    assert {"application/vnd.plotly.v1+json", "text/html", "text/plain"} <= set(item["data"])
    assert "S-PSR L1: training loss" in item["data"]["text/plain"] and "relative MSE" in item["data"]["text/html"]
