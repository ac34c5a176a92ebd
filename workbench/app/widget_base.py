"""What the notebook widgets share: display as a widget, a coloured status line, a figure in an Output.

Each widget is a plain object that holds its controls as attributes (so tests and notebooks run
under nbval drive it synchronously) and displays as its ``widget`` (:class:`Displayable`). Every
figure but the training panel's live loss curve is shown in an ``ipywidgets.Output`` as a plain
plotly figure (:func:`show_figure`), because each ``FigureWidget`` carries plotly's ~5 MB script in
the widget state that a saved notebook may store, and an Output's figure is part of the widget's
state, so JupyterLab draws it again after a browser reload.

A widget lives in its kernel: a saved notebook (or one whose kernel restarted) cannot show it. So
the widget's output carries a text and HTML hint to run the cell (what GitHub, nbviewer or a
terminal show instead), and under the widget a one-line caption says what to do when JupyterLab
reports the widget's model not found after a kernel restart.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
import plotly.graph_objects as go
from IPython.display import publish_display_data

from workbench.viz.notebook import figure_bundle

__all__ = ["Displayable", "RERUN_CAPTION", "show_figure", "status_html", "widget_hint"]

#: Shown under every workbench widget (a static output that survives a kernel restart).
RERUN_CAPTION = ("interactive widget, alive while its kernel runs: after a kernel restart (JupyterLab then "
                 "reports its model not found) or in a saved copy, run this cell again")

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
    data = figure_bundle(fig)
    out.outputs = ({"output_type": "display_data", "data": data, "metadata": {}},)


def widget_hint(name: str) -> str:
    """What a viewer that cannot draw the widget ``name`` shows instead."""
    return f"[{name}: an interactive widget; run this cell in JupyterLab (or VS Code) to use it]"


class Displayable:
    """Displays as its ``widget`` (a VBox) in Jupyter, with a text/HTML hint for viewers that
    cannot draw widgets, and under it the :data:`RERUN_CAPTION`."""

    widget: widgets.Widget

    def _repr_mimebundle_(self, **kwargs: Any):
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        hint = widget_hint(type(self).__name__)
        bundle["text/plain"] = hint
        bundle["text/html"] = f'<p style="color:#555"><i>{html.escape(hint)}</i></p>'
        return bundle

    def _ipython_display_(self) -> None:
        publish_display_data(self._repr_mimebundle_())
        publish_display_data({"text/plain": RERUN_CAPTION,
                              "text/html": f'<small style="color:#777">{html.escape(RERUN_CAPTION)}</small>'})

