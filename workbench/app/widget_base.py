"""What the notebook widgets share: display as a widget, a coloured status line, a figure in an Output.

Each widget is a plain object that holds its controls as attributes (so tests and notebooks run
under nbval drive it synchronously) and displays as its ``widget`` (:class:`Displayable`). Every
figure but the training panel's live loss curve is shown in an ``ipywidgets.Output`` as a plain
plotly figure (:func:`show_figure`), because each ``FigureWidget`` carries plotly's ~5 MB script in
the widget state that a saved notebook may store.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go
import plotly.io as pio

__all__ = ["Displayable", "show_figure", "status_html"]

_STATUS_COLOURS = {"info": "#444444", "ok": "#1B7837", "warning": "#B35806", "error": "#B2182B"}


def status_html(text: str, kind: str = "info") -> str:
    """``text`` escaped, in the colour of its ``kind``: ``"info"``, ``"ok"``, ``"warning"`` or ``"error"``."""
    colour = _STATUS_COLOURS.get(kind, _STATUS_COLOURS["info"])
    return f'<span style="color:{colour}">{html.escape(text, quote=False)}</span>'


def show_figure(out: widgets.Output, fig: go.Figure | None) -> None:
    """Make ``out`` show ``fig`` alone (or nothing) as plotly's mimetype bundle, which JupyterLab
    (with the jupyterlab-plotly extension that plotly installs) and VS Code draw offline.

    The outputs are set directly rather than in a ``with out:`` block, so this works from any
    thread (the training panel draws from its training thread) and outside IPython.
    """
    if fig is None:
        out.outputs = ()
        return
    data = pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict())
    data["text/plain"] = f"<plotly figure: {fig.layout.title.text}>"
    out.outputs = ({"output_type": "display_data", "data": data, "metadata": {}},)


class Displayable:
    """Displays as its ``widget`` (a VBox) in Jupyter."""

    widget: widgets.Widget

    def _repr_mimebundle_(self, **kwargs: Any):
        return self.widget._repr_mimebundle_(**kwargs)

