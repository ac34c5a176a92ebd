"""Figures and reports: plotly figures from plain tables, their static export, and offline HTML pages.

Every figure function takes tidy DataFrames (or plain dicts) and returns a
``plotly.graph_objects.Figure``; none calls ``show()``, none touches a model, and each applies the
workbench template itself, so importing this package changes no global plotly state. Modules, one
job each:

- :mod:`~workbench.viz.theme`: the template, one colour per method, the paper's method order;
- :mod:`~workbench.viz.token_maps`: per-token heat maps (the norm, and the signed coefficient
  along a direction beside it) and the spread of per-token magnitudes;
- :mod:`~workbench.viz.directions`: the share of Delta_PS held by ``k`` directions, against ``k``;
- :mod:`~workbench.viz.curves`: faithfulness curves, attribute vs coherence, bars at equal
  coherence, loss curves, the radar of adaptation costs;
- :mod:`~workbench.viz.export`: PNG / SVG / PDF through kaleido (needs a Chrome or Chromium);
- :mod:`~workbench.viz.figures`: the paper figures of an experiment run (``make figures``);
- :mod:`~workbench.viz.report`: self-contained HTML pages (the demo report);
- :mod:`~workbench.viz.notebook`: how a notebook stores a figure (plotly JSON plus a description
  for viewers without plotly); its renderer is registered on import, made the default only by
  :func:`~workbench.viz.notebook.use_notebook_renderer`;
- :mod:`~workbench.viz.checks`: the table checks the figure functions share.
"""

from workbench.viz.curves import coherence_tradeoff, faithfulness_curves, loss_curves, radar_chart, results_bars
from workbench.viz.directions import share_vs_k
from workbench.viz.export import FigureExportError, export_figure, find_browser
from workbench.viz.notebook import figure_bundle, use_notebook_renderer
from workbench.viz.figures import FIGURE_NAMES, comparison_figures, paper_figures, shown_layers, write_figures
from workbench.viz.theme import METHOD_COLORS, TEMPLATE, apply_template, method_color, method_colors
from workbench.viz.token_maps import coefficient_heatmap, layer_token_heatmap, magnitude_distribution, token_heatmap

__all__ = [
    "FIGURE_NAMES", "FigureExportError", "METHOD_COLORS", "TEMPLATE", "apply_template", "coefficient_heatmap",
    "coherence_tradeoff",
    "comparison_figures", "export_figure", "faithfulness_curves", "figure_bundle", "find_browser", "layer_token_heatmap",
    "loss_curves", "magnitude_distribution", "method_color", "method_colors", "paper_figures", "radar_chart",
    "results_bars", "share_vs_k", "shown_layers", "token_heatmap", "use_notebook_renderer", "write_figures",
]
