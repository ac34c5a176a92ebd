"""Paper-ready plotly figures from plain pandas DataFrames.

Every function takes tidy DataFrames (or plain dicts) and returns a ``plotly.graph_objects.Figure``;
none calls ``show()`` and none touches a model. All figures use one template, ``"workbench"``
(white background, readable fonts), and one colour per method name (:func:`method_color`), so a
method looks the same in every figure of a notebook or paper.

Text that comes from the model (tokens) is HTML-escaped before plotly sees it: plotly renders a
subset of HTML in text, hover labels and tick labels, so a token such as ``<b>`` or ``&lt;`` would
otherwise be drawn as markup. Whitespace is made visible (space ``␣``, newline ``↵``, tab ``⇥``) and
special tokens (``<|im_start|>``) are kept whole and drawn in italics, as are assistant-header
tokens.

:func:`export_figure` writes PNG/SVG/PDF through kaleido, which needs a Chrome or Chromium.
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import zlib
from contextlib import ExitStack
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from workbench.core.files import atomic_path

__all__ = [
    "FALLBACK_COLORS", "FigureExportError", "METHOD_COLORS", "TEMPLATE", "apply_template",
    "coherence_tradeoff", "display_token", "export_figure", "faithfulness_curves", "find_browser",
    "layer_token_heatmap", "loss_curves", "magnitude_distribution", "method_color", "method_colors",
    "radar_chart", "results_bars", "token_heatmap",
]

# ----------------------------------------------------------------------------------------------
# Template and colours
# ----------------------------------------------------------------------------------------------

#: Fixed colours (Okabe-Ito based, colour-blind safe) for the methods the paper compares.
METHOD_COLORS: dict[str, str] = {
    "prompt": "#000000",
    "no steering": "#999999",
    "paraphrase": "#8C6D31",
    "Const-DiM": "#56B4E9",
    "Const-MSE": "#0072B2",
    "S-PSR": "#E69F00",
    "A-PSR": "#D55E00",
    "PSR + prompt": "#CC79A7",
    "rank-2 PSR": "#009E73",
}
#: Colours for other method names, chosen to stay apart from :data:`METHOD_COLORS`.
FALLBACK_COLORS: tuple[str, ...] = (
    "#7570B3", "#E7298A", "#66A61E", "#BCBD22", "#8B0000", "#17BECF", "#3F007D",
)

# Sequential ramp shared with the HTML report (light yellow -> orange -> dark purple).
SEQUENTIAL = [[0.0, "#FFFFE5"], [0.2, "#FEE391"], [0.4, "#FE9929"], [0.6, "#D95F0E"],
              [0.8, "#993404"], [1.0, "#54278F"]]
DIVERGING = "RdBu_r"


def _key(name: str) -> str:
    return re.sub(r"[\s_]+", "", str(name)).lower()


_KEYS = {_key(name): colour for name, colour in METHOD_COLORS.items()}
_ORDER = {_key(name): i for i, name in enumerate(METHOD_COLORS)}


def method_color(name: str) -> str:
    """The colour of a method: fixed for the paper's methods (case and spaces ignored), otherwise
    a stable pick from :data:`FALLBACK_COLORS` by a hash of the name (same in every session)."""
    colour = _KEYS.get(_key(name))
    if colour is not None:
        return colour
    return FALLBACK_COLORS[zlib.crc32(_key(name).encode()) % len(FALLBACK_COLORS)]


def method_colors(names: Iterable[str]) -> dict[str, str]:
    """Colours for several methods in one figure: like :func:`method_color`, but two unknown names
    never share a colour (a clash moves to the next free fallback colour)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in dict.fromkeys(names):
        colour = _KEYS.get(_key(name))
        if colour is None:
            start = zlib.crc32(_key(name).encode()) % len(FALLBACK_COLORS)
            ring = [FALLBACK_COLORS[(start + i) % len(FALLBACK_COLORS)] for i in range(len(FALLBACK_COLORS))]
            colour = next((c for c in ring if c not in used), ring[0])
        out[name] = colour
        used.add(colour)
    return out


def _method_order(names: Iterable[str]) -> list[str]:
    """The paper's methods in their canonical order, then others in order of appearance."""
    names = list(dict.fromkeys(names))
    return sorted(names, key=lambda n: (_ORDER.get(_key(n), len(_ORDER)), names.index(n)))


def _axis(**extra) -> dict:
    return dict(showline=True, linecolor="#444444", linewidth=1, ticks="outside", tickcolor="#444444",
                showgrid=True, gridcolor="#E5E5E5", zeroline=False, automargin=True,
                title=dict(font=dict(size=15)), **extra)


TEMPLATE = go.layout.Template(pio.templates["plotly_white"])
TEMPLATE.layout.update(
    font=dict(family="Arial, 'Liberation Sans', 'DejaVu Sans', sans-serif", size=14, color="#222222"),
    title=dict(font=dict(size=17), x=0.0, xanchor="left", xref="paper"),
    paper_bgcolor="white", plot_bgcolor="white", colorway=list(FALLBACK_COLORS),
    xaxis=_axis(), yaxis=_axis(),
    legend=dict(bgcolor="rgba(255,255,255,0.8)", font=dict(size=13)),
    hoverlabel=dict(font=dict(size=13)), margin=dict(l=70, r=30, t=60, b=60),
    colorscale=dict(sequential=SEQUENTIAL, diverging=DIVERGING),
)
pio.templates["workbench"] = TEMPLATE


def apply_template(fig: go.Figure) -> go.Figure:
    """Give ``fig`` the ``"workbench"`` template (in place) and return it."""
    fig.update_layout(template=TEMPLATE)
    return fig


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------

def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(map(repr, missing))}; "
                         f"got columns {list(map(str, df.columns))}")
    if df.empty:
        raise ValueError(f"{what}: the table is empty")


def _numeric(df: pd.DataFrame, column: str, what: str) -> np.ndarray:
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(values) & df[column].notna().to_numpy()
    if bad.any():
        raise ValueError(f"{what}: column {column!r} holds non-numeric value {df[column][bad].iloc[0]!r}")
    return values


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


def _colour(values: np.ndarray, groups: np.ndarray | None, scale: str, value: str) -> tuple[np.ndarray, dict]:
    """Map raw values to what the heat map draws, and the matching ``layout.coloraxis``.

    ``groups`` (per-value layer ids) divides each layer by its own reference first: the median of
    its positive values (log), its max (linear) or its max |value| (diverging).
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
    if scale == "log":
        positive = finite[finite > 0]
        if not len(positive):
            raise ValueError(f"scale='log' needs positive values in {value!r}; use scale='linear'")
        z = np.log10(np.clip(v, positive.min(), None))  # values <= 0 sit at the bottom of the scale
        lo, hi = float(np.log10(positive.min())), float(np.log10(positive.max()))
        hi = hi if hi > lo else lo + 1e-6
        tickvals, ticktext = _ticks_log(lo, hi, suffix)
        axis = dict(colorscale=SEQUENTIAL, cmin=lo, cmax=hi,
                    colorbar=dict(title=dict(text=f"{title}<br>(log scale)"), tickvals=tickvals, ticktext=ticktext))
    elif scale == "linear":
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        z = v
        axis = dict(colorscale=SEQUENTIAL, cmin=lo, cmax=hi if hi > lo else lo + 1e-6,
                    colorbar=dict(title=dict(text=title)))
    else:
        m = float(np.abs(finite).max()) if len(finite) else 1.0
        z = v
        axis = dict(colorscale=DIVERGING, cmin=-(m or 1.0), cmax=m or 1.0, cmid=0.0,
                    colorbar=dict(title=dict(text=title)))
    axis["colorbar"].update(thickness=14, outlinewidth=0)
    return z, axis


def _one_response(table: pd.DataFrame, value: str, sample, layers, what: str):
    """One sample (the smallest id when ``sample`` is None) at the chosen layers, as
    ``(sample, layers, positions, tokens, is_header, values [layers, positions])``."""
    _require(table, ["layer", "position", "token", value], what)
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
    rows = rows.assign(**{value: _numeric(rows, value, what)})
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


# ----------------------------------------------------------------------------------------------
# Token heat maps
# ----------------------------------------------------------------------------------------------

def token_heatmap(
    table: pd.DataFrame, value: str = "norm", layers: Sequence[int] | None = None, sample=None,
    scale: str = "log", title: str | None = None, per_layer: bool = False, wrap: int = 80,
    max_tokens: int | None = None,
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

    Each cell is as wide as its token text. Hover shows token, position, layer and raw value.
    Header tokens (``is_header``) and special tokens are in italics.
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
    z_all, coloraxis = _colour(raw, groups, scale, value)
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
    default = f"{value} per token" + (f", sample {sample}" if sample is not None else "")
    fig.update_layout(
        template=TEMPLATE, title=dict(text=default if title is None else title), height=height, width=1000,
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
    step = max(1, math.ceil(len(positions) / 120))
    fig = go.Figure(go.Heatmap(
        x=positions, y=[f"L{layer}" for layer in layers], z=z, coloraxis="coloraxis", customdata=custom,
        hovertemplate=("<b>%{customdata[0]}</b><br>position %{x}, layer %{customdata[2]}"
                       f"<br>{html.escape(value)} = %{{customdata[1]}}<extra></extra>"),
    ))
    default = f"{value} by layer and token" + (f", sample {sample}" if sample is not None else "")
    fig.update_layout(
        template=TEMPLATE, title=dict(text=default if title is None else title), coloraxis=coloraxis,
        width=max(600, min(1800, 150 + 14 * len(positions))), height=max(320, 160 + 18 * len(layers)),
        xaxis=dict(tickvals=positions[::step], ticktext=[_label(t, h) for t, h in zip(tokens, header)][::step],
                   tickangle=-90, tickfont=dict(size=11), showgrid=False, title=dict(text="token")),
        yaxis=dict(title=dict(text="layer"), autorange="reversed", showgrid=False),
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
    _require(table, ["layer", value], what)
    if kind not in ("bands", "box"):
        raise ValueError(f"{what}: kind must be 'bands' or 'box', got {kind!r}")
    rows = table[~table["is_header"].astype(bool)] if "is_header" in table.columns else table
    have = sorted(pd.unique(rows["layer"]))
    layers = have if layers is None else list(layers)
    missing = [layer for layer in layers if layer not in have]
    if missing:
        raise ValueError(f"{what}: layer(s) {missing} have no (non-header) rows (have {have})")
    rows = rows[rows["layer"].isin(layers)].assign(_v=lambda d: _numeric(d, value, what))
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


# ----------------------------------------------------------------------------------------------
# Method comparisons
# ----------------------------------------------------------------------------------------------

def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def faithfulness_curves(df: pd.DataFrame, reference: str = "paraphrase", title: str | None = None) -> go.Figure:
    """Relative RMSE to the prompt-steered activations, per layer, one line per method.

    Args:
        df: columns ``method, layer, rel_rmse``; optional ``rel_rmse_lo, rel_rmse_hi`` draw a band.
        reference: the method drawn dashed (the paraphrased-instruction baseline).
            Rows of ``"<method> @C80"`` (a steerer at the strength it steers with) are drawn dotted
            in ``<method>``'s colour.

    A horizontal line at 1.0 marks "no steering" (1 = no closer to the prompt than the unsteered
    model, 0 = identical to it).
    """
    what = "faithfulness_curves"
    _require(df, ["method", "layer", "rel_rmse"], what)
    # "<method> @C80" (the steerer at the strength it steers with) shares its method's colour, dotted
    base = {m: re.sub(r" @C\w+$", "", str(m)) for m in pd.unique(df["method"])}
    colours = method_colors(_method_order(base.values()))
    colours = {m: colours[b] for m, b in base.items()}
    bands = {"rel_rmse_lo", "rel_rmse_hi"} <= set(df.columns)
    fig = go.Figure()
    for method in _method_order(df["method"]):
        part = df[df["method"] == method].sort_values("layer")
        x, y = part["layer"].to_numpy(), _numeric(part, "rel_rmse", what)
        dashed = _key(method) == _key(reference)
        dotted = base[method] != method
        if bands:
            lo, hi = _numeric(part, "rel_rmse_lo", what), _numeric(part, "rel_rmse_hi", what)
            ok = ~(np.isnan(lo) | np.isnan(hi))
            if ok.any():
                fig.add_trace(go.Scatter(
                    x=np.concatenate([x[ok], x[ok][::-1]]), y=np.concatenate([hi[ok], lo[ok][::-1]]),
                    fill="toself", fillcolor=_rgba(colours[method], 0.18), line=dict(width=0),
                    legendgroup=str(method), showlegend=False, hoverinfo="skip", name=f"{method} CI"))
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers", name=str(method), legendgroup=str(method),
            line=dict(color=colours[method], width=2.5 if not dotted else 1.8,
                      dash="dash" if dashed else "dot" if dotted else "solid"),
            marker=dict(size=5), hovertemplate=f"{html.escape(str(method))}<br>layer %{{x}}<br>"
                                               "relative RMSE %{y:.3f}<extra></extra>"))
    fig.add_hline(y=1.0, line=dict(color=METHOD_COLORS["no steering"], dash="dot", width=1.5),
                  annotation_text="no steering", annotation_position="top right")
    fig.update_layout(template=TEMPLATE, title=dict(text=title or "Faithfulness to the prompt"),
                      xaxis=dict(title=dict(text="layer")),
                      yaxis=dict(title=dict(text="relative RMSE"), rangemode="tozero"))
    return fig


def _target_label(target) -> str:
    if isinstance(target, (int, float, np.integer, np.floating)) and not isinstance(target, bool):
        return f"C{float(target):g}"
    return str(target)


def _error_y(part: pd.DataFrame, metric: str, what: str) -> dict | None:
    lo_col, hi_col = f"{metric}_lo", f"{metric}_hi"
    if lo_col not in part.columns or hi_col not in part.columns:
        return None
    y, lo, hi = (_numeric(part, c, what) for c in (metric, lo_col, hi_col))
    if np.isnan(lo).all() and np.isnan(hi).all():
        return None
    return dict(type="data", symmetric=False, array=np.nan_to_num(hi - y), arrayminus=np.nan_to_num(y - lo),
                thickness=1.5, width=5)


_TARGET_SYMBOLS = ("diamond", "star", "square", "triangle-up", "pentagon")


def coherence_tradeoff(
    sweep: pd.DataFrame, results: pd.DataFrame | None = None, target: float = 80.0, title: str | None = None,
) -> go.Figure:
    """Attribute score against coherence as the strength ``alpha`` grows, one curve per method.

    Args:
        sweep: one row per evaluated strength, columns ``method, alpha, attribute, coherence``
            (any order; sorted by alpha per method). A method whose ``alpha`` is missing (NaN),
            e.g. ``"prompt"`` or ``"no steering"``, is drawn as single point(s).
        results: optional TA@C table, columns ``method, target, alpha, attribute, coherence`` and
            optionally ``attribute_lo, attribute_hi`` (confidence interval); ``target`` is e.g.
            ``"C80"`` or ``"Cp"``. Each row is highlighted with a large marker (one symbol per
            target) and error bars from the CI.
        target: the coherence target, drawn as a vertical line.
    """
    what = "coherence_tradeoff"
    _require(sweep, ["method", "alpha", "attribute", "coherence"], what)
    if results is not None:
        _require(results, ["method", "target", "alpha", "attribute", "coherence"], f"{what} results")
    methods = _method_order(list(sweep["method"]) + ([] if results is None else list(results["method"])))
    colours = method_colors(methods)
    fig = go.Figure()
    for method in methods:
        part = sweep[sweep["method"] == method]
        if part.empty:
            continue
        part = part.assign(_a=_numeric(part, "alpha", what)).sort_values("_a", na_position="last")
        alone = bool(part["_a"].isna().all())
        fig.add_trace(go.Scatter(
            x=_numeric(part, "coherence", what), y=_numeric(part, "attribute", what), name=str(method),
            mode="markers" if alone else "lines+markers", legendgroup=str(method),
            line=dict(color=colours[method], width=2), marker=dict(color=colours[method], size=11 if alone else 6),
            customdata=[["—" if np.isnan(a) else f"{a:.3g}"] for a in part["_a"]],
            hovertemplate=(f"{html.escape(str(method))}<br>alpha %{{customdata[0]}}<br>coherence %{{x:.1f}}"
                           "<br>attribute %{y:.1f}<extra></extra>")))
    fig.add_vline(x=target, line=dict(color="#666666", dash="dot", width=1.5),
                  annotation_text=f"coherence {target:g}", annotation_position="top left")
    if results is not None:
        labels = [_target_label(t) for t in results["target"]]
        symbols = {t: _TARGET_SYMBOLS[i % len(_TARGET_SYMBOLS)] for i, t in enumerate(dict.fromkeys(labels))}
        results = results.assign(_t=labels)
        for (method, label), part in results.groupby(["method", "_t"], sort=False):
            fig.add_trace(go.Scatter(
                x=_numeric(part, "coherence", what), y=_numeric(part, "attribute", what), mode="markers",
                name=f"{method} TA@{label}", legendgroup=str(method), showlegend=False,
                marker=dict(symbol=symbols[label], size=16, color=colours[method], line=dict(color="black", width=1.2)),
                error_y=_error_y(part, "attribute", what),
                customdata=[[f"{a:.3g}"] for a in _numeric(part, "alpha", what)],
                hovertemplate=(f"<b>{html.escape(str(method))} TA@{html.escape(label)}</b><br>alpha %{{customdata[0]}}"
                               "<br>coherence %{x:.1f}<br>attribute %{y:.1f}<extra></extra>")))
        for label, symbol in symbols.items():
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"TA@{label}",
                                     marker=dict(symbol=symbol, size=12, color="white", line=dict(color="black", width=1.2))))
    fig.update_layout(template=TEMPLATE, title=dict(text=title or "Attribute vs coherence as strength grows"),
                      xaxis=dict(title=dict(text="coherence (0–100)")),
                      yaxis=dict(title=dict(text="attribute score (0–100)")))
    return fig


def results_bars(results: pd.DataFrame, metric: str = "attribute", title: str | None = None) -> go.Figure:
    """Bars of the score at each target (TA@C80, TA@Cp) per method, with CI error bars.

    Args:
        results: columns ``method, target, <metric>``; optional ``<metric>_lo, <metric>_hi`` (CI).
            One panel per target, in order of first appearance; methods in the paper's order.
    """
    what = "results_bars"
    _require(results, ["method", "target", metric], what)
    labels = [_target_label(t) for t in results["target"]]
    results = results.assign(_t=labels)
    targets = list(dict.fromkeys(labels))
    if results.duplicated(["method", "_t"]).any():
        raise ValueError(f"{what}: several rows for one (method, target)")
    colours = method_colors(_method_order(results["method"]))
    fig = make_subplots(rows=1, cols=len(targets), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"TA@{html.escape(t)}" for t in targets])
    for j, t in enumerate(targets, start=1):
        part = results[results["_t"] == t]
        part = part.set_index("method").loc[_method_order(part["method"])].reset_index()
        y = _numeric(part, metric, what)
        fig.add_trace(go.Bar(
            x=part["method"].astype(str), y=y, name=f"TA@{t}", showlegend=False,
            marker=dict(color=[colours[m] for m in part["method"]]), error_y=_error_y(part, metric, what),
            text=[f"{v:.1f}" for v in y], textposition="inside", insidetextanchor="start",
            hovertemplate=f"%{{x}}<br>TA@{html.escape(t)} = %{{y:.2f}}<extra></extra>"), row=1, col=j)
    fig.update_yaxes(title=dict(text="attribute score" if metric == "attribute" else metric), row=1, col=1,
                     rangemode="tozero")
    fig.update_xaxes(tickangle=-30)
    fig.update_layout(template=TEMPLATE, title=dict(text=title or f"{metric} at equal coherence"),
                      width=max(500, 320 * len(targets)), height=450, margin=dict(t=90))
    return fig


def loss_curves(histories: Mapping[str, Sequence[Mapping]], log_y: bool | None = None,
                title: str | None = None) -> go.Figure:
    """Training (solid) and validation (dashed, markers) loss against step, one colour per run.

    Args:
        histories: ``{name: [{"step", "train_loss", "val_loss" (may be None)}, ...]}``, e.g. the
            ``history`` list that each trainer in :mod:`workbench.steering.train` keeps.
        log_y: log y axis; default: log when every loss is positive.
    """
    what = "loss_curves"
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError(f"{what}: expected a non-empty dict {{name: history list}}")
    colours = method_colors(histories)
    fig, values = go.Figure(), []
    for name, history in histories.items():
        frame = pd.DataFrame(list(history))
        _require(frame, ["step", "train_loss"], f"{what} history {name!r}")
        frame = frame.sort_values("step")
        train = _numeric(frame, "train_loss", what)
        values.append(train)
        fig.add_trace(go.Scatter(x=frame["step"], y=train, mode="lines", name=f"{name} train", legendgroup=str(name),
                                 line=dict(color=colours[name], width=2)))
        if "val_loss" in frame.columns:
            val = frame[frame["val_loss"].notna()]
            if not val.empty:
                values.append(_numeric(val, "val_loss", what))
                fig.add_trace(go.Scatter(x=val["step"], y=values[-1], mode="lines+markers", name=f"{name} val",
                                         legendgroup=str(name), marker=dict(size=7),
                                         line=dict(color=colours[name], width=2, dash="dash")))
    finite = np.concatenate(values)
    finite = finite[np.isfinite(finite)]
    log_y = bool(len(finite)) and bool((finite > 0).all()) if log_y is None else log_y
    fig.update_layout(template=TEMPLATE, title=dict(text=title or "Training curves"),
                      xaxis=dict(title=dict(text="step")),
                      yaxis=dict(type="log" if log_y else "linear", title=dict(text="loss")))
    return fig


def radar_chart(
    table: pd.DataFrame, method_col: str = "method", axes: Sequence[str] | None = None,
    higher_is_better: Mapping[str, bool] | None = None, units: Mapping[str, str] | None = None,
    log_axes: Sequence[str] = (), title: str | None = None,
) -> go.Figure:
    """Compare ways to adapt a model on axes in different units (one polygon per method).

    Args:
        table: one row per method: ``<method_col>`` and one numeric column per axis (e.g. extra
            tokens per answer, latency, memory, trained parameters, data needed, reversibility
            encoded 0/1).
        axes: columns to use (default: every numeric column but ``method_col``).
        higher_is_better: ``{axis: bool}``; axes not named default to True (higher is better).
        units: ``{axis: unit}`` shown in axis labels and hover.
        log_axes: axes first mapped to log10(1 + value) (for counts spanning orders of magnitude).

    Normalisation, per axis: min-max over the methods shown, flipped where lower is better, so
    1 (the rim) is the best method on that axis and 0 (the centre) the worst; an axis where every
    method ties is drawn at 1. Hover gives the raw values.
    """
    what = "radar_chart"
    _require(table, [method_col], what)
    if axes is None:
        axes = [c for c in table.columns if c != method_col and pd.api.types.is_numeric_dtype(table[c])]
    axes = list(axes)
    if len(axes) < 3:
        raise ValueError(f"{what}: need at least 3 axes, got {axes}")
    _require(table, axes, what)
    higher_is_better, units = dict(higher_is_better or {}), dict(units or {})
    for name, mapping in (("higher_is_better", higher_is_better), ("units", units), ("log_axes", dict.fromkeys(log_axes))):
        unknown = [a for a in mapping if a not in axes]
        if unknown:
            raise ValueError(f"{what}: {name} names axis/axes {unknown} that are not in axes {axes}")
    if table[method_col].duplicated().any():
        raise ValueError(f"{what}: method {table[method_col][table[method_col].duplicated()].iloc[0]!r} appears twice")
    raw = {a: _numeric(table, a, what) for a in axes}
    scores = {}
    for a in axes:
        if not np.isfinite(raw[a]).all():
            raise ValueError(f"{what}: axis {a!r} has missing or infinite values")
        v = np.log10(1 + raw[a]) if a in log_axes else raw[a]
        if a in log_axes and (raw[a] < 0).any():
            raise ValueError(f"{what}: log axis {a!r} has negative values")
        span = v.max() - v.min()
        s = (v - v.min()) / span if span > 0 else np.ones_like(v)
        scores[a] = s if higher_is_better.get(a, True) else (1 - s if span > 0 else s)
    theta = [f"{a} ({units[a]})" if a in units else a for a in axes]
    colours = method_colors(table[method_col])
    fig = go.Figure()
    for i, method in enumerate(table[method_col]):
        r = [float(scores[a][i]) for a in axes]
        custom = [[f"{raw[a][i]:.4g}" + (f" {units[a]}" if a in units else ""),
                   "higher is better" if higher_is_better.get(a, True) else "lower is better"] for a in axes]
        fig.add_trace(go.Scatterpolar(
            r=r + r[:1], theta=theta + theta[:1], customdata=custom + custom[:1], name=str(method),
            mode="lines+markers", fill="toself", fillcolor=_rgba(colours[method], 0.12),
            line=dict(color=colours[method], width=2),
            hovertemplate=(f"<b>{html.escape(str(method))}</b><br>%{{theta}}: %{{customdata[0]}}"
                           "<br>(%{customdata[1]}; score %{r:.2f})<extra></extra>")))
    fig.update_layout(template=TEMPLATE, title=dict(text=title or "Ways to adapt a model (outward = better)"),
                      polar=dict(radialaxis=dict(range=[0, 1.05], showticklabels=False, ticks=""),
                                 bgcolor="white"), width=760, height=560, margin=dict(l=130, r=40, t=80, b=50))
    return fig


# ----------------------------------------------------------------------------------------------
# Static export
# ----------------------------------------------------------------------------------------------

class FigureExportError(RuntimeError):
    """Static export failed: no Chrome/Chromium for kaleido, or kaleido could not start it."""


_INSTALL_HINT = (
    "kaleido (plotly's static image exporter) needs a Chrome or Chromium browser. Install one with\n"
    "    sudo apt-get install chromium      (Debian/Ubuntu; or your OS's package manager)\n"
    "or let plotly download one:\n"
    "    plotly_get_chrome                  (shell)\n"
    "    import kaleido; kaleido.get_chrome_sync()   (Python)\n"
    "or point BROWSER_PATH at an existing chrome/chromium executable."
)
_FORMATS = ("png", "svg", "pdf", "jpeg", "jpg", "webp")


def find_browser() -> str | None:
    """The Chrome/Chromium executable kaleido would use (``BROWSER_PATH``, kaleido's own download,
    then the usual names on ``PATH``), or None."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.access(env, os.X_OK) else None
    try:
        from choreographer.browsers.chromium import Chromium  # optional heavy dependency: imported only when this runs

        found = Chromium.find_browser(skip_local=False)
        if found:
            return str(found)
    except Exception:  # noqa: BLE001 - best effort; fall back to PATH
        pass
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        if path := shutil.which(name):
            return path
    return None


def export_figure(
    fig: go.Figure, path: str | Path, formats: Sequence[str] = ("png", "svg", "pdf"),
    width: int | None = None, height: int | None = None, scale: float = 2.0,
) -> list[Path]:
    """Write ``fig`` as static images: ``path`` with each format's suffix (``fig.png``, ...).

    ``path`` may carry one of the suffixes or none. ``width``/``height`` default to the figure's own
    layout size (else plotly's defaults); ``scale`` multiplies pixels of raster formats. All files
    are written in one kaleido session, each atomically: on failure none is left half-written.

    Raises:
        FigureExportError: no Chrome/Chromium is found or kaleido fails to run; the message says
            how to install one.
    """
    formats = [f.lower().lstrip(".") for f in formats]
    bad = [f for f in formats if f not in _FORMATS]
    if bad or not formats:
        raise ValueError(f"export_figure: unsupported format(s) {bad or formats}; choose from {_FORMATS}")
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower().lstrip(".") in _FORMATS else path
    targets = [stem.parent / f"{stem.name}.{f}" for f in formats]
    browser = find_browser()
    if browser is None:
        raise FigureExportError(f"cannot export {stem.name}: no Chrome/Chromium found.\n{_INSTALL_HINT}")
    width = width or fig.layout.width
    height = height or fig.layout.height
    try:
        from kaleido.errors import KaleidoError  # optional heavy dependency: imported only when this runs
    except ImportError:
        raise FigureExportError('static export needs kaleido>=1: pip install "kaleido>=1"') from None
    with ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(t)) for t in targets]
        try:
            kinds = ["jpeg" if f == "jpg" else f for f in formats]
            if hasattr(pio, "write_images"):  # plotly >= 6.1: one browser session for all files
                pio.write_images([fig] * len(tmps), tmps, format=kinds, width=width, height=height, scale=scale)
            else:
                for tmp, kind in zip(tmps, kinds):
                    pio.write_image(fig, tmp, format=kind, width=width, height=height, scale=scale)
        except (RuntimeError, OSError, KaleidoError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise FigureExportError(f"kaleido failed to export {stem.name} with browser {browser} "
                                    f"({type(exc).__name__}: {first}).\n{_INSTALL_HINT}") from None
    return targets
