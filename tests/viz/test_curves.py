"""Curves and bars are checked through their data and layout, never rendered."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from workbench.viz.curves import coherence_tradeoff, faithfulness_curves, loss_curves, radar_chart, results_bars
from workbench.viz.theme import METHOD_COLORS


def faith_table() -> pd.DataFrame:
    rows = [dict(method=m, layer=l, rel_rmse=v + 0.01 * l, rel_rmse_lo=v - 0.05, rel_rmse_hi=v + 0.05)
            for m, v in (("Const-DiM", 1.2), ("paraphrase", 0.4), ("A-PSR", 0.3)) for l in (3, 0, 1, 2)]
    return pd.DataFrame(rows)


def test_faithfulness_curves():
    fig = faithfulness_curves(faith_table())
    lines = {t.name: t for t in fig.data if t.mode == "lines+markers"}
    assert set(lines) == {"Const-DiM", "paraphrase", "A-PSR"}
    assert lines["paraphrase"].line.dash == "dash" and lines["A-PSR"].line.dash == "solid"
    assert list(lines["A-PSR"].x) == [0, 1, 2, 3]  # sorted by layer
    assert list(lines["A-PSR"].y) == pytest.approx([0.3, 0.31, 0.32, 0.33])
    assert lines["A-PSR"].line.color == METHOD_COLORS["A-PSR"]
    ones = [s for s in fig.layout.shapes if s.y0 == 1.0 and s.y1 == 1.0]
    assert len(ones) == 1 and any(a.text == "no steering" for a in fig.layout.annotations)
    assert fig.layout.yaxis.title.text == "relative RMSE" and fig.layout.xaxis.title.text == "layer"
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 3
    para = next(b for b in bands if b.name == "paraphrase CI")
    assert (max(para.y), min(para.y)) == pytest.approx((0.45, 0.35)) and para.legendgroup == "paraphrase"
    assert not [t for t in faithfulness_curves(faith_table()[["method", "layer", "rel_rmse"]]).data if t.fill]
    with pytest.raises(ValueError, match="'rel_rmse'"):
        faithfulness_curves(faith_table().drop(columns="rel_rmse"))


def sweep_table() -> pd.DataFrame:
    rows = [dict(method="S-PSR", alpha=a, attribute=10 * a, coherence=100 - 5 * a) for a in (4, 0, 2, 1)]
    rows += [dict(method="prompt", alpha=np.nan, attribute=70, coherence=90)]
    return pd.DataFrame(rows)


def test_coherence_tradeoff_curves_and_target():
    fig = coherence_tradeoff(sweep_table(), target=80)
    curves = {t.name: t for t in fig.data}
    psr = curves["S-PSR"]
    assert list(psr.y) == [0, 10, 20, 40] and list(psr.x) == [100, 95, 90, 80]  # sorted by alpha
    assert [c[0] for c in psr.customdata] == ["0", "1", "2", "4"] and "alpha" in psr.hovertemplate
    assert curves["prompt"].mode == "markers" and list(curves["prompt"].x) == [90]
    assert [c[0] for c in curves["prompt"].customdata] == ["—"]
    assert any(s.x0 == 80 and s.x1 == 80 for s in fig.layout.shapes)
    assert fig.layout.xaxis.title.text.startswith("coherence")


def test_coherence_tradeoff_highlights_results():
    results = pd.DataFrame([
        dict(method="S-PSR", target="C80", alpha=3.1, attribute=33, coherence=80, attribute_lo=28, attribute_hi=39),
        dict(method="S-PSR", target="Cp", alpha=2.0, attribute=20, coherence=90, attribute_lo=15, attribute_hi=22),
    ])
    fig = coherence_tradeoff(sweep_table(), results)
    marked = {t.name: t for t in fig.data if t.marker.size == 16}
    c80 = marked["S-PSR TA@C80"]
    assert (list(c80.x), list(c80.y)) == ([80], [33])
    assert list(c80.error_y.array) == [6] and list(c80.error_y.arrayminus) == [5]
    assert marked["S-PSR TA@Cp"].marker.symbol != c80.marker.symbol
    assert c80.customdata[0][0] == "3.1"
    assert {t.name for t in fig.data if t.marker.color == "white"} == {"TA@C80", "TA@Cp"}  # legend keys
    no_ci = coherence_tradeoff(sweep_table(), results.drop(columns=["attribute_lo", "attribute_hi"]))
    assert all(t.error_y.array is None for t in no_ci.data)
    with pytest.raises(ValueError, match="results.*'coherence'"):
        coherence_tradeoff(sweep_table(), results.drop(columns="coherence"))


def test_results_bars():
    results = pd.DataFrame([
        dict(method=m, target=t, attribute=a + d, attribute_lo=a + d - 4, attribute_hi=a + d + 3)
        for t, d in (("C80", 0), ("Cp", 5)) for m, a in (("A-PSR", 60), ("my method", 30), ("prompt", 70))])
    fig = results_bars(results)
    assert [a.text for a in fig.layout.annotations] == ["TA@C80", "TA@Cp"]
    c80, cp = fig.data
    assert list(c80.x) == ["prompt", "A-PSR", "my method"]  # paper's order, then others
    assert list(c80.y) == [70, 60, 30] and list(cp.y) == [75, 65, 35]
    assert list(c80.error_y.array) == [3, 3, 3] and list(c80.error_y.arrayminus) == [4, 4, 4]
    assert list(c80.marker.color)[:2] == [METHOD_COLORS["prompt"], METHOD_COLORS["A-PSR"]]
    assert fig.layout.yaxis.title.text == "attribute score"
    with pytest.raises(ValueError, match="several rows"):
        results_bars(pd.concat([results, results.iloc[:1]]))


def test_loss_curves():
    hist = [dict(step=s, train_loss=1.0 / s, val_loss=(2.0 / s if s % 2 == 0 else None)) for s in (3, 1, 2, 4)]
    fig = loss_curves({"S-PSR": hist, "A-PSR": hist[:2]})
    traces = {t.name: t for t in fig.data}
    assert list(traces["S-PSR train"].x) == [1, 2, 3, 4] and traces["S-PSR train"].line.dash is None
    val = traces["S-PSR val"]
    assert list(val.x) == [2, 4] and list(val.y) == [1.0, 0.5] and val.line.dash == "dash"
    assert val.line.color == traces["S-PSR train"].line.color == METHOD_COLORS["S-PSR"]
    assert "A-PSR val" not in traces  # only step 3 and 1: no validation
    assert fig.layout.yaxis.type == "log" and fig.layout.xaxis.title.text == "step"
    negative = loss_curves({"x": [dict(step=1, train_loss=-0.5, val_loss=None)]})
    assert negative.layout.yaxis.type == "linear"
    with pytest.raises(ValueError, match="'train_loss'"):
        loss_curves({"x": [dict(step=1, loss=0.3)]})


def test_radar_chart_normalisation_and_hover():
    table = pd.DataFrame({"method": ["prompt", "Const-DiM", "A-PSR"], "extra tokens": [30, 0, 0],
                          "quality": [70, 40, 75], "params": [0, 100, 10000], "reversible": [1, 1, 1]})
    fig = radar_chart(table, higher_is_better={"extra tokens": False, "params": False},
                        units={"extra tokens": "tokens"}, log_axes=["params"])
    traces = {t.name: t for t in fig.data}
    prompt, dim, psr = traces["prompt"].r, traces["Const-DiM"].r, traces["A-PSR"].r
    assert prompt[0] == 0 and dim[0] == 1  # fewer extra tokens is better: outward
    assert psr[1] == 1 and dim[1] == 0 and prompt[1] == pytest.approx(30 / 35)
    assert dim[2] == pytest.approx(1 - math.log10(101) / math.log10(10001))  # log axis, flipped
    assert prompt[3] == 1  # every method ties
    assert prompt[0] == prompt[-1] and len(prompt) == 5  # closed polygon
    assert traces["prompt"].theta[0] == "extra tokens<br>(tokens)"
    assert traces["prompt"].customdata[0][0] == "30 tokens" and "lower is better" in traces["prompt"].customdata[0][1]
    with pytest.raises(ValueError, match="'speed'"):
        radar_chart(table, higher_is_better={"speed": True})
    with pytest.raises(ValueError, match="'quality'"):
        radar_chart(table.assign(quality=["a", "b", "c"]), axes=["extra tokens", "quality", "params"])


def test_faithfulness_curves_draw_a_steerer_in_use_dotted_in_its_colour():
    df = pd.DataFrame(dict(method=["S-PSR", "S-PSR", "S-PSR @C80", "S-PSR @C80"], layer=[0, 1, 0, 1],
                           rel_rmse=[1.0, 0.8, 1.0, 1.6]))
    fig = faithfulness_curves(df)
    lines = {t.name: t.line for t in fig.data}
    assert lines["S-PSR @C80"].color == lines["S-PSR"].color == METHOD_COLORS["S-PSR"]
    assert lines["S-PSR @C80"].dash == "dot" and lines["S-PSR"].dash == "solid"


def test_coinciding_methods_are_said_on_the_figure():
    faith = pd.DataFrame({"method": ["Const-DiM"] * 3 + ["Const-MSE"] * 3 + ["A-PSR"] * 3, "layer": [0, 1, 2] * 3,
                          "rel_rmse": [0.9, 0.8, 0.7, 0.9, 0.8, 0.7, 0.5, 0.4, 0.3]})
    fig = faithfulness_curves(faith)
    notes = [a.text for a in fig.layout.annotations if "coincide" in a.text]
    assert notes == ["Const-DiM and Const-MSE coincide (their lines overlap)"]
    apart = faithfulness_curves(faith.assign(rel_rmse=faith["rel_rmse"] + np.r_[0, 0, 0, 0.01, 0, 0, 0, 0, 0]))
    assert not [a for a in apart.layout.annotations if "coincide" in a.text]
    sweep = pd.DataFrame({"method": ["Const-DiM", "Const-MSE", "A-PSR"] * 2, "alpha": [1, 1, 1, 2, 2, 2],
                          "attribute": [10, 10, 20, 30, 30, 40], "coherence": [90, 90, 85, 70, 70, 60]})
    assert any("Const-DiM and Const-MSE coincide" in a.text for a in coherence_tradeoff(sweep).layout.annotations)


def test_legends_never_scroll_and_radar_labels_are_words():
    rows = [{"method": m, "layer": l, "rel_rmse": 0.1 * i + 0.01 * l}
            for i, m in enumerate(["no steering", "paraphrase", "Const-DiM", "Const-MSE", "S-PSR", "A-PSR",
                                   "Const-DiM @C80", "Const-MSE @C80", "S-PSR @C80", "A-PSR @C80"]) for l in range(3)]
    fig = faithfulness_curves(pd.DataFrame(rows))
    entries = sum(1 for t in fig.data if t.showlegend is not False)
    plot_px = fig.layout.height - (fig.layout.margin.t or 60) - (fig.layout.margin.b or 60)  # the template: 60 each
    assert entries == 10 and plot_px >= 24 * entries  # room for every entry, "@C80" ones included
    table = pd.DataFrame({"method": ["prompt", "A-PSR", "S-PSR"], "extra_prompt_tokens": [22, 0, 0],
                          "relative_latency": [1.2, 1.05, 1.01], "trained_params": [0, 34590, 1153]})
    radar = radar_chart(table, units={"extra_prompt_tokens": "tokens"}, higher_is_better={
        "extra_prompt_tokens": False, "relative_latency": False, "trained_params": False})
    theta = list(radar.data[0].theta)
    assert theta[:3] == ["extra prompt tokens<br>(tokens)", "relative latency", "trained params"]
    assert radar.layout.legend.orientation == "h" and radar.layout.legend.y < 0  # below, not over an axis label
    assert radar.layout.polar.domain.x[0] > 0.05 and radar.layout.polar.domain.x[1] < 0.95  # room for the labels


@pytest.mark.parametrize("lo, hi", [(0.75, 1.3), (1.6, 1.8), (0.967, 0.991), (0.01, 10), (0.84, 0.845), (1e-3, 1e3)])
def test_log_ticks_are_whole_numbers_inside_the_range(lo, hi):
    from workbench.viz.curves import log_ticks

    values, labels = log_ticks(lo, hi)
    assert 2 <= len(values) <= 8 and values == sorted(values)
    assert all(lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9) for v in values)
    assert [float(t) for t in labels] == pytest.approx(values)  # each label is the number itself
    assert len(set(labels)) == len(labels)  # never plotly's repeated bare mantissas ("10 5 2 1 5 2")
