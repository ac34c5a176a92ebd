"""Self-contained HTML reports: per-token heat maps of ||Delta_PS|| that open offline.

The heat maps are plain HTML and CSS: each token is a ``<span>`` whose background encodes the
value on a log scale (one scale per layer, since residual norms grow with depth), with a tooltip
giving the token, its span position and the value. Plotly figures (:func:`figure_html`) carry
plotly.js inline, once per page, never from a CDN, so a page still opens with no network. Every
string that came from the model or the data is escaped.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from workbench.core.files import atomic_write_bytes

# A perceptually ordered ramp (light yellow -> orange -> dark purple), as RGB anchors.
_RAMP = [(255, 255, 229), (254, 227, 145), (254, 153, 41), (217, 95, 14), (153, 52, 4), (84, 39, 143)]


def ramp_colour(fraction: float) -> str:
    """Hex colour at ``fraction`` in [0, 1] along the ramp."""
    f = min(1.0, max(0.0, float(fraction))) * (len(_RAMP) - 1)
    i = min(int(f), len(_RAMP) - 2)
    t = f - i
    rgb = [round(a + (b - a) * t) for a, b in zip(_RAMP[i], _RAMP[i + 1])]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def log_scale(values: Sequence[float], low_q: float = 0.02, high_q: float = 0.98) -> tuple[float, float]:
    """``(lo, hi)`` of log10(values) at two quantiles: the colour range of one layer."""
    logs = np.log10(np.clip(np.asarray(values, dtype=float), 1e-12, None))
    lo, hi = np.quantile(logs, [low_q, high_q]) if len(logs) else (0.0, 1.0)
    return float(lo), float(hi if hi > lo else lo + 1e-6)


def display_token(token: str) -> str:
    """A legible, escaped form of a token: newlines as ↵, tabs as →, special tokens kept whole."""
    shown = token.replace("\n", "↵").replace("\t", "→")
    if shown == "":
        shown = "∅"
    if shown.strip() == "":
        shown = shown.replace(" ", "·")
    return html.escape(shown)


def token_heatmap_html(
    table: pd.DataFrame, sample: int, layers: Sequence[int], value: str = "norm", title: str | None = None
) -> str:
    """An HTML fragment: one row of coloured tokens per layer for one sample.

    Args:
        table: rows with ``sample, layer, position, token, is_header`` and the ``value`` column
            (as from :func:`workbench.activations.deltas.token_magnitudes`).
        value: ``"norm"`` or ``"rel_norm"``.
    """
    missing = {"sample", "layer", "position", "token", value} - set(table.columns)
    if missing:
        raise ValueError(f"the token table lacks columns {sorted(missing)}")
    rows = []
    for layer in layers:
        scale_rows = table[table["layer"] == layer]
        if scale_rows.empty:
            raise ValueError(f"layer {layer} is not in the token table")
        lo, hi = log_scale(scale_rows[value])
        part = scale_rows[scale_rows["sample"] == sample].sort_values("position")
        if part.empty:
            raise ValueError(f"sample {sample} is not in the token table")
        spans = []
        for r in part.itertuples():
            v = float(getattr(r, value))
            f = (math.log10(max(v, 1e-12)) - lo) / (hi - lo)
            colour = ramp_colour(f)
            ink = "#fff" if f > 0.6 else "#111"
            cls = "tok hdr" if bool(getattr(r, "is_header", False)) else "tok"
            tip = html.escape(f"{r.token!r} | position {r.position} | {value} {v:.4g}", quote=True)
            spans.append(f'<span class="{cls}" style="background:{colour};color:{ink}" title="{tip}">{display_token(str(r.token))}</span>')
        rows.append(
            f'<div class="row"><div class="lab">layer {int(layer)}<br><small>{10 ** lo:.3g}–{10 ** hi:.3g}</small></div>'
            f'<div class="toks">{"".join(spans)}</div></div>'
        )
    head = f"<h3>{html.escape(title)}</h3>" if title else ""
    return f'<section class="heat">{head}{"".join(rows)}</section>'


def legend_html() -> str:
    stops = "".join(f'<span style="background:{ramp_colour(i / 20)}"></span>' for i in range(21))
    return (
        f'<div class="legend"><span class="lbl">smallest</span><span class="bar">{stops}</span>'
        '<span class="lbl">largest (log scale, per layer: 2nd–98th percentile)</span></div>'
    )


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:72rem;color:#222;line-height:1.45}
h1{margin-bottom:.2rem} .sub{color:#555;margin-top:0}
.row{display:flex;gap:.6rem;margin:.25rem 0;align-items:flex-start}
.lab{width:6.5rem;flex:none;font-size:.85rem;color:#444;text-align:right}
.toks{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem;line-height:1.9}
.tok{padding:.1rem .08rem;border-radius:2px;white-space:pre-wrap}
.tok.hdr{outline:1px dashed #888}
.legend{display:flex;align-items:center;gap:.5rem;font-size:.85rem;margin:1rem 0}
.legend .bar{display:inline-flex}.legend .bar span{width:14px;height:14px;display:inline-block}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem;vertical-align:top;text-align:left}
th{background:#f4f4f4} .num{text-align:right;font-variant-numeric:tabular-nums}
.heat{border-top:1px solid #eee;padding-top:.5rem;margin-top:1rem}
"""


def dataframe_html(frame: pd.DataFrame, float_format: str = "{:.3g}") -> str:
    """An escaped HTML table of a small DataFrame."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, (float, np.floating)):
                cells.append(f'<td class="num">{float_format.format(v)}</td>')
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure_html(fig, *, first: bool) -> str:
    """A plotly figure as an HTML fragment; ``first=True`` inlines plotly.js (do it once per page)."""
    return fig.to_html(full_html=False, include_plotlyjs=True if first else False, config={"displaylogo": False})


def html_page(title: str, sections: Sequence[str]) -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        + "".join(sections)
        + "</body></html>"
    )


def write_html(path: str | Path, title: str, sections: Sequence[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, html_page(title, sections).encode("utf-8"))
    return path
