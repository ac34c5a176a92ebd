"""Token heat maps: one response as text, each token coloured by a per-token value, per layer.

:func:`token_heatmap` draws the response as it reads (wrapped lines, one row per layer);
:func:`layer_token_heatmap` puts layers on y and token positions on x;
:func:`coefficient_heatmap` puts the norm and the signed coefficient along a direction one above
the other (log scale, and a diverging scale centred at 0); and
:func:`magnitude_distribution` shows how the values spread across tokens, per layer. Each takes a
tidy table (``layer, position, token, <value>``, as from
:func:`workbench.activations.deltas.token_magnitudes` or a lambda table) and returns a
``plotly.graph_objects.Figure`` with :data:`~workbench.viz.theme.TEMPLATE` applied.

Text that comes from the model (tokens) is HTML-escaped before plotly sees it: plotly renders a
subset of HTML in text, hover labels and tick labels, so a token such as ``<b>`` or ``&lt;`` would
otherwise be drawn as markup. Whitespace is made visible (space ``␣``, newline ``↵``, tab ``⇥``) and
special tokens (``<|im_start|>``) are kept whole and drawn in italics, as are assistant-header
tokens.
"""

from __future__ import annotations

import html
import math
import re
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.viz.checks import numeric_column, require_columns
from workbench.viz.theme import DIVERGING, SEQUENTIAL, TEMPLATE

__all__ = ["coefficient_heatmap", "display_token", "layer_token_heatmap", "magnitude_distribution", "token_heatmap"]

_SPECIAL = re.compile(r"^(<\|[^<>]*\|>|</?s>|<(unk|pad|bos|eos|mask)>)$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def display_token(token: str) -> str:
    """A legible (not yet escaped) form of a token: spaces ``␣``, newlines ``↵``, tabs ``⇥``,
    carriage returns ``␍``, other control characters ``\\xNN``, the empty string ``∅``."""
    token = "" if token is None or (isinstance(token, float) and math.isnan(token)) else str(token)
    if token == "":
        return "∅"
    shown = token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥").replace("\r", "␍")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", shown)


def _label(token: str, marked: bool = False) -> str:
    """Escaped label for plotly text; special (and ``marked``) tokens in italics."""
    text = html.escape(display_token(token), quote=False)
    return f"<i>{text}</i>" if marked or _SPECIAL.match(str(token)) else text


def _ticks_log(lo: float, hi: float, suffix: str = "") -> tuple[list[float], list[str]]:
    """Colour-bar ticks for values drawn as log10: positions in log units, labels in original units."""
    if hi - lo < 0.3:
        ticks = list(np.linspace(lo, hi, 4))
    else:
        mantissas = (1,) if hi - lo >= 3 else (1, 2, 5)
        ticks = [math.log10(m) + e for e in range(math.floor(lo), math.ceil(hi) + 1) for m in mantissas]
        ticks = [t for t in ticks if lo - 1e-9 <= t <= hi + 1e-9]
    return ticks, [_tick_text(10 ** t) + suffix for t in ticks]


def _tick_text(v: float) -> str:
    """``0.05``, ``2``, ``1,000``; scientific only outside [0.001, 1e6)."""
    if not 1e-3 <= v < 1e6:
        return f"{v:.0e}"
    return f"{v:,.0f}" if v >= 1000 else f"{v:.3g}"


#: Font size (px) of the token labels under a layer x token heat map: readable at 100% zoom.
TOKEN_LABEL_SIZE = 13

#: The least height of a token heat map, in px: its colour bar spans the plot area, so this keeps
#: the bar readable (>= 150 px) when only one layer and one line are drawn.
MIN_HEIGHT = 240


def _colour(values: np.ndarray, groups: np.ndarray | None, scale: str, value: str,
            zrange: tuple[float, float] | None = None) -> tuple[np.ndarray, dict]:
    """Map raw values to what the heat map draws, and the matching ``layout.coloraxis``.

    ``groups`` (per-value layer ids) divides each layer by its own reference first: the median of
    its positive values (log), its max (linear) or its max |value| (diverging). ``zrange`` fixes
    the colour scale's ends (in the units after that division) instead of the data's own.
    """
    if scale not in ("log", "linear", "diverging"):
        raise ValueError(f"scale must be 'log', 'linear' or 'diverging', got {scale!r}")
    v = np.asarray(values, dtype=float).copy()
    title, suffix = value, ""
    if groups is not None:
        ref_name = {"log": "layer median", "linear": "layer max", "diverging": "layer max |value|"}[scale]
        for g in np.unique(groups):
            sel = groups == g
            part = v[sel]
            if scale == "log":
                pos = part[part > 0]
                ref = float(np.median(pos)) if len(pos) else 1.0
            else:
                ref = float(np.nanmax(np.abs(part))) if np.isfinite(part).any() else 1.0
            v[sel] = part / (ref if ref > 0 else 1.0)
        title, suffix = f"{value} / {ref_name}", ("×" if scale == "log" else "")
    finite = v[np.isfinite(v)]
    if zrange is not None:
        zlo, zhi = (float(x) for x in zrange)
        if not (np.isfinite(zlo) and np.isfinite(zhi)) or zhi <= zlo or (scale == "log" and zlo <= 0):
            raise ValueError(f"zrange must be (low, high) with low < high (and low > 0 for scale='log'), got {zrange!r}")
    if scale == "log":
        positive = finite[finite > 0]
        if not len(positive):
            raise ValueError(f"scale='log' needs positive values in {value!r}; use scale='linear'")
        floor = positive.min() if zrange is None else zlo
        z = np.log10(np.clip(v, floor, None))  # values <= 0 sit at the bottom of the scale
        lo, hi = float(np.log10(positive.min())), float(np.log10(positive.max()))
        if zrange is not None:
            lo, hi = math.log10(zlo), math.log10(zhi)
        hi = hi if hi > lo else lo + 1e-6
        tickvals, ticktext = _ticks_log(lo, hi, suffix)
        axis = dict(colorscale=SEQUENTIAL, cmin=lo, cmax=hi,
                    colorbar=dict(title=dict(text=f"{title}<br>(log scale)"), tickvals=tickvals, ticktext=ticktext))
    elif scale == "linear":
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        if zrange is not None:
            lo, hi = zlo, zhi
            title = f"{title}<br>(fixed range)"
        z = v
        axis = dict(colorscale=SEQUENTIAL, cmin=lo, cmax=hi if hi > lo else lo + 1e-6,
                    colorbar=dict(title=dict(text=title)))
    else:
        m = float(np.abs(finite).max()) if len(finite) else 1.0
        if zrange is not None:
            m = max(abs(zlo), abs(zhi))
        z = v
        axis = dict(colorscale=DIVERGING, cmin=-(m or 1.0), cmax=m or 1.0, cmid=0.0,
                    colorbar=dict(title=dict(text=title)))
    axis["colorbar"].update(thickness=14, outlinewidth=0)
    return z, axis


def _one_response(table: pd.DataFrame, value: str, sample, layers, what: str):
    """One sample (the smallest id when ``sample`` is None) at the chosen layers, as
    ``(sample, layers, positions, tokens, is_header, values [layers, positions])``."""
    require_columns(table, ["layer", "position", "token", value], what)
    if sample is None and "sample" in table.columns:
        sample = sorted(pd.unique(table["sample"]))[0]
    if sample is not None:
        if "sample" not in table.columns:
            raise ValueError(f"{what}: sample={sample!r} given but the table has no 'sample' column")
        if sample not in set(table["sample"]):
            have = sorted(pd.unique(table["sample"]))[:10]
            raise ValueError(f"{what}: sample {sample!r} not in the table (have {have})")
        table = table[table["sample"] == sample]
    have = sorted(pd.unique(table["layer"]))
    layers = have if layers is None else list(layers)
    missing = [layer for layer in layers if layer not in have]
    if missing:
        raise ValueError(f"{what}: layer(s) {missing} not in the table (have {have})")
    rows = table[table["layer"].isin(layers)]
    if rows.duplicated(["layer", "position"]).any():
        raise ValueError(f"{what}: several rows share one (layer, position); select a single sample")
    rows = rows.assign(**{value: numeric_column(rows, value, what)})
    positions = [int(p) for p in sorted(pd.unique(rows["position"]))]
    first = rows.drop_duplicates("position").set_index("position")
    tokens = [first.at[p, "token"] for p in positions]
    header = [bool(first.at[p, "is_header"]) if "is_header" in first.columns else False for p in positions]
    raw = rows.pivot(index="layer", columns="position", values=value).reindex(index=layers, columns=positions)
    return sample, layers, positions, tokens, header, raw.to_numpy(dtype=float)


def _hover_cells(positions, tokens, header, raw: np.ndarray, layers) -> np.ndarray:
    """customdata ``[escaped token (+ header note), raw value text, layer, position]`` per cell."""
    shown = [html.escape(display_token(t), quote=False) + (" (assistant header)" if h else "")
             for t, h in zip(tokens, header)]
    custom = np.empty(raw.shape + (4,), dtype=object)
    for r, c in np.ndindex(raw.shape):
        value = "missing" if np.isnan(raw[r, c]) else f"{raw[r, c]:.4g}"
        custom[r, c] = [shown[c], value, int(layers[r]), positions[c]]
    return custom



def token_heatmap(
    table: pd.DataFrame, value: str = "norm", layers: Sequence[int] | None = None, sample=None,
    scale: str = "log", title: str | None = None, per_layer: bool = False, wrap: int = 80,
    max_tokens: int | None = None, zrange: tuple[float, float] | None = None,
) -> go.Figure:
    """One response as text, each token's background coloured by ``value``, one row per layer.

    Args:
        table: tidy rows with columns ``layer, position, token, <value>`` and optionally
            ``sample`` and ``is_header`` (as returned by :func:`workbench.activations.deltas.token_magnitudes`,
            or a lambda table with a ``lambda`` column).
        value: the column to colour by (``"norm"``, ``"rel_norm"``, ``"lambda"``, ...).
        layers: layers to show, top to bottom (default: all in the table).
        sample: which response (default: the smallest sample id when the table has several).
        scale: ``"log"`` (colour on log10(value); colour-bar labels in the original units; values
            <= 0 are drawn at the bottom of the scale), ``"linear"``, or ``"diverging"`` (symmetric
            around 0, for signed values).
        per_layer: divide each layer by its own median (log) or max (linear, diverging) first,
            since residual norms grow with depth; the colour bar then reads "× layer median".
        wrap: line width in characters; the response wraps into several lines (a token with a
            newline also ends its line), each line a block of layer rows.
        max_tokens: keep only the first ``max_tokens`` tokens (a note under the figure says so).
        zrange: ``(low, high)``: fix the colour scale's ends (values beyond take the end colour),
            so that figures of different data share one scale (the lambda explorer across alpha);
            default: the data's own range.

    Each cell is as wide as its token text. Hover shows token, position, layer and raw value.
    Header tokens (``is_header``) and special tokens are in italics.

    Example:
        >>> import pandas as pd
        >>> table = pd.DataFrame({"layer": [0, 0, 0, 1, 1, 1], "position": [0, 1, 2] * 2,
        ...                       "token": ["Arr", " matey", "!"] * 2, "norm": [1.0, 10.0, 2.0, 4.0, 40.0, 8.0]})
        >>> fig = token_heatmap(table, "norm", title="||Delta_PS|| per token")
        >>> list(fig.data[0].text[0]), fig.layout.yaxis.ticktext
        (['Arr', '␣matey', '!'], ('L0', 'L1'))
        >>> fig.data[0].customdata[1][1].tolist()  # hover: token, raw value, layer, position
        ['␣matey', '40', 1, 1]
    """
    what = "token_heatmap"
    sample, layers, positions, tokens, header, raw = _one_response(table, value, sample, layers, what)
    if wrap < 1:
        raise ValueError(f"{what}: wrap must be >= 1, got {wrap}")
    total = len(positions)
    if max_tokens is not None:
        if max_tokens < 1:
            raise ValueError(f"{what}: max_tokens must be >= 1, got {max_tokens}")
        positions, tokens, header, raw = positions[:max_tokens], tokens[:max_tokens], header[:max_tokens], \
            raw[:, :max_tokens]
    groups = np.repeat(np.asarray(layers)[:, None], len(positions), 1) if per_layer else None
    z_all, coloraxis = _colour(raw, groups, scale, value, zrange)
    hover = _hover_cells(positions, tokens, header, raw, layers)

    # greedy wrapping into lines of at most `wrap` character units; "\n" ends a line
    widths = [max(len(display_token(t)), 1) + 1.5 for t in tokens]
    lines, current, used = [], [], 0.0
    for i, (tok, w) in enumerate(zip(tokens, widths)):
        if current and used + w > wrap:
            lines.append(current)
            current, used = [], 0.0
        current.append(i)
        used += w
        if "\n" in str(tok):
            lines.append(current)
            current, used = [], 0.0
    if current:
        lines.append(current)

    n, gap = len(layers), 0.6
    fig = go.Figure()
    tickvals, ticktext = [], []
    for k, line in enumerate(lines):
        top = k * (n + gap)
        x = np.concatenate([[0.0], np.cumsum([widths[i] for i in line])])
        y = top - 0.5 + np.arange(n + 1)
        cols = np.asarray(line)
        fig.add_trace(go.Heatmap(
            x=x, y=y, z=z_all[:, cols], coloraxis="coloraxis", xgap=1, ygap=1,
            text=[[_label(tokens[i], header[i]) for i in line]] * n, texttemplate="%{text}",
            textfont=dict(size=12), customdata=hover[:, cols], name=f"line {k + 1}",
            hovertemplate=("<b>%{customdata[0]}</b><br>position %{customdata[3]}, layer %{customdata[2]}"
                           f"<br>{html.escape(value)} = %{{customdata[1]}}<extra></extra>"),
        ))
        tickvals += list(top + np.arange(n))
        ticktext += [f"L{layer}" for layer in layers]
    row_px = 24
    height = int(110 + row_px * (len(lines) * n + (len(lines) - 1) * gap) + (30 if len(positions) < total else 0))
    height = max(height, MIN_HEIGHT)  # a short figure (one layer, one line) would squash the colour bar
    default = f"{value} per token" + (f", sample {sample}" if sample is not None else "")
    fig.update_layout(
        template=TEMPLATE, title=dict(text=default if title is None else title), height=height, width=900,
        coloraxis=coloraxis, margin=dict(l=60, r=20, t=50, b=30 if len(positions) == total else 55),
        xaxis=dict(visible=False, range=[0, max([wrap] + [sum(widths[i] for i in line) for line in lines])],
                   showgrid=False),
        yaxis=dict(autorange="reversed", tickvals=tickvals, ticktext=ticktext, showgrid=False, showline=False,
                   ticks="", title=None),
    )
    if len(positions) < total:
        fig.add_annotation(text=f"showing the first {len(positions)} of {total} tokens", xref="paper",
                           yref="paper", x=0, y=0, yshift=-25, showarrow=False, xanchor="left",
                           font=dict(size=12, color="#666666"))
    return fig


def layer_token_heatmap(
    table: pd.DataFrame, value: str = "norm", sample=None, scale: str = "log",
    layers: Sequence[int] | None = None, per_layer: bool = False, title: str | None = None,
) -> go.Figure:
    """Layers on y, token positions on x (token strings as tick labels), for one response.

    Args:
        table: columns ``layer, position, token, <value>``, optionally ``sample, is_header``
            (see :func:`token_heatmap`; same ``sample``, ``scale`` and ``per_layer`` semantics).
    """
    what = "layer_token_heatmap"
    sample, layers, positions, tokens, header, raw = _one_response(table, value, sample, layers, what)
    groups = np.repeat(np.asarray(layers)[:, None], len(positions), 1) if per_layer else None
    z, coloraxis = _colour(raw, groups, scale, value)
    custom = _hover_cells(positions, tokens, header, raw, layers)
    step = max(1, math.ceil(len(positions) / 90))
    fig = go.Figure(go.Heatmap(
        x=positions, y=[f"L{layer}" for layer in layers], z=z, coloraxis="coloraxis", customdata=custom,
        hovertemplate=("<b>%{customdata[0]}</b><br>position %{x}, layer %{customdata[2]}"
                       f"<br>{html.escape(value)} = %{{customdata[1]}}<extra></extra>"),
    ))
    default = f"{value} by layer and token" + (f", sample {sample}" if sample is not None else "")
    fig.update_layout(
        template=TEMPLATE, title=dict(text=default if title is None else title), coloraxis=coloraxis,
        width=max(600, min(2400, 160 + 24 * len(positions[::step]))), height=max(380, 220 + 18 * len(layers)),
        xaxis=dict(tickvals=positions[::step], ticktext=[_label(t, h) for t, h in zip(tokens, header)][::step],
                   tickangle=-45, tickfont=dict(size=TOKEN_LABEL_SIZE), showgrid=False, title=dict(text="token"),
                   automargin=True),
        yaxis=dict(title=dict(text="layer"), autorange="reversed", showgrid=False),
    )
    return fig


def coefficient_heatmap(
    table: pd.DataFrame, sample=None, layers: Sequence[int] | None = None, norm: str = "norm", coef: str = "coef",
    per_layer: bool = True, title: str | None = None,
) -> go.Figure:
    """``||Delta_PS||`` and its signed coefficient along a direction, for one response: two heat maps,
    one above the other, layers on y and the same tokens on x.

    The top panel is the norm on a log scale (as :func:`layer_token_heatmap`); the bottom one is
    ``c_t = <D_t, z>`` on a diverging scale centred at 0 (red: pushed along ``z``, blue: against
    it, white: left alone along ``z``, however large its norm). With ``per_layer`` each layer is
    divided by its own median norm (top) and its own largest ``|c_t|`` (bottom), since both grow
    with depth. Hover shows the raw values.

    Args:
        table: columns ``layer, position, token, <norm>, <coef>``, optionally ``sample, is_header``
            (as from :func:`workbench.activations.directions.coefficient_table`).

    Example:
        >>> import pandas as pd
        >>> table = pd.DataFrame({"layer": [0, 0, 0], "position": [0, 1, 2], "token": ["Arr", " matey", "!"],
        ...                       "norm": [2.0, 8.0, 1.0], "coef": [1.5, 7.0, -0.5]})
        >>> fig = coefficient_heatmap(table, per_layer=False)
        >>> [trace.coloraxis for trace in fig.data], fig.layout.coloraxis2.cmid
        (['coloraxis', 'coloraxis2'], 0.0)
        >>> fig.data[1].z.tolist()  # the signed coefficient, as measured
        [[1.5, 7.0, -0.5]]
    """
    what = "coefficient_heatmap"
    require_columns(table, [coef], what)
    sample, layers, positions, tokens, header, size = _one_response(table, norm, sample, layers, what)
    signed = _one_response(table, coef, sample, layers, what)[5]
    groups = np.repeat(np.asarray(layers)[:, None], len(positions), 1) if per_layer else None
    z_norm, axis_norm = _colour(size, groups, "log", norm)
    z_coef, axis_coef = _colour(signed, groups, "diverging", coef)
    axis_norm["colorbar"].update(y=1.0, yanchor="top", len=0.48)
    axis_coef["colorbar"].update(y=0.0, yanchor="bottom", len=0.48)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=(f"||D|| ({norm})", f"coefficient along z ({coef}), signed"))
    step = max(1, math.ceil(len(positions) / 90))
    y = [f"L{layer}" for layer in layers]
    for row, (z, raw, name, axis) in enumerate(((z_norm, size, norm, "coloraxis"), (z_coef, signed, coef, "coloraxis2")), 1):
        fig.add_trace(go.Heatmap(
            x=positions, y=y, z=z, coloraxis=axis, customdata=_hover_cells(positions, tokens, header, raw, layers),
            name=name, hovertemplate=("<b>%{customdata[0]}</b><br>position %{x}, layer %{customdata[2]}"
                                      f"<br>{html.escape(name)} = %{{customdata[1]}}<extra></extra>")), row=row, col=1)
        fig.update_yaxes(title=dict(text="layer"), autorange="reversed", showgrid=False, row=row, col=1)
    fig.update_xaxes(showgrid=False, tickvals=positions[::step], row=1, col=1, showticklabels=False)
    fig.update_xaxes(showgrid=False, tickvals=positions[::step], tickangle=-45, tickfont=dict(size=TOKEN_LABEL_SIZE),
                     ticktext=[_label(t, h) for t, h in zip(tokens, header)][::step], title=dict(text="token"),
                     automargin=True, row=2, col=1)
    default = "||Delta_PS|| and its coefficient along z" + (f", sample {sample}" if sample is not None else "")
    fig.update_layout(
        template=TEMPLATE, title=dict(text=default if title is None else title), coloraxis=axis_norm,
        coloraxis2=axis_coef, width=max(600, min(2400, 160 + 24 * len(positions[::step]))),
        height=max(520, 300 + 36 * len(layers)),
    )
    return fig


def magnitude_distribution(
    table: pd.DataFrame, value: str = "norm", layers: Sequence[int] | None = None, kind: str = "bands",
    title: str | None = None,
) -> go.Figure:
    """How per-token magnitudes spread across tokens, per layer, on a log y axis.

    Args:
        table: columns ``layer, <value>``, optionally ``is_header`` and ``sample``. Tokens of all
            samples are pooled. Rows with ``is_header`` true are **excluded** (the assistant header
            is the same text in every sample and is not part of the response).
        kind: ``"bands"``: p10-p90 band, median and max per layer (hover adds p90/p10);
            ``"box"``: one box per layer.
    """
    what = "magnitude_distribution"
    require_columns(table, ["layer", value], what)
    if kind not in ("bands", "box"):
        raise ValueError(f"{what}: kind must be 'bands' or 'box', got {kind!r}")
    rows = table[~table["is_header"].astype(bool)] if "is_header" in table.columns else table
    have = sorted(pd.unique(rows["layer"]))
    layers = have if layers is None else list(layers)
    missing = [layer for layer in layers if layer not in have]
    if missing:
        raise ValueError(f"{what}: layer(s) {missing} have no (non-header) rows (have {have})")
    rows = rows[rows["layer"].isin(layers)].assign(_v=lambda d: numeric_column(d, value, what))
    fig = go.Figure()
    if kind == "box":
        fig.add_trace(go.Box(x=rows["layer"], y=rows["_v"], name=value, boxpoints="outliers",
                             marker=dict(color="#0072B2", size=3), line=dict(width=1.2)))
    else:
        stats = rows.groupby("layer")["_v"].quantile([0.1, 0.5, 0.9]).unstack().reindex(layers)
        stats["max"] = rows.groupby("layer")["_v"].max()
        p10, p50, p90, top = (stats[c].to_numpy() for c in (0.1, 0.5, 0.9, "max"))
        ratio = np.where(p10 > 0, p90 / np.where(p10 > 0, p10, 1), np.nan)
        fig.add_trace(go.Scatter(x=layers, y=p90, mode="lines", line=dict(width=0), showlegend=False,
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=layers, y=p10, mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor="rgba(0,114,178,0.25)", name="p10–p90", hoverinfo="skip"))
        fig.add_trace(go.Scatter(
            x=layers, y=p50, mode="lines+markers", name="median", line=dict(color="#0072B2", width=2.5),
            customdata=np.stack([p10, p90, top, ratio], axis=1),
            hovertemplate=("layer %{x}<br>median %{y:.3g}<br>p10 %{customdata[0]:.3g}, p90 %{customdata[1]:.3g}"
                           "<br>max %{customdata[2]:.3g}<br>p90/p10 = %{customdata[3]:.2f}<extra></extra>")))
        fig.add_trace(go.Scatter(x=layers, y=top, mode="lines+markers", name="max",
                                 line=dict(color="#D55E00", dash="dot", width=1.5), marker=dict(size=5)))
    fig.update_layout(template=TEMPLATE, title=dict(text=title or f"Spread of per-token {value} across tokens"),
                      xaxis=dict(title=dict(text="layer")),
                      yaxis=dict(type="log", title=dict(text=f"{value} (log scale)")))
    return fig
