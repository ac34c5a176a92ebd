"""How many directions the prompt uses: the share of ``sum_t ||Delta_PS||^2`` held by ``k`` directions.

:func:`share_vs_k` draws the table of :func:`workbench.evaluation.assumptions.share_curves`: for
each layer band, the held-out share along the top ``k`` principal directions of the training
deltas (solid, with its interval over responses as a band) against ``k`` random orthonormal
directions (dashed, about ``k / d_model``), ``k`` on a log-2 axis, with lines at 50 % and 80 %.
Returns a ``plotly.graph_objects.Figure`` with :data:`~workbench.viz.theme.TEMPLATE` applied; never
calls ``show()``.
"""

from __future__ import annotations

import html
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.viz.checks import numeric_column, require_columns
from workbench.viz.theme import FALLBACK_COLORS, TEMPLATE

__all__ = ["share_vs_k"]

#: Band colours, early to late layers (Okabe-Ito blue, green, orange, vermillion, purple, ...).
BAND_COLORS = ("#0072B2", "#009E73", "#E69F00", "#D55E00", "#CC79A7", "#56B4E9", *FALLBACK_COLORS)


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def share_vs_k(curves: pd.DataFrame, targets: Sequence[float] = (0.5, 0.8), title: str | None = None) -> go.Figure:
    """Share of the held-out ``sum_t ||D_t||^2`` against the number of directions ``k``, one line per layer band.

    Args:
        curves: columns ``layers, k, basis, share`` and optionally ``lo, hi`` (a band) and ``n``;
            ``basis`` is ``"principal"`` (solid) or ``"random"`` (dashed), ``layers`` the band's label.
        targets: shares marked by dotted horizontal lines.

    Example:
        >>> import pandas as pd
        >>> curves = pd.DataFrame({"layers": ["layers 0-1"] * 4, "k": [1, 2, 1, 2],
        ...                        "basis": ["principal", "principal", "random", "random"],
        ...                        "share": [0.7, 0.9, 0.02, 0.04]})
        >>> fig = share_vs_k(curves)
        >>> [(t.name, t.line.dash) for t in fig.data]
        [('layers 0-1: top-k principal', 'solid'), ('layers 0-1: k random', 'dash')]
        >>> fig.layout.xaxis.type, list(fig.layout.xaxis.tickvals)
        ('log', [1, 2])
    """
    what = "share_vs_k"
    require_columns(curves, ["layers", "k", "basis", "share"], what)
    unknown = sorted(set(curves["basis"]) - {"principal", "random"})
    if unknown:
        raise ValueError(f"{what}: basis must be 'principal' or 'random', got {unknown}")
    bands = {"lo", "hi"} <= set(curves.columns)
    fig = go.Figure()
    labels = list(pd.unique(curves["layers"]))
    for i, label in enumerate(labels):
        colour = BAND_COLORS[i % len(BAND_COLORS)]
        for basis, name, dash in (("principal", "top-k principal", "solid"), ("random", "k random", "dash")):
            part = curves[(curves["layers"] == label) & (curves["basis"] == basis)].sort_values("k")
            if part.empty:
                continue
            x, y = numeric_column(part, "k", what), numeric_column(part, "share", what)
            if bands:
                lo, hi = numeric_column(part, "lo", what), numeric_column(part, "hi", what)
                ok = ~(np.isnan(lo) | np.isnan(hi))
                if ok.any():
                    fig.add_trace(go.Scatter(
                        x=np.concatenate([x[ok], x[ok][::-1]]), y=np.concatenate([hi[ok], lo[ok][::-1]]),
                        fill="toself", fillcolor=_rgba(colour, 0.15 if basis == "principal" else 0.08),
                        line=dict(width=0), legendgroup=str(label), showlegend=False, hoverinfo="skip",
                        name=f"{label}: {name} interval"))
            fig.add_trace(go.Scatter(
                x=x, y=y, mode="lines+markers", name=f"{label}: {name}", legendgroup=str(label),
                line=dict(color=colour, dash=dash, width=2.5 if basis == "principal" else 1.5),
                marker=dict(size=6 if basis == "principal" else 4),
                hovertemplate=(f"{html.escape(str(label))}, {name}<br>k = %{{x}}<br>share %{{y:.3f}}"
                               "<extra></extra>")))
    for target in targets:
        fig.add_hline(y=float(target), line=dict(color="#999999", dash="dot", width=1.2),
                      annotation_text=f"{100 * float(target):.0f} %", annotation_position="bottom right")
    ks = sorted({int(k) for k in curves["k"]})
    n = f" ({int(curves['n'].iloc[0])} held-out responses)" if "n" in curves.columns and len(curves) else ""
    fig.update_layout(
        template=TEMPLATE, title=dict(text=title or f"Share of ||Delta_PS||^2 held by k directions{n}"),
        xaxis=dict(type="log", tickvals=ks, ticktext=[str(k) for k in ks], title=dict(text="k (directions)")),
        yaxis=dict(range=[0, 1.02], tickformat=".0%", title=dict(text="share of sum ||D||^2 (held out)")),
        height=max(450, 160 + 24 * 2 * len(labels)))
    return fig
