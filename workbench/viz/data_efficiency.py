"""The data-efficiency figure: TA@C against the number of training triplets, one line per method."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.viz.checks import numeric_column, require_columns
from workbench.viz.theme import TEMPLATE, method_colors, method_order

#: Methods whose value does not depend on the training data: drawn as a band across the sizes.
REFERENCES = ("prompt", "no steering")


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def data_efficiency_figure(table: pd.DataFrame, title: str | None = None, target: str = "C80") -> go.Figure:
    """Lines of TA@``target`` (with the bootstrap intervals as error bars) against the number of
    kept triplets each method was trained on (log-2 axis); the prompt and no steering, which use
    no triplets, are a dashed line with a shaded interval.

    ``table``: :func:`workbench.evaluation.data_efficiency.efficiency_table`.
    """
    what = "data_efficiency_figure"
    require_columns(table, ["method", "n_train", "attribute", "attribute_lo", "attribute_hi"], what)
    sizes = sorted({int(s) for s in numeric_column(table, "n_train", what)})
    colours = method_colors(method_order(table["method"]))
    fig = go.Figure()
    for method in method_order(table["method"]):
        part = table[table["method"] == method].sort_values("n_train")
        y, lo, hi = (numeric_column(part, c, what) for c in ("attribute", "attribute_lo", "attribute_hi"))
        x = numeric_column(part, "n_train", what)
        colour = colours[method]
        if method in REFERENCES:
            mean, low, high = float(np.nanmean(y)), float(np.nanmean(lo)), float(np.nanmean(hi))
            fig.add_trace(go.Scatter(x=[sizes[0], sizes[-1], sizes[-1], sizes[0]], y=[low, low, high, high],
                                     fill="toself", fillcolor=_rgba(colour, 0.12), line=dict(width=0),
                                     hoverinfo="skip", showlegend=False))
            fig.add_trace(go.Scatter(x=[sizes[0], sizes[-1]], y=[mean, mean], mode="lines", name=method,
                                     line=dict(color=colour, dash="dash", width=2),
                                     hovertemplate=f"{method}: %{{y:.1f}} [{low:.1f}, {high:.1f}]<extra></extra>"))
            continue
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers", name=method, line=dict(color=colour, width=2), marker=dict(size=8),
            error_y=dict(type="data", symmetric=False, array=np.nan_to_num(hi - y), arrayminus=np.nan_to_num(y - lo),
                         thickness=1.5, width=5),
            hovertemplate=f"{method}<br>%{{x}} triplets: TA %{{y:.1f}}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, title=title or f"Data efficiency: TA@{target} by training triplets",
                      xaxis_title="kept training triplets (log scale)", yaxis_title=f"attribute score at {target}",
                      legend_title_text="method", width=760, height=460)
    fig.update_xaxes(type="log", tickvals=sizes, ticktext=[str(s) for s in sizes])
    return fig
