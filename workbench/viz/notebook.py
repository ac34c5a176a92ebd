"""How figures are stored in a notebook: plotly's JSON for JupyterLab and VS Code, plus a short
HTML and text description for every viewer without plotly's renderer (GitHub, nbviewer, a
terminal), so a stored output never shows as nothing.

:func:`use_notebook_renderer` makes it plotly's default renderer in a kernel (the notebooks call
it first); :func:`figure_bundle` is the bundle itself, also used for the figures that widgets
show in an ``ipywidgets.Output``.
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.io.base_renderers import MimetypeRenderer

__all__ = ["RENDERER", "figure_bundle", "figure_summary", "use_notebook_renderer"]

#: The name the renderer is registered under in ``plotly.io.renderers``.
RENDERER = "workbench"
_PLOTLY_JSON = "application/vnd.plotly.v1+json"


def figure_summary(fig: go.Figure | dict) -> str:
    """One line that says what a figure shows: its title, its axes and its traces (at most 8 named).

    Example:
        >>> import plotly.graph_objects as go
        >>> figure_summary(go.Figure(go.Scatter(x=[1], y=[2], name="A-PSR"), layout=dict(title=dict(text="Loss"))))
        'plotly figure "Loss": 1 trace (A-PSR)'
    """
    fig_dict = fig.to_plotly_json() if isinstance(fig, go.Figure) else dict(fig)
    layout = fig_dict.get("layout") or {}
    title = ((layout.get("title") or {}).get("text") or "untitled") if isinstance(layout.get("title"), dict) \
        else str(layout.get("title") or "untitled")
    traces = list(fig_dict.get("data") or [])
    names = list(dict.fromkeys(str(t.get("name")) for t in traces if t.get("name") and t.get("showlegend", True)))
    shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
    axes = [((layout.get(k) or {}).get("title") or {}).get("text") for k in ("xaxis", "yaxis")]
    axes_text = " vs ".join(str(a) for a in reversed(axes) if a) if all(axes) else ""
    text = f'plotly figure "{_plain(title)}": {len(traces)} trace{"s" if len(traces) != 1 else ""}'
    text += f" ({shown})" if shown else ""
    return text + (f"; {_plain(axes_text)}" if axes_text else "")


def _plain(text: str) -> str:
    """Plotly's title markup (<b>, <br>) as plain text."""
    for tag in ("<br>", "<br/>", "<br />"):
        text = text.replace(tag, " ")
    for tag in ("b", "i", "sub", "sup"):
        text = text.replace(f"<{tag}>", "").replace(f"</{tag}>", "")
    return html.unescape(text)


def figure_bundle(fig: go.Figure | dict) -> dict[str, Any]:
    """The mimetype bundle of a figure: plotly's JSON (drawn by JupyterLab's and VS Code's plotly
    renderer, offline), a ``text/html`` description for viewers without it, and ``text/plain``."""
    fig_dict = fig.to_dict() if isinstance(fig, go.Figure) else dict(fig)
    bundle = pio.renderers["plotly_mimetype"].to_mimebundle(fig_dict)
    summary = figure_summary(fig_dict)
    bundle["text/html"] = (f'<div style="color:#555;border:1px dashed #bbb;padding:0.5em">{html.escape(summary)}'
                           "<br><small>(this viewer cannot draw plotly figures: open the notebook in "
                           "JupyterLab or VS Code and run it)</small></div>")
    bundle["text/plain"] = f"<{summary}>"
    return bundle


class _WorkbenchRenderer(MimetypeRenderer):
    """plotly's mimetype renderer plus the fallbacks of :func:`figure_bundle`."""

    def to_mimebundle(self, fig_dict):
        return figure_bundle(fig_dict)


pio.renderers[RENDERER] = _WorkbenchRenderer()  # registering adds a choice; it changes no default


def use_notebook_renderer() -> str:
    """Make :data:`RENDERER` plotly's default renderer (call it in a notebook); returns its name."""
    pio.renderers.default = RENDERER
    return RENDERER
