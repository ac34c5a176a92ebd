"""Token heat maps are checked through their data and layout, never rendered."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from workbench.viz.theme import TEMPLATE
from workbench.viz.token_maps import (
    coefficient_heatmap,
    display_token,
    layer_token_heatmap,
    magnitude_distribution,
    token_heatmap,
)

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


def test_display_token():
    assert display_token(" the") == "␣the"
    assert display_token("\n\n") == "↵↵"
    assert display_token("\t") == "⇥"
    assert display_token("") == "∅"
    assert display_token("a\x01") == "a\\x01"


# ---------------------------------------------------------------------------------------------
# token heat map

def test_token_heatmap_log_values_text_and_hover():
    fig = token_heatmap(token_table(), value="norm")
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
    cells = heat_cells(token_heatmap(token_table()))
    _, text, custom = cells[(0, 4)]
    assert text == "&lt;b&gt;&amp;x" and "<b>" not in text
    assert custom[0] == "&lt;b&gt;&amp;x"
    _, text, custom = cells[(0, 0)]  # special token and header: italic, escaped
    assert text == "<i>&lt;|im_start|&gt;</i>" and custom[0].endswith("(assistant header)")
    assert cells[(0, 2)][1] == "<i>↵</i>"
    assert cells[(0, 3)][1] == "␣Arr"  # not header, not special: plain


def test_token_heatmap_rows_lines_and_wrap():
    fig = token_heatmap(token_table(), layers=[2, 0])
    # the "\n" token ends the first line: two line blocks, rows ordered as asked
    assert len(fig.data) == 2
    assert list(fig.layout.yaxis.ticktext) == ["L2", "L0", "L2", "L0"]
    assert fig.layout.yaxis.autorange == "reversed"
    first_line = [c[3] for c in fig.data[0].customdata[0]]
    assert first_line == [0, 1, 2]
    many = pd.concat([token_table().assign(position=lambda d: d.position + 7 * k) for k in range(6)])
    many["token"] = many["token"].str.replace("\n", "x")
    fig = token_heatmap(many, wrap=20)
    assert len(fig.data) > 3
    for trace in fig.data:  # x holds cell edges: widths add up to at most the wrap width
        assert len(trace.x) == len(trace.z[0]) + 1
        assert trace.x[-1] <= 20 or len(trace.z[0]) == 1
    positions = [c[3] for t in fig.data for c in t.customdata[0]]
    assert positions == sorted(positions) and len(positions) == 42


def test_token_heatmap_max_tokens_note():
    fig = token_heatmap(token_table(), max_tokens=3)
    assert sum(len(t.z[0]) for t in fig.data) == 3
    assert any("first 3 of 7 tokens" in a.text for a in fig.layout.annotations)
    assert not token_heatmap(token_table()).layout.annotations


def test_token_heatmap_linear_diverging_and_per_layer():
    table = token_table()
    lin = heat_cells(token_heatmap(table, scale="linear"))
    assert lin[(2, 4)][0] == 200
    signed = table.assign(norm=lambda d: d.norm * np.where(d.position % 2, -1, 1))
    fig = token_heatmap(signed, scale="diverging")
    axis = fig.layout.coloraxis
    assert axis.cmid == 0 and axis.cmin == -axis.cmax == -1000
    assert heat_cells(fig)[(0, 5)][0] == -1000
    assert axis.colorscale != TEMPLATE.layout.coloraxis.colorscale  # not the sequential ramp
    per = heat_cells(token_heatmap(table, per_layer=True))
    for layer in (0, 2):
        zs = [v[0] for k, v in per.items() if k[0] == layer]
        assert np.median(zs) == pytest.approx(0.0)  # log10(value / layer median)
    assert "layer median" in token_heatmap(table, per_layer=True).layout.coloraxis.colorbar.title.text


def test_token_heatmap_zero_on_log_scale_sits_at_floor():
    table = token_table({0: [0, 2, 3, 10, 100, 1000, 5]})
    cells = heat_cells(token_heatmap(table))
    assert cells[(0, 0)][0] == pytest.approx(math.log10(2)) and cells[(0, 0)][2][1] == "0"
    with pytest.raises(ValueError, match="linear"):
        token_heatmap(token_table({0: [0] * 7}))


def test_token_heatmap_samples_and_validation():
    table = token_table(samples=(0, 1))
    assert heat_cells(token_heatmap(table))[(0, 3)][2][1] == "10"  # first sample by default
    fig = token_heatmap(table, sample=1)
    assert heat_cells(fig)[(0, 3)][2][1] == "20" and "sample 1" in fig.layout.title.text
    with pytest.raises(ValueError, match="sample 7"):
        token_heatmap(table, sample=7)
    with pytest.raises(ValueError, match="'token'"):
        token_heatmap(table.drop(columns="token"))
    with pytest.raises(ValueError, match="'lambda'"):
        token_heatmap(table, value="lambda")
    with pytest.raises(ValueError, match=r"layer\(s\) \[5\]"):
        token_heatmap(table, layers=[0, 5])
    with pytest.raises(ValueError, match="scale"):
        token_heatmap(table, scale="sqrt")


def test_token_heatmap_lambda_table():
    table = token_table().rename(columns={"norm": "lambda"}).drop(columns=["sample", "is_header"])
    fig = token_heatmap(table, value="lambda", scale="linear", title="probe")
    assert fig.layout.title.text == "probe" and "lambda" in fig.data[0].hovertemplate
    assert heat_cells(fig)[(2, 6)][0] == 8


def test_layer_token_heatmap():
    fig = layer_token_heatmap(token_table(), scale="log")
    (trace,) = fig.data
    assert list(trace.y) == ["L0", "L2"] and list(trace.x) == list(range(7))
    assert np.asarray(trace.z, dtype=float)[1, 4] == pytest.approx(math.log10(200))
    labels = list(fig.layout.xaxis.ticktext)
    assert labels[4] == "&lt;b&gt;&amp;x" and labels[3] == "␣Arr" and labels[0].startswith("<i>")
    assert trace.customdata[1][4][1] == "200"
    assert fig.layout.xaxis.title.text == "token" and fig.layout.yaxis.title.text == "layer"
    # readable labels: a 13 px font, at most 45 degrees, room for each label
    assert fig.layout.xaxis.tickfont.size >= 12 and abs(fig.layout.xaxis.tickangle) <= 45
    assert fig.layout.width >= 160 + 20 * len(labels)


def test_layer_token_heatmap_labels_stay_readable_on_a_long_answer():
    rows = [{"layer": l, "position": p, "token": f"tok{p}", "norm": 1.0 + p} for l in (0, 1) for p in range(200)]
    fig = layer_token_heatmap(pd.DataFrame(rows), scale="log")
    shown = len(fig.layout.xaxis.tickvals)
    assert shown <= 90 and fig.layout.width >= 160 + 20 * shown  # thinned out rather than squeezed

# ---------------------------------------------------------------------------------------------
# distributions

def test_magnitude_distribution_bands_exclude_header():
    table = token_table()
    table.loc[table.is_header, "norm"] = 1e9  # would dominate the max if header rows counted
    fig = magnitude_distribution(table)
    traces = {t.name: t for t in fig.data}
    body = table[~table.is_header]
    assert list(traces["max"].y) == [1000.0, 200.0]
    assert list(traces["median"].y) == pytest.approx(body.groupby("layer").norm.median().tolist())
    assert traces["p10–p90"].fill == "tonexty"
    assert list(traces["p10–p90"].y) == pytest.approx(body.groupby("layer").norm.quantile(0.1).tolist())
    assert fig.layout.yaxis.type == "log" and fig.layout.xaxis.title.text == "layer"
    box = magnitude_distribution(table, kind="box")
    assert max(box.data[0].y) == 1000 and len(box.data[0].y) == len(body)
    with pytest.raises(ValueError, match="'rel'"):
        magnitude_distribution(table, value="rel")


# ---------------------------------------------------------------------------------------------
# norm and signed coefficient


def test_coefficient_heatmap_norm_above_signed_coefficient_centred_at_zero():
    table = token_table()
    table["coef"] = table["norm"] * np.where(table["position"] % 2 == 0, 1.0, -0.5)
    fig = coefficient_heatmap(table)
    norm, coef = fig.data
    assert (norm.coloraxis, coef.coloraxis) == ("coloraxis", "coloraxis2")
    axis = fig.layout.coloraxis2
    assert axis.cmid == 0.0 and axis.cmin == -axis.cmax and axis.colorscale[0][1] != axis.colorscale[-1][1]
    z = np.asarray(coef.z, dtype=float)
    assert np.nanmax(np.abs(z), axis=1) == pytest.approx([1.0, 1.0])  # per layer: divided by its max |c|
    assert (z[:, 1] < 0).all() and (z[:, 0] > 0).all()  # the sign survives
    assert coef.customdata[1][5][1] == "-25" and coef.customdata[1][5][0] == "␣matey"  # raw values in the hover
    assert fig.layout.xaxis2.ticktext[4] == "&lt;b&gt;&amp;x"  # tokens escaped, under the lower panel
    assert fig.layout.coloraxis.colorbar.title.text.endswith("(log scale)")
    raw = coefficient_heatmap(table, per_layer=False, layers=[2])
    assert np.asarray(raw.data[1].z, dtype=float)[0].tolist() == table[table["layer"] == 2]["coef"].tolist()
    with pytest.raises(ValueError, match="missing column.*'coef'"):
        coefficient_heatmap(token_table())
    with pytest.raises(ValueError, match=r"layer\(s\) \[5\] not in the table"):
        coefficient_heatmap(table, layers=[5])
