"""The look every workbench figure shares: one template, one colour per method, one method order.

:data:`TEMPLATE` is a ``plotly.graph_objects.layout.Template`` (white background, readable fonts,
light grid). Each figure function applies it itself (``fig.update_layout(template=TEMPLATE)``);
nothing is registered in ``plotly.io.templates`` and plotly's default template is left alone, so
importing the package changes no global state. :func:`method_color` gives a method the same colour
in every figure of a notebook or paper, and :func:`method_order` puts the paper's methods in
their canonical order.
"""

from __future__ import annotations

import re
import zlib
from typing import Iterable

import plotly.graph_objects as go
import plotly.io as pio

__all__ = [
    "DIVERGING", "FALLBACK_COLORS", "METHOD_COLORS", "SEQUENTIAL", "TEMPLATE", "apply_template", "method_color",
    "method_colors", "method_key", "method_order",
]

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


def method_key(name: str) -> str:
    """A method name with case, spaces and underscores ignored: ``"PSR + prompt"`` -> ``"psr+prompt"``."""
    return re.sub(r"[\s_]+", "", str(name)).lower()


_KEYS = {method_key(name): colour for name, colour in METHOD_COLORS.items()}
_ORDER = {method_key(name): i for i, name in enumerate(METHOD_COLORS)}


def method_color(name: str) -> str:
    """The colour of a method: fixed for the paper's methods (case and spaces ignored), otherwise
    a stable pick from :data:`FALLBACK_COLORS` by a hash of the name (same in every session)."""
    colour = _KEYS.get(method_key(name))
    if colour is not None:
        return colour
    return FALLBACK_COLORS[zlib.crc32(method_key(name).encode()) % len(FALLBACK_COLORS)]


def method_colors(names: Iterable[str]) -> dict[str, str]:
    """Colours for several methods in one figure: like :func:`method_color`, but two unknown names
    never share a colour (a clash moves to the next free fallback colour)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in dict.fromkeys(names):
        colour = _KEYS.get(method_key(name))
        if colour is None:
            start = zlib.crc32(method_key(name).encode()) % len(FALLBACK_COLORS)
            ring = [FALLBACK_COLORS[(start + i) % len(FALLBACK_COLORS)] for i in range(len(FALLBACK_COLORS))]
            colour = next((c for c in ring if c not in used), ring[0])
        out[name] = colour
        used.add(colour)
    return out


def method_order(names: Iterable[str]) -> list[str]:
    """The paper's methods in their canonical order, then others in order of appearance."""
    names = list(dict.fromkeys(names))
    return sorted(names, key=lambda n: (_ORDER.get(method_key(n), len(_ORDER)), names.index(n)))


def _axis(**extra) -> dict:
    """The axis style of the template: a dark axis line, outside ticks, a light grid."""
    return dict(showline=True, linecolor="#444444", linewidth=1, ticks="outside", tickcolor="#444444",
                showgrid=True, gridcolor="#E5E5E5", zeroline=False, automargin=True,
                title=dict(font=dict(size=15)), **extra)


#: The template every figure applies to itself (plotly_white, restyled); never registered globally.
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


def apply_template(fig: go.Figure) -> go.Figure:
    """Give ``fig`` the workbench look (:data:`TEMPLATE`, in place) and return it."""
    fig.update_layout(template=TEMPLATE)
    return fig

