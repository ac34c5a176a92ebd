"""The paper figures of a run (``make figures``): built from an experiment's stored results.

:func:`paper_figures` returns the figures as plotly objects; :func:`write_figures` writes each as
an interactive HTML file (always) and as PNG, SVG and PDF through kaleido (where a Chrome or
Chromium is installed; otherwise it says how to get one and writes the HTML only).

=======================  =================================================================
name                     what it shows
=======================  =================================================================
``delta_tokens``         one prompt-steered answer, each token coloured by ||Delta_PS||, at
                         five layers (log scale, per-layer median = 1)
``delta_spread``         per layer, the spread of ||Delta_PS|| over response tokens
``lambda_tokens``        a PSR steerer's lambda on the same answer, teacher-forced
``faithfulness``         relative RMSE to the prompt-steered activations, per layer
``tradeoff``             attribute vs coherence as alpha grows (validation), TA@C points marked
``ta_at_c``              TA@C80 and TA@Cp per method, 95% bootstrap intervals
=======================  =================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from workbench.activations.deltas import token_magnitudes
from workbench.core.files import atomic_write_bytes
from workbench.steering.lambda_tables import pair_lambda_table
from workbench.viz.curves import coherence_tradeoff, faithfulness_curves, results_bars
from workbench.viz.export import FigureExportError, export_figure
from workbench.viz.token_maps import magnitude_distribution, token_heatmap

FIGURE_NAMES = ("delta_tokens", "delta_spread", "lambda_tokens", "faithfulness", "tradeoff", "ta_at_c")


def shown_layers(layers: int | Sequence[int], count: int = 5) -> list[int]:
    """``count`` evenly spread layers, the first and the last included, of ``range(layers)`` (an
    int: the model's layer count) or of a list of layers (all of them when there are no more)."""
    items = list(range(layers)) if isinstance(layers, int) else list(layers)
    if len(items) <= count:
        return items
    return sorted({items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)})


def paper_figures(model, result, *, sample: int = 0, lambda_method: str | None = None) -> dict[str, go.Figure]:
    """Every paper figure of an :class:`~workbench.app.experiment.ExperimentResult`.

    Args:
        sample: which kept training triplet the token figures show.
        lambda_method: whose lambda to draw (default: the first PSR method, A- before S-).
    """
    data = result.data
    if not 0 <= sample < len(data.pairs):
        raise IndexError(f"sample {sample} is out of range: the run kept {len(data.pairs)} training triplets")
    layers = shown_layers(model.n_layers)
    table = token_magnitudes(data.store, model.tokenizer, kind="acc")
    attribute = result.meta["attribute"]
    figures = {
        "delta_tokens": token_heatmap(table, "norm", layers=layers, sample=sample, per_layer=True,
                                      title=f"||Delta_PS|| per token ({attribute}; × layer median)"),
        "delta_spread": magnitude_distribution(table, "norm",
                                               title="||Delta_PS|| across response tokens, per layer"),
    }
    psr = [n for n, s in result.steerers.items() if s.info.form == "psr"]
    if lambda_method is None and psr:
        lambda_method = sorted(psr, key=lambda n: (not n.startswith("A-"), n))[0]
    if lambda_method is not None:
        if lambda_method not in result.steerers:
            raise ValueError(f"no steerer {lambda_method!r} in this run; it has {sorted(result.steerers)}")
        steerer = result.steerers[lambda_method]
        lam = pair_lambda_table(model, steerer, data.pairs[sample], alpha=0.0)
        shown = [l for l in layers if l in steerer.layers] or list(steerer.layers)
        figures["lambda_tokens"] = token_heatmap(lam[lam["component"] == 0], "lambda", layers=shown, scale="linear",
                                                 title=f"{lambda_method}: lambda per token (same answer)")
    return {**figures, **comparison_figures(result)}


def comparison_figures(result) -> dict[str, go.Figure]:
    """The figures drawn from an experiment's tables alone (no model needed): ``faithfulness``,
    ``tradeoff`` (validation evaluations, TA@C80 points marked) and ``ta_at_c``."""
    comparison = result.comparison
    sweep = comparison.sweep[comparison.sweep["split"] == "validation"]
    c80 = result.results[result.results["target"] == "C80"]
    return {
        "faithfulness": faithfulness_curves(result.faithfulness, title="Relative RMSE to the prompt-steered activations"),
        "tradeoff": coherence_tradeoff(sweep, results=c80 if len(c80) else None, target=80.0,
                                       title="Attribute vs coherence as alpha grows (validation)"),
        "ta_at_c": results_bars(result.results, title="Attribute score at equal coherence"),
    }


def write_figures(figures: Mapping[str, go.Figure], out_dir: str | Path,
                  formats: Sequence[str] = ("png", "svg", "pdf")) -> tuple[list[Path], str | None]:
    """Write ``<name>.html`` for every figure, and the static ``formats`` where kaleido can.

    Returns ``(written paths, None)``, or ``(the HTML paths, why the static files were not
    written)`` when no browser is available to kaleido.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "plotly.min.js", get_plotlyjs().encode("utf-8"))  # shared by the pages, offline
    written, problem = [out / "plotly.min.js"], None
    for name, fig in figures.items():
        path = out / f"{name}.html"
        atomic_write_bytes(path, fig.to_html(include_plotlyjs="directory", full_html=True).encode("utf-8"))
        written.append(path)
    if formats:
        for name, fig in figures.items():
            try:
                written += export_figure(fig, out / name, formats)
            except FigureExportError as err:
                problem = str(err)
                break
    return written, problem
