"""Method comparisons as curves and bars: faithfulness per layer, attribute against coherence,
scores at equal coherence, training losses, and a radar of adaptation costs.

Every function takes tidy DataFrames (or plain dicts), returns a ``plotly.graph_objects.Figure``
with :data:`~workbench.viz.theme.TEMPLATE` applied, never calls ``show()`` and never touches a
model. Methods keep one colour each (:func:`~workbench.viz.theme.method_colors`) and appear in the
paper's order (:func:`~workbench.viz.theme.method_order`).
"""

from __future__ import annotations

import html
import re
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.viz.checks import numeric_column, require_columns
from workbench.viz.theme import METHOD_COLORS, TEMPLATE, method_colors, method_key, method_order

__all__ = ["axis_label", "coherence_tradeoff", "coinciding", "faithfulness_curves", "fit_legend", "log_ticks", "loss_curves",
           "note_coinciding", "radar_chart", "results_bars"]

def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


#: Height in px that each legend entry needs; a figure is made tall enough for its whole legend,
#: since plotly scrolls a legend taller than the plot and hides the entries below.
LEGEND_ENTRY_PX = 24


def fit_legend(fig: go.Figure, base_height: int = 450) -> go.Figure:
    """Make ``fig`` tall enough that its vertical legend shows every entry without scrolling."""
    entries = sum(1 for t in fig.data if t.showlegend is not False and t.name)
    margin = fig.layout.margin
    chrome = (margin.t if margin.t is not None else 60) + (margin.b if margin.b is not None else 60)
    fig.update_layout(height=max(fig.layout.height or base_height, chrome + 30 + LEGEND_ENTRY_PX * entries))
    return fig


def coinciding(curves: Mapping[str, np.ndarray]) -> list[list[str]]:
    """Groups of names whose values are the same (to 1e-6 relative): drawn, they hide each other.

    Example:
        >>> coinciding({"Const-DiM": np.array([1.0, 2.0]), "Const-MSE": np.array([1.0, 2.0]), "A-PSR": np.array([0.5, 1.0])})
        [['Const-DiM', 'Const-MSE']]
    """
    groups: list[list[str]] = []
    for name, values in curves.items():
        values = np.asarray(values, dtype=float)
        for group in groups:
            other = np.asarray(curves[group[0]], dtype=float)
            if other.shape == values.shape and np.allclose(other, values, rtol=1e-6, atol=1e-12, equal_nan=True):
                group.append(name)
                break
        else:
            groups.append([name])
    return [g for g in groups if len(g) > 1]


def note_coinciding(fig: go.Figure, curves: Mapping[str, np.ndarray], what: str = "lines") -> list[list[str]]:
    """Say on ``fig`` (a line under the title) which of ``curves`` coincide, so that a legend entry
    whose line is hidden under another's is explained; returns the groups."""
    groups = coinciding(curves)
    if groups:
        def names(group):
            escaped = [html.escape(str(n)) for n in group]
            return escaped[0] if len(escaped) == 1 else ", ".join(escaped[:-1]) + " and " + escaped[-1]

        text = "; ".join(names(g) + " coincide" for g in groups)
        fig.add_annotation(text=f"{text} (their {what} overlap)", xref="paper", yref="paper", x=0, y=1.0,
                           xanchor="left", yanchor="bottom", yshift=6, showarrow=False,
                           font=dict(size=12, color="#555555"))
        top = fig.layout.margin.t if fig.layout.margin.t is not None else 60
        fig.update_layout(margin=dict(t=max(top, 60) + 22))
    return groups


def faithfulness_curves(df: pd.DataFrame, reference: str = "paraphrase", title: str | None = None) -> go.Figure:
    """Relative RMSE to the prompt-steered activations, per layer, one line per method.

    Args:
        df: columns ``method, layer, rel_rmse``; optional ``rel_rmse_lo, rel_rmse_hi`` draw a band.
        reference: the method drawn dashed (the paraphrased-instruction baseline).
            Rows of ``"<method> @C80"`` (a steerer at the strength it steers with) are drawn dotted
            in ``<method>``'s colour.

    A horizontal line at 1.0 marks "no steering" (1 = no closer to the prompt than the unsteered
    model, 0 = identical to it).

    Example:
        >>> import pandas as pd
        >>> faith = pd.DataFrame({"method": ["A-PSR"] * 3 + ["paraphrase"] * 3, "layer": [0, 1, 2] * 2,
        ...                       "rel_rmse": [0.2, 0.3, 0.4, 0.5, 0.6, 0.6]})
        >>> fig = faithfulness_curves(faith)
        >>> [(trace.name, trace.line.dash) for trace in fig.data]  # the paper's order; the reference dashed
        [('paraphrase', 'dash'), ('A-PSR', 'solid')]
        >>> fig.data[1].line.color == METHOD_COLORS["A-PSR"]
        True
    """
    what = "faithfulness_curves"
    require_columns(df, ["method", "layer", "rel_rmse"], what)
    # "<method> @C80" (the steerer at the strength it steers with) shares its method's colour, dotted
    base = {m: re.sub(r" @C\w+$", "", str(m)) for m in pd.unique(df["method"])}
    colours = method_colors(method_order(base.values()))
    colours = {m: colours[b] for m, b in base.items()}
    bands = {"rel_rmse_lo", "rel_rmse_hi"} <= set(df.columns)
    fig = go.Figure()
    curves = {}
    for method in method_order(df["method"]):
        part = df[df["method"] == method].sort_values("layer")
        x, y = part["layer"].to_numpy(), numeric_column(part, "rel_rmse", what)
        curves[str(method)] = np.concatenate([x.astype(float), y])
        dashed = method_key(method) == method_key(reference)
        dotted = base[method] != method
        if bands:
            lo, hi = numeric_column(part, "rel_rmse_lo", what), numeric_column(part, "rel_rmse_hi", what)
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
    note_coinciding(fig, curves)
    return fit_legend(fig)


def _target_label(target) -> str:
    if isinstance(target, (int, float, np.integer, np.floating)) and not isinstance(target, bool):
        return f"C{float(target):g}"
    return str(target)


def _error_y(part: pd.DataFrame, metric: str, what: str) -> dict | None:
    lo_col, hi_col = f"{metric}_lo", f"{metric}_hi"
    if lo_col not in part.columns or hi_col not in part.columns:
        return None
    y, lo, hi = (numeric_column(part, c, what) for c in (metric, lo_col, hi_col))
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
    require_columns(sweep, ["method", "alpha", "attribute", "coherence"], what)
    if results is not None:
        require_columns(results, ["method", "target", "alpha", "attribute", "coherence"], f"{what} results")
    methods = method_order(list(sweep["method"]) + ([] if results is None else list(results["method"])))
    colours = method_colors(methods)
    fig = go.Figure()
    curves = {}
    for method in methods:
        part = sweep[sweep["method"] == method]
        if part.empty:
            continue
        part = part.assign(_a=numeric_column(part, "alpha", what)).sort_values("_a", na_position="last")
        curves[str(method)] = np.concatenate([numeric_column(part, "coherence", what),
                                              numeric_column(part, "attribute", what)])
        alone = bool(part["_a"].isna().all())
        fig.add_trace(go.Scatter(
            x=numeric_column(part, "coherence", what), y=numeric_column(part, "attribute", what), name=str(method),
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
                x=numeric_column(part, "coherence", what), y=numeric_column(part, "attribute", what), mode="markers",
                name=f"{method} TA@{label}", legendgroup=str(method), showlegend=False,
                marker=dict(symbol=symbols[label], size=16, color=colours[method], line=dict(color="black", width=1.2)),
                error_y=_error_y(part, "attribute", what),
                customdata=[[f"{a:.3g}"] for a in numeric_column(part, "alpha", what)],
                hovertemplate=(f"<b>{html.escape(str(method))} TA@{html.escape(label)}</b><br>alpha %{{customdata[0]}}"
                               "<br>coherence %{x:.1f}<br>attribute %{y:.1f}<extra></extra>")))
        for label, symbol in symbols.items():
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"TA@{label}",
                                     marker=dict(symbol=symbol, size=12, color="white", line=dict(color="black", width=1.2))))
    fig.update_layout(template=TEMPLATE, title=dict(text=title or "Attribute vs coherence as strength grows"),
                      xaxis=dict(title=dict(text="coherence (0–100)")),
                      yaxis=dict(title=dict(text="attribute score (0–100)")))
    note_coinciding(fig, curves)
    return fit_legend(fig)


def results_bars(results: pd.DataFrame, metric: str = "attribute", title: str | None = None) -> go.Figure:
    """Bars of the score at each target (TA@C80, TA@Cp) per method, with CI error bars.

    Args:
        results: columns ``method, target, <metric>``; optional ``<metric>_lo, <metric>_hi`` (CI).
            One panel per target, in order of first appearance; methods in the paper's order.
    """
    what = "results_bars"
    require_columns(results, ["method", "target", metric], what)
    labels = [_target_label(t) for t in results["target"]]
    results = results.assign(_t=labels)
    targets = list(dict.fromkeys(labels))
    if results.duplicated(["method", "_t"]).any():
        raise ValueError(f"{what}: several rows for one (method, target)")
    colours = method_colors(method_order(results["method"]))
    fig = make_subplots(rows=1, cols=len(targets), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"TA@{html.escape(t)}" for t in targets])
    for j, t in enumerate(targets, start=1):
        part = results[results["_t"] == t]
        part = part.set_index("method").loc[method_order(part["method"])].reset_index()
        y = numeric_column(part, metric, what)
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


def log_ticks(lo: float, hi: float, max_ticks: int = 8) -> tuple[list[float], list[str]]:
    """Tick values and labels for a log axis from ``lo`` to ``hi`` (both > 0), each label the full
    number (``0.8``, ``1``, ``2``), never plotly's bare mantissas ("10 5 2 1 5 2").

    Picks the coarsest of the mantissa sets (1), (1, 2, 5), (1, 2, 3, 5, 7), (1..9) that puts at
    least two ticks in ``[lo, hi]``, and no more than ``max_ticks``; a range too narrow for any of
    them gets ``lo``, the middle and ``hi`` to three significant digits.

    Example:
        >>> log_ticks(0.75, 1.3)[1]
        ['0.8', '0.9', '1', '1.2']
    """
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0 or hi <= 0:
        raise ValueError(f"log_ticks needs finite positive bounds, got lo={lo!r}, hi={hi!r}")
    lo, hi = min(lo, hi), max(lo, hi)
    decades = range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
    for mantissas in ((1,), (1, 2, 5), (1, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)):
        values = [float(f"{m * 10.0 ** e:.6g}") for e in decades for m in mantissas]
        values = [v for v in values if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]
        if 2 <= len(values) <= max_ticks:
            return values, [f"{v:g}" for v in values]
    if hi / lo < 1.0001:
        return [float(f"{lo:.3g}")], [f"{lo:.3g}"]
    # a range within one mantissa step: round linear steps of 1, 2 or 5 x 10^k (3 to 6 ticks)
    for step in sorted(m * 10.0 ** e for e in range(int(np.floor(np.log10(hi - lo))) - 2,
                                                      int(np.ceil(np.log10(hi - lo))) + 1) for m in (1, 2, 5)):
        first, last = int(np.ceil(lo / step - 1e-9)), int(np.floor(hi / step + 1e-9))
        if 3 <= last - first + 1 <= 6:
            values = [float(f"{k * step:.6g}") for k in range(first, last + 1)]
            return values, [f"{v:g}" for v in values]
    values = [float(f"{v:.3g}") for v in (lo, float(np.sqrt(lo * hi)), hi)]
    return values, [f"{v:g}" for v in values]


def loss_curves(histories: Mapping[str, Sequence[Mapping]], log_y: bool | None = None,
                title: str | None = None, kinds: Mapping[str, str] | None = None) -> go.Figure:
    """Training (solid) and validation (dashed, markers) loss against step, one colour per run.

    Args:
        histories: ``{name: [{"step", "train_loss", "val_loss" (may be None)}, ...]}``, e.g. the
            ``history`` list that each trainer in :mod:`workbench.steering.train` keeps.
        log_y: log y axis; default: log when every loss is positive.
        kinds: ``{name: what its loss measures}`` (e.g. ``"relative MSE"``, ``"NLL per token"``):
            runs of different kinds are drawn in side-by-side panels with their own y axis,
            each titled by its kind, since their values are not comparable. Default: one kind.

    A run with a single point is drawn as a marker (a line needs two).
    """
    what = "loss_curves"
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError(f"{what}: expected a non-empty dict {{name: history list}}")
    kinds = dict(kinds or {})
    unknown = [k for k in kinds if k not in histories]
    if unknown:
        raise ValueError(f"{what}: kinds names run(s) {unknown} that are not in histories {list(histories)}")
    kind_of = {name: str(kinds.get(name, "loss")) for name in histories}
    panels = list(dict.fromkeys(kind_of.values()))
    colours = method_colors(histories)
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.12,
                        subplot_titles=[html.escape(k) for k in panels] if len(panels) > 1 else None)
    values: dict[str, list[np.ndarray]] = {k: [] for k in panels}
    for name, history in histories.items():
        frame = pd.DataFrame(list(history))
        require_columns(frame, ["step", "train_loss"], f"{what} history {name!r}")
        frame = frame.sort_values("step")
        train = numeric_column(frame, "train_loss", what)
        col = panels.index(kind_of[name]) + 1
        values[kind_of[name]].append(train)
        fig.add_trace(go.Scatter(x=frame["step"], y=train, mode="lines+markers" if len(train) < 2 else "lines",
                                 name=f"{name} train", legendgroup=str(name),
                                 line=dict(color=colours[name], width=2), marker=dict(size=7)), row=1, col=col)
        if "val_loss" in frame.columns:
            val = frame[frame["val_loss"].notna()]
            if not val.empty:
                values[kind_of[name]].append(numeric_column(val, "val_loss", what))
                fig.add_trace(go.Scatter(x=val["step"], y=values[kind_of[name]][-1], mode="lines+markers",
                                         name=f"{name} val", legendgroup=str(name), marker=dict(size=7),
                                         line=dict(color=colours[name], width=2, dash="dash")), row=1, col=col)
    for col, kind in enumerate(panels, start=1):
        finite = np.concatenate(values[kind]) if values[kind] else np.array([])
        finite = finite[np.isfinite(finite)]
        log = bool(len(finite)) and bool((finite > 0).all()) if log_y is None else log_y
        axis = dict(type="log" if log else "linear", title=dict(text=kind))
        if log and len(finite) and (finite > 0).all():
            axis.update(zip(("tickvals", "ticktext"), log_ticks(float(finite.min()), float(finite.max()))))
        fig.update_yaxes(**axis, row=1, col=col)
        fig.update_xaxes(title=dict(text="step"), row=1, col=col)
    fig.update_layout(template=TEMPLATE, title=dict(text=title or "Training curves"),
                      width=max(700, 480 * len(panels)), height=420,
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
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
    require_columns(table, [method_col], what)
    if axes is None:
        axes = [c for c in table.columns if c != method_col and pd.api.types.is_numeric_dtype(table[c])]
    axes = list(axes)
    if len(axes) < 3:
        raise ValueError(f"{what}: need at least 3 axes, got {axes}")
    require_columns(table, axes, what)
    higher_is_better, units = dict(higher_is_better or {}), dict(units or {})
    for name, mapping in (("higher_is_better", higher_is_better), ("units", units), ("log_axes", dict.fromkeys(log_axes))):
        unknown = [a for a in mapping if a not in axes]
        if unknown:
            raise ValueError(f"{what}: {name} names axis/axes {unknown} that are not in axes {axes}")
    if table[method_col].duplicated().any():
        raise ValueError(f"{what}: method {table[method_col][table[method_col].duplicated()].iloc[0]!r} appears twice")
    raw = {a: numeric_column(table, a, what) for a in axes}
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
    theta = [axis_label(a, units.get(a)) for a in axes]
    colours = method_colors(table[method_col])
    fig = go.Figure()
    curves = {}
    for i, method in enumerate(table[method_col]):
        r = [float(scores[a][i]) for a in axes]
        curves[str(method)] = np.asarray(r)
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
                                 angularaxis=dict(tickfont=dict(size=13)), bgcolor="white",
                                 domain=dict(x=[0.12, 0.88], y=[0.0, 1.0])),
                      legend=dict(orientation="h", x=0.5, xanchor="center", y=-0.12, yanchor="top"),
                      width=860, height=720, margin=dict(l=40, r=40, t=110, b=130))
    note_coinciding(fig, curves, what="polygons")
    return fig


def axis_label(name: str, unit: str | None = None, width: int = 20) -> str:
    """A column name as an axis label: words instead of snake_case, wrapped to lines of about
    ``width`` characters (plotly ``<br>``), the unit on its own line.

    Example:
        >>> axis_label("extra_prompt_tokens", "tokens")
        'extra prompt tokens<br>(tokens)'
    """
    words, lines, line = str(name).replace("_", " ").split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return html.escape("<br>".join(lines), quote=False).replace("&lt;br&gt;", "<br>") + (
        f"<br>({html.escape(unit, quote=False)})" if unit else "")

