"""Figures of a policy gate: the scores of both prompt kinds against the threshold, F1 per layer.

Both take tidy tables and return a ``plotly.graph_objects.Figure`` (never shown here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.viz.checks import numeric_column, require_columns
from workbench.viz.theme import FALLBACK_COLORS, apply_template

__all__ = ["gate_f1_by_layer", "gate_scores"]

_KIND_COLORS = ("#D55E00", "#0072B2")


def gate_scores(scores: pd.DataFrame, threshold: float, comparator: str = ">", *,
                title: str = "Gate scores by prompt kind") -> go.Figure:
    """One strip of points per prompt kind (jittered), the threshold as a vertical line, and the
    side the gate flags shaded.

    Args:
        scores: ``score``, ``kind`` (e.g. "sea and ships" / "other"), optionally ``question`` (hover).
        threshold: where the gate decides; ``comparator`` ``">"`` flags scores above it, ``"<"`` below.
    """
    what = "gate_scores"
    require_columns(scores, ["score", "kind"], what)
    values = numeric_column(scores, "score", what)
    if not np.isfinite(float(threshold)):
        raise ValueError(f"{what}: threshold must be finite, got {threshold!r}")
    if comparator not in (">", "<"):
        raise ValueError(f"{what}: comparator must be '>' or '<', got {comparator!r}")
    kinds = list(dict.fromkeys(scores["kind"].astype(str)))
    rng = np.random.default_rng(0)
    fig = go.Figure()
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    pad = 0.05 * (hi - lo or 1.0)
    left, right = min(lo, threshold) - pad, max(hi, threshold) + pad
    fig.add_vrect(x0=threshold if comparator == ">" else left, x1=right if comparator == ">" else threshold,
                  fillcolor="#D55E00", opacity=0.07, line_width=0, annotation_text="steered",
                  annotation_position="top left" if comparator == ">" else "top right")
    for i, kind in enumerate(kinds):
        mask = (scores["kind"].astype(str) == kind).to_numpy()
        hover = scores["question"][mask].astype(str) if "question" in scores else None
        fig.add_trace(go.Scatter(
            x=values[mask], y=i + rng.uniform(-0.25, 0.25, int(mask.sum())), mode="markers", name=kind,
            text=hover, hovertemplate="%{x:.3f}<br>%{text}<extra>" + kind + "</extra>" if hover is not None else None,
            marker=dict(size=7, opacity=0.75, color=(_KIND_COLORS + FALLBACK_COLORS)[i % (2 + len(FALLBACK_COLORS))])))
    fig.add_vline(x=float(threshold), line_dash="dash", line_color="#333333",
                  annotation_text=f"threshold {threshold:.3f}", annotation_position="bottom right")
    fig.update_layout(title=title, xaxis_title=f"gate score (flagged when score {comparator} threshold)",
                      yaxis=dict(tickvals=list(range(len(kinds))), ticktext=kinds, range=[-0.6, len(kinds) - 0.4]),
                      xaxis_range=[left, right], height=260 + 40 * len(kinds))
    return apply_template(fig)


def gate_f1_by_layer(table: pd.DataFrame, *, title: str = "Validation F1 of the best threshold at each layer") -> go.Figure:
    """F1 (and precision, recall) of the best threshold at each layer, from
    :attr:`workbench.steering.gates.GateSearch.table` (``layer``, ``f1``, ``precision``, ``recall``)."""
    what = "gate_f1_by_layer"
    require_columns(table, ["layer", "f1", "precision", "recall"], what)
    fig = go.Figure()
    for column, colour in (("f1", "#000000"), ("precision", "#0072B2"), ("recall", "#E69F00")):
        group = table.groupby("layer", sort=True)[column].max()
        fig.add_trace(go.Scatter(x=group.index, y=group.values, mode="lines+markers", name=column,
                                 line=dict(color=colour, width=3 if column == "f1" else 1.5)))
    fig.update_layout(title=title, xaxis_title="layer (blocks.{l}.hook_resid_post)", yaxis_title="validation",
                      yaxis_range=[0, 1.05])
    return apply_template(fig)
