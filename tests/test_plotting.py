"""Figures are checked through their data and layout, never rendered (except one export test)."""

from __future__ import annotations

import math
import shutil
import zlib

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from workbench import plotting as P

# ---------------------------------------------------------------------------------------------
# fixtures

TOKENS = ["<|im_start|>", "assistant", "\n", " Arr", "<b>&x", " matey", "!"]


def token_table(values: dict[int, list[float]] | None = None, samples=(0,)) -> pd.DataFrame:
    """Layers 0 and 2, seven positions; the first three are the assistant header."""
    values = values or {0: [1, 2, 3, 10, 100, 1000, 5], 2: [2, 4, 6, 20, 200, 50, 8]}
    rows = []
    for s in samples:
        for layer, vals in values.items():
            for pos, (tok, v) in enumerate(zip(TOKENS, vals)):
                rows.append(dict(sample=s, layer=layer, position=pos, token=tok, is_header=pos < 3,
                                 norm=float(v) * (1 + s), rel_norm=float(v) / 1000))
    return pd.DataFrame(rows)


def heat_cells(fig: go.Figure):
    """(layer, position) -> (z, text, customdata) over all heat-map traces of a token_heatmap;
    customdata is [token, value, layer, position]."""
    out = {}
    for trace in fig.data:
        z, text, custom = np.asarray(trace.z, dtype=float), trace.text, trace.customdata
        for r in range(z.shape[0]):
            for c in range(z.shape[1]):
                out[(custom[r][c][2], custom[r][c][3])] = (z[r, c], text[r][c], list(custom[r][c]))
    return out


# ---------------------------------------------------------------------------------------------
# template and colours

def test_method_colours_are_fixed_and_case_insensitive():
    assert P.method_color("A-PSR") == P.METHOD_COLORS["A-PSR"] == P.method_color("a-psr")
    assert P.method_color("PSR+prompt") == P.METHOD_COLORS["PSR + prompt"]
    assert len(set(P.METHOD_COLORS.values())) == len(P.METHOD_COLORS)
    unknown = P.method_color("my new method")
    assert unknown in P.FALLBACK_COLORS and unknown not in P.METHOD_COLORS.values()
    assert unknown == P.method_color("my new method")  # stable


def test_method_colors_resolves_fallback_clashes():
    n = len(P.FALLBACK_COLORS)
    names = [f"m{i}" for i in range(50)]
    a, b = next((x, y) for x in names for y in names
                if x < y and zlib.crc32(x.encode()) % n == zlib.crc32(y.encode()) % n)
    colours = P.method_colors([a, b, "S-PSR"])
    assert colours[a] == P.method_color(a) and colours[b] != colours[a]
    assert colours["S-PSR"] == P.METHOD_COLORS["S-PSR"]


def test_template_registered_and_applied():
    assert pio.templates["workbench"].to_plotly_json() == P.TEMPLATE.to_plotly_json()
    assert P.TEMPLATE.layout.paper_bgcolor == "white" and P.TEMPLATE.layout.plot_bgcolor == "white"
    assert P.TEMPLATE.layout.font.size >= 12
    fig = P.apply_template(go.Figure())
    assert fig.layout.template.layout.paper_bgcolor == "white"
    assert P.faithfulness_curves(pd.DataFrame(dict(method=["S-PSR"], layer=[0], rel_rmse=[0.5]))
                                 ).layout.template.layout.font.size == P.TEMPLATE.layout.font.size


def test_display_token():
    assert P.display_token(" the") == "␣the"
    assert P.display_token("\n\n") == "↵↵"
    assert P.display_token("\t") == "⇥"
    assert P.display_token("") == "∅"
    assert P.display_token("a\x01") == "a\\x01"


# ---------------------------------------------------------------------------------------------
# token heat map

def test_token_heatmap_log_values_text_and_hover():
    fig = P.token_heatmap(token_table(), value="norm")
    cells = heat_cells(fig)
    assert len(cells) == 2 * len(TOKENS)
    z, text, custom = cells[(0, 5)]
    assert z == pytest.approx(3.0)  # log10(1000)
    assert custom[0] == "␣matey" and custom[1] == "1000"
    assert "position %{customdata[3]}" in fig.data[0].hovertemplate and "norm" in fig.data[0].hovertemplate
    axis = fig.layout.coloraxis
    assert (axis.cmin, axis.cmax) == pytest.approx((0.0, 3.0))
    assert list(axis.colorbar.ticktext) == ["1", "10", "100", "1,000"]
    assert list(axis.colorbar.tickvals) == pytest.approx([0, 1, 2, 3])
    assert all(t.coloraxis == "coloraxis" for t in fig.data)


def test_token_heatmap_escapes_and_marks_tokens():
    cells = heat_cells(P.token_heatmap(token_table()))
    _, text, custom = cells[(0, 4)]
    assert text == "&lt;b&gt;&amp;x" and "<b>" not in text
    assert custom[0] == "&lt;b&gt;&amp;x"
    _, text, custom = cells[(0, 0)]  # special token and header: italic, escaped
    assert text == "<i>&lt;|im_start|&gt;</i>" and custom[0].endswith("(assistant header)")
    assert cells[(0, 2)][1] == "<i>↵</i>"
    assert cells[(0, 3)][1] == "␣Arr"  # not header, not special: plain


def test_token_heatmap_rows_lines_and_wrap():
    fig = P.token_heatmap(token_table(), layers=[2, 0])
    # the "\n" token ends the first line: two line blocks, rows ordered as asked
    assert len(fig.data) == 2
    assert list(fig.layout.yaxis.ticktext) == ["L2", "L0", "L2", "L0"]
    assert fig.layout.yaxis.autorange == "reversed"
    first_line = [c[3] for c in fig.data[0].customdata[0]]
    assert first_line == [0, 1, 2]
    many = pd.concat([token_table().assign(position=lambda d: d.position + 7 * k) for k in range(6)])
    many["token"] = many["token"].str.replace("\n", "x")
    fig = P.token_heatmap(many, wrap=20)
    assert len(fig.data) > 3
    for trace in fig.data:  # x holds cell edges: widths add up to at most the wrap width
        assert len(trace.x) == len(trace.z[0]) + 1
        assert trace.x[-1] <= 20 or len(trace.z[0]) == 1
    positions = [c[3] for t in fig.data for c in t.customdata[0]]
    assert positions == sorted(positions) and len(positions) == 42


def test_token_heatmap_max_tokens_note():
    fig = P.token_heatmap(token_table(), max_tokens=3)
    assert sum(len(t.z[0]) for t in fig.data) == 3
    assert any("first 3 of 7 tokens" in a.text for a in fig.layout.annotations)
    assert not P.token_heatmap(token_table()).layout.annotations


def test_token_heatmap_linear_diverging_and_per_layer():
    table = token_table()
    lin = heat_cells(P.token_heatmap(table, scale="linear"))
    assert lin[(2, 4)][0] == 200
    signed = table.assign(norm=lambda d: d.norm * np.where(d.position % 2, -1, 1))
    fig = P.token_heatmap(signed, scale="diverging")
    axis = fig.layout.coloraxis
    assert axis.cmid == 0 and axis.cmin == -axis.cmax == -1000
    assert heat_cells(fig)[(0, 5)][0] == -1000
    assert axis.colorscale != P.TEMPLATE.layout.coloraxis.colorscale  # not the sequential ramp
    per = heat_cells(P.token_heatmap(table, per_layer=True))
    for layer in (0, 2):
        zs = [v[0] for k, v in per.items() if k[0] == layer]
        assert np.median(zs) == pytest.approx(0.0)  # log10(value / layer median)
    assert "layer median" in P.token_heatmap(table, per_layer=True).layout.coloraxis.colorbar.title.text


def test_token_heatmap_zero_on_log_scale_sits_at_floor():
    table = token_table({0: [0, 2, 3, 10, 100, 1000, 5]})
    cells = heat_cells(P.token_heatmap(table))
    assert cells[(0, 0)][0] == pytest.approx(math.log10(2)) and cells[(0, 0)][2][1] == "0"
    with pytest.raises(ValueError, match="linear"):
        P.token_heatmap(token_table({0: [0] * 7}))


def test_token_heatmap_samples_and_validation():
    table = token_table(samples=(0, 1))
    assert heat_cells(P.token_heatmap(table))[(0, 3)][2][1] == "10"  # first sample by default
    fig = P.token_heatmap(table, sample=1)
    assert heat_cells(fig)[(0, 3)][2][1] == "20" and "sample 1" in fig.layout.title.text
    with pytest.raises(ValueError, match="sample 7"):
        P.token_heatmap(table, sample=7)
    with pytest.raises(ValueError, match="'token'"):
        P.token_heatmap(table.drop(columns="token"))
    with pytest.raises(ValueError, match="'lambda'"):
        P.token_heatmap(table, value="lambda")
    with pytest.raises(ValueError, match=r"layer\(s\) \[5\]"):
        P.token_heatmap(table, layers=[0, 5])
    with pytest.raises(ValueError, match="scale"):
        P.token_heatmap(table, scale="sqrt")


def test_token_heatmap_lambda_table():
    table = token_table().rename(columns={"norm": "lambda"}).drop(columns=["sample", "is_header"])
    fig = P.token_heatmap(table, value="lambda", scale="linear", title="probe")
    assert fig.layout.title.text == "probe" and "lambda" in fig.data[0].hovertemplate
    assert heat_cells(fig)[(2, 6)][0] == 8


def test_layer_token_heatmap():
    fig = P.layer_token_heatmap(token_table(), scale="log")
    (trace,) = fig.data
    assert list(trace.y) == ["L0", "L2"] and list(trace.x) == list(range(7))
    assert np.asarray(trace.z, dtype=float)[1, 4] == pytest.approx(math.log10(200))
    labels = list(fig.layout.xaxis.ticktext)
    assert labels[4] == "&lt;b&gt;&amp;x" and labels[3] == "␣Arr" and labels[0].startswith("<i>")
    assert trace.customdata[1][4][1] == "200"
    assert fig.layout.xaxis.title.text == "token" and fig.layout.yaxis.title.text == "layer"


# ---------------------------------------------------------------------------------------------
# distributions and curves

def test_magnitude_distribution_bands_exclude_header():
    table = token_table()
    table.loc[table.is_header, "norm"] = 1e9  # would dominate the max if header rows counted
    fig = P.magnitude_distribution(table)
    traces = {t.name: t for t in fig.data}
    body = table[~table.is_header]
    assert list(traces["max"].y) == [1000.0, 200.0]
    assert list(traces["median"].y) == pytest.approx(body.groupby("layer").norm.median().tolist())
    assert traces["p10–p90"].fill == "tonexty"
    assert list(traces["p10–p90"].y) == pytest.approx(body.groupby("layer").norm.quantile(0.1).tolist())
    assert fig.layout.yaxis.type == "log" and fig.layout.xaxis.title.text == "layer"
    box = P.magnitude_distribution(table, kind="box")
    assert max(box.data[0].y) == 1000 and len(box.data[0].y) == len(body)
    with pytest.raises(ValueError, match="'rel'"):
        P.magnitude_distribution(table, value="rel")


def faith_table() -> pd.DataFrame:
    rows = [dict(method=m, layer=l, rel_rmse=v + 0.01 * l, rel_rmse_lo=v - 0.05, rel_rmse_hi=v + 0.05)
            for m, v in (("Const-DiM", 1.2), ("paraphrase", 0.4), ("A-PSR", 0.3)) for l in (3, 0, 1, 2)]
    return pd.DataFrame(rows)


def test_faithfulness_curves():
    fig = P.faithfulness_curves(faith_table())
    lines = {t.name: t for t in fig.data if t.mode == "lines+markers"}
    assert set(lines) == {"Const-DiM", "paraphrase", "A-PSR"}
    assert lines["paraphrase"].line.dash == "dash" and lines["A-PSR"].line.dash == "solid"
    assert list(lines["A-PSR"].x) == [0, 1, 2, 3]  # sorted by layer
    assert list(lines["A-PSR"].y) == pytest.approx([0.3, 0.31, 0.32, 0.33])
    assert lines["A-PSR"].line.color == P.METHOD_COLORS["A-PSR"]
    ones = [s for s in fig.layout.shapes if s.y0 == 1.0 and s.y1 == 1.0]
    assert len(ones) == 1 and any(a.text == "no steering" for a in fig.layout.annotations)
    assert fig.layout.yaxis.title.text == "relative RMSE" and fig.layout.xaxis.title.text == "layer"
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 3
    para = next(b for b in bands if b.name == "paraphrase CI")
    assert (max(para.y), min(para.y)) == pytest.approx((0.45, 0.35)) and para.legendgroup == "paraphrase"
    assert not [t for t in P.faithfulness_curves(faith_table()[["method", "layer", "rel_rmse"]]).data if t.fill]
    with pytest.raises(ValueError, match="'rel_rmse'"):
        P.faithfulness_curves(faith_table().drop(columns="rel_rmse"))


def sweep_table() -> pd.DataFrame:
    rows = [dict(method="S-PSR", alpha=a, attribute=10 * a, coherence=100 - 5 * a) for a in (4, 0, 2, 1)]
    rows += [dict(method="prompt", alpha=np.nan, attribute=70, coherence=90)]
    return pd.DataFrame(rows)


def test_coherence_tradeoff_curves_and_target():
    fig = P.coherence_tradeoff(sweep_table(), target=80)
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
    fig = P.coherence_tradeoff(sweep_table(), results)
    marked = {t.name: t for t in fig.data if t.marker.size == 16}
    c80 = marked["S-PSR TA@C80"]
    assert (list(c80.x), list(c80.y)) == ([80], [33])
    assert list(c80.error_y.array) == [6] and list(c80.error_y.arrayminus) == [5]
    assert marked["S-PSR TA@Cp"].marker.symbol != c80.marker.symbol
    assert c80.customdata[0][0] == "3.1"
    assert {t.name for t in fig.data if t.marker.color == "white"} == {"TA@C80", "TA@Cp"}  # legend keys
    no_ci = P.coherence_tradeoff(sweep_table(), results.drop(columns=["attribute_lo", "attribute_hi"]))
    assert all(t.error_y.array is None for t in no_ci.data)
    with pytest.raises(ValueError, match="results.*'coherence'"):
        P.coherence_tradeoff(sweep_table(), results.drop(columns="coherence"))


def test_results_bars():
    results = pd.DataFrame([
        dict(method=m, target=t, attribute=a + d, attribute_lo=a + d - 4, attribute_hi=a + d + 3)
        for t, d in (("C80", 0), ("Cp", 5)) for m, a in (("A-PSR", 60), ("my method", 30), ("prompt", 70))])
    fig = P.results_bars(results)
    assert [a.text for a in fig.layout.annotations] == ["TA@C80", "TA@Cp"]
    c80, cp = fig.data
    assert list(c80.x) == ["prompt", "A-PSR", "my method"]  # paper's order, then others
    assert list(c80.y) == [70, 60, 30] and list(cp.y) == [75, 65, 35]
    assert list(c80.error_y.array) == [3, 3, 3] and list(c80.error_y.arrayminus) == [4, 4, 4]
    assert list(c80.marker.color)[:2] == [P.METHOD_COLORS["prompt"], P.METHOD_COLORS["A-PSR"]]
    assert fig.layout.yaxis.title.text == "attribute score"
    with pytest.raises(ValueError, match="several rows"):
        P.results_bars(pd.concat([results, results.iloc[:1]]))


def test_loss_curves():
    hist = [dict(step=s, train_loss=1.0 / s, val_loss=(2.0 / s if s % 2 == 0 else None)) for s in (3, 1, 2, 4)]
    fig = P.loss_curves({"S-PSR": hist, "A-PSR": hist[:2]})
    traces = {t.name: t for t in fig.data}
    assert list(traces["S-PSR train"].x) == [1, 2, 3, 4] and traces["S-PSR train"].line.dash is None
    val = traces["S-PSR val"]
    assert list(val.x) == [2, 4] and list(val.y) == [1.0, 0.5] and val.line.dash == "dash"
    assert val.line.color == traces["S-PSR train"].line.color == P.METHOD_COLORS["S-PSR"]
    assert "A-PSR val" not in traces  # only step 3 and 1: no validation
    assert fig.layout.yaxis.type == "log" and fig.layout.xaxis.title.text == "step"
    negative = P.loss_curves({"x": [dict(step=1, train_loss=-0.5, val_loss=None)]})
    assert negative.layout.yaxis.type == "linear"
    with pytest.raises(ValueError, match="'train_loss'"):
        P.loss_curves({"x": [dict(step=1, loss=0.3)]})


def test_radar_chart_normalisation_and_hover():
    table = pd.DataFrame({"method": ["prompt", "Const-DiM", "A-PSR"], "extra tokens": [30, 0, 0],
                          "quality": [70, 40, 75], "params": [0, 100, 10000], "reversible": [1, 1, 1]})
    fig = P.radar_chart(table, higher_is_better={"extra tokens": False, "params": False},
                        units={"extra tokens": "tokens"}, log_axes=["params"])
    traces = {t.name: t for t in fig.data}
    prompt, dim, psr = traces["prompt"].r, traces["Const-DiM"].r, traces["A-PSR"].r
    assert prompt[0] == 0 and dim[0] == 1  # fewer extra tokens is better: outward
    assert psr[1] == 1 and dim[1] == 0 and prompt[1] == pytest.approx(30 / 35)
    assert dim[2] == pytest.approx(1 - math.log10(101) / math.log10(10001))  # log axis, flipped
    assert prompt[3] == 1  # every method ties
    assert prompt[0] == prompt[-1] and len(prompt) == 5  # closed polygon
    assert traces["prompt"].theta[0] == "extra tokens (tokens)"
    assert traces["prompt"].customdata[0][0] == "30 tokens" and "lower is better" in traces["prompt"].customdata[0][1]
    with pytest.raises(ValueError, match="'speed'"):
        P.radar_chart(table, higher_is_better={"speed": True})
    with pytest.raises(ValueError, match="'quality'"):
        P.radar_chart(table.assign(quality=["a", "b", "c"]), axes=["extra tokens", "quality", "params"])


# ---------------------------------------------------------------------------------------------
# export

def small_figure() -> go.Figure:
    return P.apply_template(go.Figure(go.Bar(x=["a", "b"], y=[1, 2])))


@pytest.mark.skipif(P.find_browser() is None and shutil.which("chromium") is None,
                    reason="no Chrome/Chromium for kaleido on this machine (apt-get install chromium)")
def test_export_svg(tmp_path):
    written = P.export_figure(small_figure(), tmp_path / "fig.png", formats=("svg",), width=300, height=200)
    assert written == [tmp_path / "fig.svg"]
    assert "<svg" in written[0].read_text()[:500]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.svg"]  # no temporary left behind


def test_export_without_browser_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "find_browser", lambda: None)
    with pytest.raises(P.FigureExportError) as err:
        P.export_figure(small_figure(), tmp_path / "fig", formats=("svg",))
    message = str(err.value)
    assert "Chromium" in message and "apt-get install chromium" in message and "plotly_get_chrome" in message
    assert not list(tmp_path.iterdir())


def test_export_failure_leaves_no_half_file(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "find_browser", lambda: "/usr/bin/chromium")

    def broken(figs, files, **kwargs):
        files[0].write_bytes(b"half")  # a partial write, then the browser dies
        raise RuntimeError("BrowserFailedError: chromium exited\nlong traceback ...")

    monkeypatch.setattr(P.pio, "write_images", broken)
    with pytest.raises(P.FigureExportError, match="kaleido failed.*chromium exited") as err:
        P.export_figure(small_figure(), tmp_path / "fig", formats=("png", "svg"))
    assert "long traceback" not in str(err.value) and err.value.__cause__ is None
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="eps"):
        P.export_figure(small_figure(), tmp_path / "fig", formats=("eps",))


def test_faithfulness_curves_draw_a_steerer_in_use_dotted_in_its_colour():
    df = pd.DataFrame(dict(method=["S-PSR", "S-PSR", "S-PSR @C80", "S-PSR @C80"], layer=[0, 1, 0, 1],
                           rel_rmse=[1.0, 0.8, 1.0, 1.6]))
    fig = P.faithfulness_curves(df)
    lines = {t.name: t.line for t in fig.data}
    assert lines["S-PSR @C80"].color == lines["S-PSR"].color == P.METHOD_COLORS["S-PSR"]
    assert lines["S-PSR @C80"].dash == "dot" and lines["S-PSR"].dash == "solid"
