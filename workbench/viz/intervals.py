"""Intervals as a forest plot: one row per difference (or statistic), its point and its interval,
against a reference line (0 for a difference, 1 for a relative RMSE)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.viz.checks import numeric_column, require_columns
from workbench.viz.theme import apply_template

__all__ = ["interval_forest"]


def interval_forest(frame: pd.DataFrame, label: str = "label", value: str = "difference", lo: str = "lo",
                    hi: str = "hi", reference: float = 0.0, title: str | None = None,
                    x_title: str = "difference (95% interval)") -> go.Figure:
    """Points with horizontal interval bars, one row per line of ``frame`` (top to bottom in order).

    Args:
        frame: columns ``<label>, <value>, <lo>, <hi>``; rows with a NaN value are drawn as
            "not measured" labels without a point.
        reference: where the dashed vertical line goes (the "no difference" value).
    """
    require_columns(frame, [label, value, lo, hi], "interval_forest")
    if frame.empty:
        raise ValueError("interval_forest: no rows to draw")
    values, lows, highs = (numeric_column(frame, c, "interval_forest") for c in (value, lo, hi))
    labels = [str(v) for v in frame[label]]
    excludes = [(l > reference or h < reference) for l, h in zip(lows, highs)]
    colours = ["#1f77b4" if e else "#7f7f7f" for e in excludes]
    fig = go.Figure(go.Scatter(
        x=values, y=labels, mode="markers", marker=dict(size=9, color=colours),
        error_x=dict(type="data", symmetric=False, array=highs - values, arrayminus=values - lows, thickness=1.5),
        hovertemplate="%{y}: %{x:.3g}<extra></extra>", showlegend=False))
    fig.add_vline(x=reference, line=dict(dash="dash", color="#444", width=1))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(title=title, xaxis_title=x_title, height=max(220, 60 + 36 * len(labels)),
                      margin=dict(l=10, r=10, t=50 if title else 20, b=40))
    return apply_template(fig)
