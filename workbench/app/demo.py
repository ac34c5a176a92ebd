"""The main job (``make demo``): triplets -> Delta_PS -> steerers -> TA@C and faithfulness -> a report.

On the embedded model and a default attribute (:class:`~workbench.app.experiment.ExperimentConfig`
sizes: ``quick`` by default, ``full`` with ``--full``), write to ``reports/demo/``:

- ``index.html``: a self-contained page (opens offline) with per-token heat maps of
  ``||Delta_PS||`` for a few responses at a few layers, the spread of magnitudes per layer, the
  TA@C80 / TA@Cp bars, the attribute-vs-coherence curves and the faithfulness curves, and the
  triplets;
- ``delta_tokens.csv``: ``sample, layer, position, token, norm, rel_norm`` for every span token;
- ``results.csv`` (the TA@C table with bootstrap CIs), ``faithfulness.csv`` (``method, layer,
  rel_rmse``), ``sweep.csv`` and ``samples.csv`` (every evaluation and answer);
- ``triplets/``, ``heldout/``, ``deltas/``, ``steerers/``, ``evaluations/``: the stored run, from
  which a second ``make demo`` resumes;
- with ``DemoConfig(efficiency=True)`` (``workbench demo --efficiency``): ``efficiency/`` (:func:`~workbench.app.experiment.run_data_efficiency`:
  prompt, Const-DiM, A-PSR, LoRA r8 and Fine-tune trained on 8, 16, 32 and all kept triplets, the
  all-triplets size read from the comparison's own steerers and evaluations) and its figure and table in the page; a report directory that already holds ``efficiency/efficiency.csv``
  shows them too.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.activations.deltas import token_magnitudes
from workbench.app.experiment import (
    ExperimentConfig,
    ExperimentResult,
    prepare_data,
    run_data_efficiency,
    run_experiment,
)
from workbench.core.files import atomic_write_bytes, atomic_write_json
from workbench.core.models import EMBEDDED_MODEL, LoadedModel, load_model
from workbench.data.attributes import load_attribute
from workbench.data.triplets import summarize
from workbench.evaluation.data_efficiency import differences_pivot, efficiency_pivot
from workbench.viz.data_efficiency import data_efficiency_figure
from workbench.viz.figures import comparison_figures, shown_layers
from workbench.viz.report import dataframe_html, figure_html, legend_html, token_heatmap_html, write_html


@dataclass(frozen=True)
class DemoConfig:
    """The demo: which model, the experiment's sizes, how many heat maps, and whether to go past
    Delta_PS to training and comparing the steering methods (``evaluate``)."""

    model: str = EMBEDDED_MODEL
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig.quick)
    heatmap_samples: int = 3
    evaluate: bool = True
    efficiency: bool = False


def spread_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per layer: how unevenly the instruction rewrites the response tokens.

    Columns: ``layer, median_norm, p90_over_p10`` (ratio of the 90th to the 10th percentile of
    ``||D[l, t]||`` over response tokens), ``max_over_median``, ``median_rel_norm``.
    """
    rows = []
    response = table[~table["is_header"]] if "is_header" in table else table
    for layer, part in response.groupby("layer"):
        norms = part["norm"].to_numpy()
        p10, p50, p90 = np.quantile(norms, [0.1, 0.5, 0.9])
        rows.append({
            "layer": int(layer), "median_norm": float(p50), "p90_over_p10": float(p90 / max(p10, 1e-12)),
            "max_over_median": float(norms.max() / max(p50, 1e-12)), "median_rel_norm": float(part["rel_norm"].median()),
        })
    return pd.DataFrame(rows)


def run_demo(out_dir: str | Path = "reports/demo", config: DemoConfig = DemoConfig(), *,
             model: LoadedModel | None = None, progress: bool = True) -> dict:
    """Run the demo end to end; returns a summary dict (also written as ``summary.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    experiment = config.experiment
    attribute = load_attribute(experiment.attribute)
    model = model or load_model(config.model)
    data = prepare_data(model, attribute, out, experiment, progress=progress)
    triplets, store, kept = data.triplets, data.store, data.triplets.kept
    t1 = time.perf_counter()
    table = token_magnitudes(store, model.tokenizer, kind="acc")
    csv = table[["sample", "layer", "position", "token", "norm", "rel_norm"]].to_csv(index=False, float_format="%.6g")
    atomic_write_bytes(out / "delta_tokens.csv", csv.encode("utf-8"))
    local = token_magnitudes(store, model.tokenizer, kind="loc")

    layers = shown_layers(model.n_layers)
    spread = spread_table(table)
    summary = {
        "model": model.model_id, "attribute": attribute.name, "config": experiment.to_dict(),
        **summarize(triplets), "tokens": int(store.n_tokens), "layers": model.n_layers,
        "seconds_data": round(t1 - t0, 1),
        "median_p90_over_p10": float(spread["p90_over_p10"].median()),
    }
    result = None
    if config.evaluate:
        result = run_experiment(model, experiment, out, attribute=attribute, data=data, progress=progress)
        summary["seconds_experiment"] = result.meta["seconds"]
        summary["results"] = _result_lines(result)
    if config.efficiency:
        run_data_efficiency(model, data, experiment, out / "efficiency", progress=progress,
                            shared_run=out if config.evaluate else None)
    summary["seconds_total"] = round(time.perf_counter() - t0, 1)

    sections = [_intro_html(summary, attribute), legend_html()]
    for sample in range(min(config.heatmap_samples, len(kept))):
        row = kept.iloc[sample]
        sections.append(_sample_html(row, sample))
        sections.append(token_heatmap_html(table, sample, layers, "norm", title="accumulated ||Delta_PS||"))
        if sample == 0:
            sections.append(token_heatmap_html(local, sample, layers, "norm", title="local ||Delta_PS|| (what each layer itself adds)"))
            sections.append(token_heatmap_html(table, sample, layers, "rel_norm", title="relative ||Delta_PS|| / ||A_l(x y')||"))
    sections.append("<h2>How unevenly are tokens rewritten?</h2><p>Per layer, over response tokens of all "
                    "kept samples: the 90th / 10th percentile ratio of ||Delta_PS|| and the largest value over the median.</p>")
    sections.append(dataframe_html(spread))
    if result is not None:
        sections += _experiment_html(result)
    sections += efficiency_html(out / "efficiency" / "efficiency.csv", first=result is None)
    sections.append("<h2>The triplets</h2>")
    sections.append(dataframe_html(triplets.table[["question", "instruction", "response", "attr_score", "coh_score", "kept"]]))
    write_html(out / "index.html", f"Delta_PS demo: {attribute.name}", sections)
    atomic_write_json(out / "summary.json", summary)
    return summary


def _result_lines(result: ExperimentResult) -> dict:
    """``{"TA@C80": {method: "attr [lo, hi] at alpha"}, ...}``: the table in a line per method."""
    out = {}
    for target, part in result.results.groupby("target", sort=False):
        out[f"TA@{target}"] = {
            row.method: (f"{row.attribute:.1f} [{row.attribute_lo:.1f}, {row.attribute_hi:.1f}]"
                         + ("" if np.isnan(row.alpha) else f" at alpha {row.alpha:.3g}")
                         + ("" if row.reached else " (target not reached)"))
            for row in part.itertuples()}
    return out


def _experiment_html(result: ExperimentResult) -> list[str]:
    meta, comparison = result.meta, result.comparison
    targets = comparison.meta["targets"]
    figures = comparison_figures(result)
    sections = [
        "<h2>Steering at equal coherence</h2>",
        f"<p>Each steerer was trained on the {meta['n_train_kept']} kept training triplets "
        f"({meta['n_train_tokens']} span tokens); single-layer methods act at layer {meta['single_layer']}. "
        f"On {comparison.meta['n_validation']} validation questions, bisection found for each method the strongest "
        f"<i>alpha</i> whose mean coherence is the target (80, and the prompt's own coherence C<sub>p</sub> = "
        f"{targets.get('Cp', float('nan')):.1f}); the attribute score at that alpha on "
        f"{comparison.meta['n_test']} test questions is TA@C80 / TA@C<sub>p</sub> (95% bootstrap intervals). "
        "Judges: " + html.escape(f"{comparison.meta['attribute_judge']} (attribute), "
                                 f"{comparison.meta['coherence_judge']} (coherence)") + ".</p>",
        figure_html(figures["ta_at_c"], first=True),
        figure_html(figures["tradeoff"], first=False),
        dataframe_html(comparison.table().drop(columns=["reached"])),
        "<h2>Faithfulness: how closely each method tracks the prompt</h2>",
        f"<p>On {meta['n_heldout_kept']} held-out triplets (test questions), teacher-forced on the prompt-steered "
        "answer: per layer, ||A<sub>l</sub><sup>method</sup>(x y') − A<sub>l</sub>(x' y')|| / "
        "||A<sub>l</sub>(x y') − A<sub>l</sub>(x' y')||. 1 is no better than not steering, 0 is the prompt itself; "
        "the paraphrase curve is the same instruction in other words"
        + (f" (<i>{html.escape(meta['paraphrase'])}</i>)" if meta.get("paraphrase") else "") + ".</p>",
        figure_html(figures["faithfulness"], first=False),
    ]
    return sections


def efficiency_html(path: Path, *, first: bool = False) -> list[str]:
    """The data-efficiency section (figure and table) of a stored ``efficiency.csv``; none without one.
    ``first``: no figure came before on the page (plotly.js is then inlined here)."""
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    return [
        "<h2>Data efficiency: steering against weight-space adaptation</h2>",
        "<p>TA@C80 (95% bootstrap intervals) of each method trained on nested subsets of the kept triplets (same "
        "seeds); the LoRA and the fine-tune distil the prompt into weights (input <i>x y'</i> without the "
        "instruction, loss on the response). The prompt needs no triplets (dashed).</p>",
        figure_html(data_efficiency_figure(table), first=first),
        dataframe_html(efficiency_pivot(table).reset_index()),
    ] + _differences_html(path.with_name("differences.csv"))


def _differences_html(path: Path) -> list[str]:
    """The paired differences at each size, when the run wrote them."""
    if not path.is_file():
        return []
    paired = differences_pivot(pd.read_csv(path).query("metric == 'attribute'"))
    return [
        "<p>Paired differences of TA@C80 (points; the same test questions and seeds for every method, 95% "
        "bootstrap intervals resampling questions); * marks an interval that excludes 0, the only differences "
        "called.</p>",
        dataframe_html(paired.reset_index()),
    ]


def _intro_html(summary: dict, attribute) -> str:
    return (
        f"<h1>Which tokens does the instruction rewrite?</h1>"
        f"<p class='sub'>{html.escape(summary['model'])} · attribute <b>{html.escape(attribute.name)}</b> · "
        f"{summary['kept']} of {summary['samples']} prompt-steered samples kept "
        f"({100 * summary['success_rate']:.0f}% successful and coherent) · {summary['tokens']} span tokens</p>"
        "<p>Each response <i>y'</i> was sampled with the steering instruction as system message (<i>x'</i>), then run "
        "again, token for token, without it (<i>x</i>). The colour of a token is <b>||Delta_PS||</b> = "
        "||A<sub>l</sub>(x' y') − A<sub>l</sub>(x y')||, the change the instruction causes in the residual stream after "
        "block <i>l</i> (TransformerLens <code>blocks.l.hook_resid_post</code> = Hugging Face "
        "<code>hidden_states[l+1]</code>), on a log scale per layer. Dashed tokens are the assistant header. "
        "Hover a token for its value. The instruction does not change every token alike: some tokens (often the "
        "persona's own words) change several times more than their neighbours, whereas a constant steering vector adds "
        "the same change everywhere. The table at the bottom measures how wide that spread is, layer by layer.</p>"
    )


def _sample_html(row, sample: int) -> str:
    return (
        f"<h2>Sample {sample}</h2><table><tr><th>question (x)</th><td>{html.escape(row.question)}</td></tr>"
        f"<tr><th>instruction (x' adds)</th><td>{html.escape(row.instruction)}</td></tr>"
        f"<tr><th>response (y')</th><td>{html.escape(row.response)}</td></tr>"
        f"<tr><th>judges</th><td>attribute {row.attr_score:.0f} · coherence {row.coh_score:.0f}</td></tr></table>"
    )
