"""The theme: fixed method colours and order, and a template each figure applies to itself."""

from __future__ import annotations

import subprocess
import sys
import zlib

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from workbench.viz.curves import coherence_tradeoff, faithfulness_curves, loss_curves, radar_chart, results_bars
from workbench.viz.theme import FALLBACK_COLORS, METHOD_COLORS, TEMPLATE, apply_template, method_color, method_colors
from workbench.viz.token_maps import layer_token_heatmap, magnitude_distribution, token_heatmap


def test_method_colours_are_fixed_and_case_insensitive():
    assert method_color("A-PSR") == METHOD_COLORS["A-PSR"] == method_color("a-psr")
    assert method_color("PSR+prompt") == METHOD_COLORS["PSR + prompt"]
    assert len(set(METHOD_COLORS.values())) == len(METHOD_COLORS)
    unknown = method_color("my new method")
    assert unknown in FALLBACK_COLORS and unknown not in METHOD_COLORS.values()
    assert unknown == method_color("my new method")  # stable


def test_method_colors_resolves_fallback_clashes():
    n = len(FALLBACK_COLORS)
    names = [f"m{i}" for i in range(50)]
    a, b = next((x, y) for x in names for y in names
                if x < y and zlib.crc32(x.encode()) % n == zlib.crc32(y.encode()) % n)
    colours = method_colors([a, b, "S-PSR"])
    assert colours[a] == method_color(a) and colours[b] != colours[a]
    assert colours["S-PSR"] == METHOD_COLORS["S-PSR"]


def test_template_applied_by_the_figures_not_registered():
    assert "workbench" not in pio.templates  # nothing registered: each figure applies TEMPLATE itself
    assert TEMPLATE.layout.paper_bgcolor == "white" and TEMPLATE.layout.plot_bgcolor == "white"
    assert TEMPLATE.layout.font.size >= 12
    fig = apply_template(go.Figure())
    assert fig.layout.template.layout.paper_bgcolor == "white"
    assert faithfulness_curves(pd.DataFrame(dict(method=["S-PSR"], layer=[0], rel_rmse=[0.5]))
                               ).layout.template.layout.font.size == TEMPLATE.layout.font.size


def test_every_figure_function_applies_the_template():
    tokens = pd.DataFrame(dict(layer=[0, 0, 1, 1], position=[0, 1, 0, 1], token=["a", "b"] * 2,
                               norm=[1.0, 2.0, 3.0, 4.0]))
    faith = pd.DataFrame(dict(method=["S-PSR", "S-PSR"], layer=[0, 1], rel_rmse=[0.5, 0.4]))
    sweep = pd.DataFrame(dict(method=["S-PSR", "S-PSR"], alpha=[0, 1], attribute=[10, 50], coherence=[95, 80]))
    results = pd.DataFrame(dict(method=["S-PSR"], target=["C80"], attribute=[50.0]))
    costs = pd.DataFrame({"method": ["prompt", "S-PSR"], "tokens": [30, 0], "quality": [70, 60], "params": [0, 10]})
    figures = [token_heatmap(tokens), layer_token_heatmap(tokens), magnitude_distribution(tokens),
               faithfulness_curves(faith), coherence_tradeoff(sweep), results_bars(results),
               loss_curves({"S-PSR": [dict(step=1, train_loss=0.5)]}), radar_chart(costs)]
    for fig in figures:
        assert fig.layout.template.to_plotly_json() == TEMPLATE.to_plotly_json()


IMPORT_ALL = """
import plotly.io as pio
before = (pio.templates.default, sorted(pio.templates))
import workbench.viz
from workbench.viz import checks, curves, export, figures, report, theme, token_maps
from workbench.app import lambda_explorer, training_panel
after = (pio.templates.default, sorted(pio.templates))
assert before == after, (before, after)
"""


def test_importing_the_package_changes_no_global_plotly_state():
    """In a fresh interpreter: plotly's default template and its registered names stay as they were."""
    run = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
