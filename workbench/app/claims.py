"""The claims report: the paper's five findings, measured on every bundled attribute, with verdicts.

``workbench claims`` (``make claims``) runs, per attribute, the library's experiment
(:func:`workbench.app.experiment.run_experiment`: triplets, Delta_PS, steerers, the equal-coherence
comparison, faithfulness), trains the extra A-PSR variants finding 4 names, and reads off:

1. **spread**, three rows: per-token ``||Delta_PS||`` over the training response tokens, per layer;
   the claim "the 90th percentile token moves more than ``spread_threshold`` (10) times the 10th"
   on the median over layers, with an interval from resampling responses
   (:func:`workbench.evaluation.findings.spread_interval`; the note gives the largest/smallest
   ratio and which token kinds move most). Then the same threshold on the signed coefficient
   ``c_t = <D_t, z>`` along each layer's mean training direction ``z``, measured on the held-out
   triplets (what the paper's uniform-strength assumption is about; the note adds p99/p1, the
   shares of tokens near zero and negative, the tokens with the largest ``c_t`` and how well each
   PSR's lambda reads ``c_t``), and the share of the held-out ``sum_t ||D_t||^2`` that lies along ``z``
   (its one-direction assumption, claimed > ``share_threshold``; the note gives the rank that
   holds 50 % and 80 %) (:mod:`workbench.evaluation.assumptions`);
2. **PSR beats constant steering at equal coherence**: S-PSR minus Const-DiM (one layer) and A-PSR
   minus A-Const-DiM (all layers), at TA@C80 and TA@Cp, paired over test questions
   (:meth:`workbench.evaluation.comparison.Comparison.differences`);
3. **a single-layer constant vector overshoots and is repaired**: Const-DiM at its TA@C80 strength
   has relative RMSE > 1 at its layer, and less at the last layer (intervals over held-out triplets);
4. **A-PSR tracks the prompt more closely than a paraphrase from the middle layers on**: the mean
   over layers ``>= n_layers // 2`` of relRMSE(A-PSR variant) minus relRMSE(paraphrase) < 0, for the
   layer-by-layer, joint and rank-4 A-PSR, each at the held-out soft labels;
5. **instruction following** (over the verifiable instruction set, not per attribute): rank-1 PSR
   alone falls short of the prompt, PSR + prompt beats the prompt, rank-r PSR beats rank-1 PSR,
   paired over (instruction, test question) (:func:`workbench.evaluation.instruction_following.run_instruction_following`).

A verdict is ``holds`` when the interval lies on the claimed side of its threshold, ``does not hold``
when it lies on the other side (or is exactly the threshold on every resample), and ``not separable
at this n`` otherwise (:func:`workbench.evaluation.statistics.claim_verdict`).

Everything is stored under ``out`` (``runs/<attribute>/``: the experiment; ``rows/``: each unit's
rows, named by a fingerprint of what they depend on; ``figures/``), so a rerun with the same
settings reads the rows back and computes nothing, not even loading the model; an interrupted run
resumes from what the library stored (triplets, deltas, steerers, every judged evaluation).
Findings 1 and 4 need only the data and the steerers: they are measured and stored first
(``rows/<unit>-<key>.partial.json``), and ``stored_only=True`` (``--stored-only``) writes the
table of whatever is stored so far without computing anything.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.activations.deltas import magnitude_by_kind, pairs_fingerprint, token_magnitudes
from workbench.app.experiment import ExperimentConfig, prepare_data, run_experiment, train_methods
from workbench.core.cached import cached, read_cached, write_cached
from workbench.core.checks import check_field, check_number
from workbench.core.files import atomic_write_bytes
from workbench.core.fingerprint import fingerprint
from workbench.core.generation import GENERATION_VERSION
from workbench.core.locks import directory_lock
from workbench.core.models import LoadedModel, load_model
from workbench.judges.base import judge_fingerprint
from workbench.data.attributes import list_attributes, load_attribute
from workbench.evaluation.assumptions import heldout_store, measure_assumptions
from workbench.evaluation.comparison import EvalConfig, steerer_fingerprint
from workbench.evaluation.findings import faithfulness_intervals, faithfulness_statistic, spread_by_layer, spread_interval
from workbench.evaluation.instruction_following import run_instruction_following
from workbench.evaluation.lambda_reading import lambda_reading
from workbench.evaluation.pair_faithfulness import pair_errors
from workbench.evaluation.statistics import claim_verdict, paired_bootstrap
from workbench.steering.train import TrainConfig
from workbench.viz.curves import faithfulness_curves
from workbench.viz.directions import share_vs_k
from workbench.viz.intervals import interval_forest
from workbench.viz.token_maps import coefficient_heatmap, display_token, magnitude_distribution

CLAIMS_VERSION = 2  # 2: finding 1 has three rows (norm, coefficient along the mean direction, share along it)
PAIR_ERRORS_VERSION = 1  # the stored per-triplet faithfulness errors, unchanged by the rows' version
CLAIM_COLUMNS = ["finding", "attribute", "claim", "measure", "value", "lo", "hi", "threshold", "n", "unit", "verdict",
                 "note", "figure"]
FINDINGS = {
    1: "per-token ||Delta_PS|| spread, and the strength along its mean direction",
    2: "PSR vs constant steering at equal coherence",
    3: "single-layer constant vector overshoots at its layer, repaired downstream",
    4: "A-PSR tracks the prompt more closely than a paraphrase (middle layers on)",
    5: "instruction following",
}
INSTRUCTIONS_UNIT = "instructions"


@dataclass(frozen=True)
class ClaimsConfig:
    """What the claims report measures and at which size.

    Attributes:
        attributes: bundled attribute names (empty: every bundled attribute).
        experiment: the per-attribute experiment (its ``attribute`` is replaced by each name).
        extra_methods: steerers trained only for finding 4 (not searched for TA@C).
        instructions: verifiable instruction ids for finding 5 (``None``: the default set;
            empty: skip finding 5).
        if_n_train, if_n_test, if_rank, if_layers: instruction following's training questions,
            test questions, the rank of "rank-r PSR" and where PSR acts (``None``: every layer).
        spread_threshold: the p90/p10 ratio finding 1 calls "an order of magnitude" (of the norm
            and of the coefficient along the mean direction alike).
        share_threshold: the share of ``sum_t ||D_t||^2`` along the mean direction above which
            finding 1 calls the change one-directional (the paper's Assumption 3.1).
        n_boot: bootstrap resamples of every interval.
    """

    attributes: tuple[str, ...] = ()
    experiment: ExperimentConfig = field(default_factory=lambda: default_experiment())
    extra_methods: tuple[str, ...] = ("A-PSR r4", "A-PSR (joint)")
    instructions: tuple[str, ...] | None = None
    if_n_train: int = 24
    if_n_test: int = 18
    if_rank: int = 4
    if_layers: int | None = 15
    if_max_new_tokens: int = 48
    if_steps: int = 200
    spread_threshold: float = 10.0
    share_threshold: float = 0.5
    n_boot: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", tuple(self.attributes))
        object.__setattr__(self, "extra_methods", tuple(self.extra_methods))
        if self.instructions is not None:
            object.__setattr__(self, "instructions", tuple(self.instructions))
        known = set(list_attributes())
        unknown = [a for a in self.attributes if a not in known]
        if unknown:
            raise ValueError(f"unknown attribute(s) {unknown}; bundled: {sorted(known)}")
        check_field(self, "share_threshold", check_number, above=0, below=1)
        if self.n_boot < 10:
            raise ValueError(f"n_boot must be >= 10, got {self.n_boot}")
        needed = {"Const-DiM", "S-PSR", "A-Const-DiM", "A-PSR"} - set(self.experiment.methods)
        if needed:
            raise ValueError(f"the claims need the methods {sorted(needed)} in the experiment (findings 2-4)")

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return self.attributes or tuple(list_attributes())

    @classmethod
    def sized(cls, size: str = "default", **overrides) -> "ClaimsConfig":
        """``"default"`` (sized to fit ~2 hours on 2 cores for every attribute, see the README),
        ``"full"`` (every question, longer answers, more training; many hours on 2 cores) or
        ``"tiny"`` (a smoke test: minutes, intervals too wide to decide anything)."""
        if size == "default":
            base = cls()
        elif size == "full":
            base = cls(experiment=default_experiment(
                n_train=None, n_heldout=None, max_new_tokens=64, steps=1000, joint_steps=100,
                evaluation=EvalConfig(n_validation=None, n_test=None, max_new_tokens=64, max_steps=10)),
                if_n_train=32, if_n_test=None, if_max_new_tokens=64, if_steps=300, n_boot=2000)
        elif size == "tiny":
            base = cls(experiment=default_experiment(
                n_train=16, n_heldout=6, max_new_tokens=24, steps=60, joint_steps=4,
                evaluation=EvalConfig(n_validation=4, n_test=8, max_new_tokens=24, max_steps=4, tol=5.0, batch_size=8)),
                if_n_train=6, if_n_test=6, if_max_new_tokens=24, if_steps=40, n_boot=200)
        else:
            raise ValueError(f"size must be 'default', 'full' or 'tiny', got {size!r}")
        return replace(base, **overrides)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["experiment"] = self.experiment.to_dict()
        return out


def default_experiment(**overrides) -> ExperimentConfig:
    """The claims' experiment: the constant vector and PSR, at one layer and at all layers, no
    stacking on the prompt (finding 5 measures that); test questions 40 for tighter intervals."""
    base = ExperimentConfig(methods=("Const-DiM", "S-PSR", "A-Const-DiM", "A-PSR"), plus_prompt=None,
                            evaluation=EvalConfig(n_validation=12, n_test=40))
    return replace(base, **overrides)


@dataclass
class ClaimsResult:
    """The claims table (:data:`CLAIM_COLUMNS`), where it was written, and how long each unit took."""

    table: pd.DataFrame
    directory: Path
    seconds: dict
    config: "ClaimsConfig | None" = None

    def markdown(self) -> str:
        return claims_markdown(self.table, self.config)


# --------------------------------------------------------------------------------------------
# rows of one attribute
# --------------------------------------------------------------------------------------------


def _row(finding: int, attribute: str, claim: str, measure: str, stat: dict, threshold: float, direction: str,
         unit: str, note: str = "", figure: str = "") -> dict:
    value, lo, hi = (float(stat.get(k, math.nan)) for k in ("value", "lo", "hi"))
    return {"finding": finding, "attribute": attribute, "claim": claim, "measure": measure, "value": value,
            "lo": lo, "hi": hi, "threshold": f"{direction} {threshold:g}", "n": int(stat.get("n", 0)), "unit": unit,
            "verdict": claim_verdict(lo, hi, threshold, direction), "note": note, "figure": figure}


def _write_figure(fig: go.Figure, directory: Path, name: str) -> str:
    """HTML next to a shared ``plotly.min.js`` (opens offline); returns the path relative to the report."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.html"
    text = fig.to_html(include_plotlyjs="directory", full_html=True)
    atomic_write_bytes(path, text.encode("utf-8"))
    bundle = directory / "plotly.min.js"
    if not bundle.is_file():
        from plotly.offline import get_plotlyjs  # the bundled plotly.js, written once for every figure

        atomic_write_bytes(bundle, get_plotlyjs().encode("utf-8"))
    return f"figures/{name}.html"


def _attribute_words(attribute) -> list[str]:
    spec = getattr(attribute.judge, "spec", {}) or {}
    return list(spec.get("words", [])) + list(spec.get("stopwords", []))


def spread_rows(table: pd.DataFrame, attribute, figures: Path, config: ClaimsConfig, seed: int) -> list[dict]:
    """Finding 1 from the training deltas' per-token table."""
    name = attribute.name
    by_layer = spread_by_layer(table)
    stat = spread_interval(table, n_boot=config.n_boot, seed=seed)
    middle = int(by_layer["layer"].iloc[len(by_layer) // 2])
    words = _attribute_words(attribute)
    kinds = magnitude_by_kind(table, words, value="norm", layers=[middle])
    kinds = kinds.sort_values("x_median", ascending=False)
    top = ", ".join(f"{k} {x:.1f}x" for k, x in zip(kinds["kind"], kinds["x_median"]))
    worst = by_layer.loc[by_layer["max_min"].idxmax()]
    note = (f"p90/p10 per layer {by_layer['p90_p10'].min():.1f}-{by_layer['p90_p10'].max():.1f}; largest/smallest "
            f"median {by_layer['max_min'].median():.0f}, max {worst['max_min']:.0f} at layer {int(worst['layer'])}; "
            f"at layer {middle}, median change by token kind over the median token: {top}")
    fig = magnitude_distribution(table, title=f"{name}: per-token ||Delta_PS|| per layer (p10-p90 band)")
    path = _write_figure(fig, figures, f"f1-{name}")
    return [_row(1, name, f"p90/p10 of per-token ||Delta_PS|| > {config.spread_threshold:g}",
                 "median over layers of p90/p10", stat, config.spread_threshold, ">", "responses", note, path)]


def assumption_rows(assumptions, attribute, figures: Path, config: ClaimsConfig, readings: pd.DataFrame | None = None,
                    why: str = "") -> list[dict]:
    """Finding 1's coefficient and share rows, from :func:`~workbench.evaluation.assumptions.measure_assumptions`
    on the held-out triplets (``None``: not measured, for the reason ``why``); ``readings``: the
    PSRs' :func:`~workbench.evaluation.lambda_reading.lambda_reading` rows, summed up in the note."""
    name = attribute.name
    coef_claim = f"p90/p10 of per-token |c_t| along the mean direction > {config.spread_threshold:g}"
    coef_measure = "median over layers of p90/p10 of |c_t| (held out)"
    share_claim = f"share of sum ||Delta_PS||^2 along the mean direction > {config.share_threshold:g} (Assumption 3.1)"
    share_measure = "median over layers of the held-out share along z"
    if assumptions is None:
        return [_row(1, name, coef_claim, coef_measure, {}, config.spread_threshold, ">", "held-out responses",
                     f"not measured: {why}"),
                _row(1, name, share_claim, share_measure, {}, config.share_threshold, ">", "held-out responses",
                     f"not measured: {why}")]
    a = assumptions
    layers = a.layers
    middle = layers[len(layers) // 2]
    coef, norm = a.coef_spread, a.norm_spread

    def shown(stat: dict, percent: bool = False) -> str:
        fmt = (lambda v: f"{100 * v:.0f}%") if percent else (lambda v: f"{v:.3g}")
        return f"{fmt(stat['value'])} [{fmt(stat['lo'])}, {fmt(stat['hi'])}]"

    top = a.top_tokens(middle, n=5)
    tokens = ", ".join(f"'{display_token(t)}' {x:.1f}x" for t, x in zip(top["token"], top["x_median"]))
    note = (f"p99/p1 {shown(coef.stat('p99_p1'))}; |c_t| <= 0.1 x median on {shown(coef.stat('near_zero'), True)} "
            f"of tokens, c_t < 0 on {shown(coef.stat('negative'), True)}; ||D|| on the same held-out tokens: p90/p10 "
            f"{shown(norm.stat('p90_p10'))}, p99/p1 {shown(norm.stat('p99_p1'))}; largest c_t at layer {middle} "
            f"(x median |c_t|): {tokens}")
    if readings is not None and len(readings):
        parts = []
        for (method, layer), part in readings.groupby(["method", "layer"], sort=False):
            r = part[part["measure"] == "spearman"].set_index("target")
            parts.append(f"{method} (layer {layer}) Spearman with c_t {shown(r.loc['coefficient'])}, "
                         f"with ||D|| {shown(r.loc['norm'])}, paired difference {shown(r.loc['coefficient - norm'])}")
        note += "; lambda reads the strength: " + "; ".join(parts)
    sample = int(a.top_tokens(middle, n=1)["sample"].iloc[0])
    heat = coefficient_heatmap(a.coefficients, sample=sample,
                               title=f"{name}: held-out response {sample}, ||Delta_PS|| and c_t along the mean direction")
    coef_path = _write_figure(heat, figures, f"f1-coef-{name}")
    share = a.along.set_index("layer")["share"]
    ranks = a.ranks.set_index(["layer", "target"])
    curve = a.curves[(a.curves["basis"] == "principal") & (a.curves["k"] == 1)]

    def fmt(rank: float) -> str:
        return f"more than {a.energies.rank}" if math.isinf(rank) else f"{rank:.0f}"

    def rank_text(target: float) -> str:
        r = ranks.loc[(middle, target)]
        over = ranks.xs(target, level="target")["rank"]
        spread = (f"{fmt(over.min())} at every layer" if over.min() == over.max()
                  else f"{fmt(over.min())} to {fmt(over.max())} over layers")
        return (f"{100 * target:.0f}% needs {fmt(r['rank'])} [{fmt(r['lo'])}, {fmt(r['hi'])}] directions at layer "
                f"{middle} ({spread})")

    share_note = (f"share along z per layer {share.min():.2f}-{share.max():.2f}; the top principal direction of the "
                  f"training deltas holds {curve['share'].min():.2f}-{curve['share'].max():.2f} by layer band; "
                  f"{rank_text(0.5)}; {rank_text(0.8)}; one random direction holds about 1/{a.energies.d_model}")
    share_path = _write_figure(share_vs_k(a.curves, title=f"{name}: share of held-out ||Delta_PS||^2 held by k "
                                          "directions of the training deltas"), figures, f"f1-share-{name}")
    return [_row(1, name, coef_claim, coef_measure, coef.stat("p90_p10"), config.spread_threshold, ">",
                 "held-out responses", note, coef_path),
            _row(1, name, share_claim, share_measure, a.along_summary, config.share_threshold, ">",
                 "held-out responses", share_note, share_path)]


def rank_faithfulness_note(assumptions, errors: pd.DataFrame, n_layers: int, config: ClaimsConfig, seed: int,
                           rank: int = 4) -> str:
    """How many directions the prompt uses, next to what a rank-``rank`` A-PSR gains in
    faithfulness over rank 1: the held-out share held by 1 and ``rank`` principal directions of
    the training deltas and the relRMSE of ``A-PSR r<rank>`` minus ``A-PSR``, both over the layers
    finding 4 averages (``>= n_layers // 2``), the difference with its interval over held-out triplets."""
    name = f"A-PSR r{rank}"
    if name not in set(errors["method"]) or "A-PSR" not in set(errors["method"]):
        return ""
    from_layer = n_layers // 2
    energies = assumptions.energies
    late = [j for j, l in enumerate(energies.layers) if l >= from_layer]
    if not late or energies.rank < rank:
        return ""
    held = [float(np.mean([energies.principal[j][:, k - 1].sum() / energies.total[j].sum() for j in late]))
            for k in (1, rank)]
    gap = faithfulness_statistic(
        errors, lambda c, ls: (c[name][..., ls.index(from_layer):] - c["A-PSR"][..., ls.index(from_layer):]).mean(-1),
        n_boot=config.n_boot, seed=seed)
    return (f"; at layers {from_layer}+ {rank} principal directions hold {held[1]:.2f} of the held-out change (1: "
            f"{held[0]:.2f}), and {name} minus A-PSR relRMSE is {gap['value']:.3g} [{gap['lo']:.3g}, {gap['hi']:.3g}] "
            f"(n = {gap['n']} held-out triplets)")


def _measured_assumptions(model: LoadedModel, data, steerers: dict, layer: int, directory: Path, config: ClaimsConfig,
                          seed: int, progress: bool):
    """``(assumptions, lambda readings, why not)`` on the held-out triplets: their deltas are
    extracted once under ``directory``; with fewer than two held-out responses nothing is measured."""
    if len(data.heldout_pairs) < 2:
        return None, None, f"{len(data.heldout_pairs)} held-out response(s); an interval needs two"
    store = heldout_store(model, data.heldout_pairs, directory, progress=progress)
    kw = dict(n_boot=config.n_boot, seed=seed)
    assumptions = measure_assumptions(data.store, store, tokenizer=model.tokenizer, **kw)
    readings = [lambda_reading(steerers[n], store, layer, **kw) for n in ("S-PSR", "A-PSR") if n in steerers]
    readings = pd.concat(readings, ignore_index=True) if readings else None
    claims_dir = directory / "claims"
    per_layer = pd.concat([assumptions.coef_spread.per_layer.assign(value_of="coef"),
                           assumptions.norm_spread.per_layer.assign(value_of="norm")], ignore_index=True)
    for file, frame in (("assumptions-spread.csv", per_layer), ("assumptions-share.csv", assumptions.along),
                        ("assumptions-ranks.csv", assumptions.ranks), ("assumptions-curves.csv", assumptions.curves),
                        ("lambda-reading.csv", readings)):
        if frame is not None:
            atomic_write_bytes(claims_dir / file, frame.to_csv(index=False, float_format="%.6g").encode("utf-8"))
    return assumptions, readings, ""


def comparison_rows(comparison, name: str, figures: Path) -> list[dict]:
    """Finding 2 from the equal-coherence comparison's paired differences."""
    contrasts = [("S-PSR", "Const-DiM"), ("A-PSR", "A-Const-DiM")]
    diffs = comparison.differences(contrasts)
    everything = comparison.differences()
    shown = pd.concat([diffs, everything], ignore_index=True).drop_duplicates(["target", "a", "b"])
    shown = shown.assign(label=[f"{t}: {a} - {b}" for t, a, b in zip(shown["target"], shown["a"], shown["b"])])
    path = _write_figure(interval_forest(shown, title=f"{name}: paired differences of attribute score (TA@C)"),
                         figures, f"f2-{name}")
    rows = []
    for d in diffs.itertuples():
        scope = "one layer" if d.a == "S-PSR" else "all layers"
        note = (f"{d.a} alpha {d.alpha_a:.3g}, {d.b} alpha {d.alpha_b:.3g}; "
                f"{d.a} {_score(comparison, d.a, d.target)} vs {d.b} {_score(comparison, d.b, d.target)}")
        rows.append(_row(2, name, f"{d.a} > {d.b} at TA@{d.target} ({scope})", f"TA@{d.target} {d.a} - {d.b}",
                         {"value": d.difference, "lo": d.lo, "hi": d.hi, "n": d.n}, 0.0, ">", "test questions",
                         note, path))
    return rows


def _score(comparison, method: str, target: str) -> str:
    row = comparison.results[(comparison.results["method"] == method) & (comparison.results["target"] == target)]
    return f"{row['attribute'].iloc[0]:.1f}" if len(row) else "?"


def faithfulness_rows(errors: pd.DataFrame, name: str, single_layer: int, n_layers: int, figures: Path,
                      config: ClaimsConfig, seed: int, const_alpha: float = math.nan, target: str = "C80",
                      findings: Sequence[int] = (3, 4)) -> list[dict]:
    """Findings 3 and 4 (those of ``findings``) from per-triplet faithfulness errors (``target``:
    the TA@C target whose strength the constant vector is measured at)."""
    curves = faithfulness_intervals(errors, n_boot=config.n_boot, seed=seed)
    rows = []
    const = f"Const-DiM @{target}"
    kw = dict(n_boot=config.n_boot, seed=seed)
    if 3 not in findings:
        pass
    elif const in set(errors["method"]):
        layer = single_layer
        last = n_layers - 1
        fig = faithfulness_curves(curves[curves["method"].isin([const, "paraphrase", "no steering"])],
                                  title=f"{name}: Const-DiM at its TA@{target} strength (alpha {const_alpha:.3g})")
        path = _write_figure(fig, figures, f"f3-{name}")
        at = faithfulness_statistic(errors, lambda c, ls: c[const][..., ls.index(layer)], **kw)
        repair = faithfulness_statistic(errors, lambda c, ls: c[const][..., ls.index(last)] - c[const][..., ls.index(layer)], **kw)
        rows.append(_row(3, name, f"{const} relRMSE > 1 at its layer {layer}", f"relRMSE at layer {layer}",
                         at, 1.0, ">", "held-out triplets", f"alpha {const_alpha:.3g}", path))
        rows.append(_row(3, name, "the model repairs it downstream", f"relRMSE layer {last} - layer {layer}",
                         repair, 0.0, "<", "held-out triplets", f"relRMSE at layer {last}: "
                         f"{curves[(curves['method'] == const) & (curves['layer'] == last)]['rel_rmse'].iloc[0]:.2f}", path))
    else:
        rows += [_row(3, name, f"{const} relRMSE > 1 at its layer", "relRMSE at its layer", {}, 1.0, ">",
                      "held-out triplets", f"not measured: the TA@{target} search found no strength")]
    variants = [m for m in ("A-PSR", "A-PSR r4", "A-PSR (joint)") if m in set(errors["method"])]
    from_layer = n_layers // 2
    if 4 not in findings:
        pass
    elif "paraphrase" in set(errors["method"]):
        fig = faithfulness_curves(curves[curves["method"].isin([*variants, "paraphrase", "no steering"])],
                                  title=f"{name}: A-PSR variants against the paraphrase (95% bands over triplets)")
        path = _write_figure(fig, figures, f"f4-{name}")
        for m in variants:
            gap = faithfulness_statistic(
                errors, lambda c, ls, m=m: (c[m][..., ls.index(from_layer):] - c["paraphrase"][..., ls.index(from_layer):]).mean(-1), **kw)
            rows.append(_row(4, name, f"{m} closer to the prompt than the paraphrase (layers {from_layer}+)",
                             f"mean relRMSE({m}) - relRMSE(paraphrase), layers {from_layer}-{n_layers - 1}", gap, 0.0,
                             "<", "held-out triplets", "at the held-out soft labels", path))
    else:
        rows += [_row(4, name, f"{m} closer to the prompt than the paraphrase", "", {}, 0.0, "<", "held-out triplets",
                      "not measured: the attribute has no paraphrase") for m in variants]
    return rows


def instruction_rows(run, figures: Path, config: ClaimsConfig, seed: int) -> list[dict]:
    """Finding 5 from instruction following's per-answer strict scores, paired by (instruction, question)."""
    responses = run.responses.assign(unit=lambda d: d["instruction"] + " | " + d["question"])
    wide = responses.pivot_table(index="unit", columns="method", values="strict", aggfunc="mean")
    claims = [("PSR", "prompt", "<", "rank-1 PSR alone falls short of the prompt"),
              ("PSR + prompt", "prompt", ">", "PSR + prompt beats the prompt"),
              ("rank-r PSR", "PSR", ">", f"rank-{config.if_rank} PSR beats rank-1 PSR")]
    rows, shown = [], []
    for a, b, direction, claim in claims:
        if a not in wide or b not in wide:
            continue
        d = paired_bootstrap(100 * wide[a].to_numpy(), 100 * wide[b].to_numpy(), names=(a, b), n_boot=config.n_boot,
                             seed=seed)
        shown.append({"label": f"{a} - {b}", "difference": d.mean, "lo": d.lo, "hi": d.hi})
        summary = run.summary.groupby("method")["strict_accuracy"].mean()
        note = f"mean strict accuracy over instructions: {a} {100 * summary.get(a, math.nan):.1f}, {b} {100 * summary.get(b, math.nan):.1f}"
        rows.append(_row(5, INSTRUCTIONS_UNIT, claim, f"strict accuracy {a} - {b} (points)",
                         {"value": d.mean, "lo": d.lo, "hi": d.hi, "n": d.n}, 0.0, direction,
                         "instruction x test question", note))
    if shown:
        path = _write_figure(interval_forest(pd.DataFrame(shown), title="Instruction following: paired differences "
                                             "of strict accuracy (points)"), figures, "f5-instructions")
        for row in rows:
            row["figure"] = path
    return rows


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------


class _Model:
    """The model, loaded on first use (a rerun that reads every row back never loads it)."""

    def __init__(self, model: LoadedModel | str):
        self._model = model if isinstance(model, LoadedModel) else None
        self.name = model.model_id if isinstance(model, LoadedModel) else str(model)

    def get(self) -> LoadedModel:
        if self._model is None:
            self._model = load_model(self.name)
        return self._model


def _attribute_unit(model: _Model, attribute, config: ClaimsConfig, out: Path, progress: bool, judges: dict,
                    partial: Path) -> list[dict]:
    """One attribute's rows, in two stages: findings 1 and 4 need only the data and the steerers
    (their rows are stored at ``partial`` as soon as they are measured); findings 2 and 3 need the
    equal-coherence comparison."""
    m = model.get()
    name = attribute.name
    experiment = replace(config.experiment, attribute=name)
    run_dir = out / "runs" / name
    figures = out / "figures"
    seed = experiment.seed
    data = prepare_data(m, attribute, run_dir, experiment, triplet_coherence=judges.get("triplet_coherence"),
                        progress=progress)
    every = tuple(dict.fromkeys(experiment.methods + config.extra_methods))
    steerers = train_methods(m, data, replace(experiment, methods=every, plus_prompt=None), run_dir / "steerers",
                             progress=progress)
    stored = read_cached(partial)
    if stored is not None:
        first = stored["rows"]
    else:
        first = spread_rows(token_magnitudes(data.store, m.tokenizer), attribute, figures, config, seed)
        assumptions, readings, why = _measured_assumptions(m, data, steerers, experiment.single_layer(m), run_dir,
                                                           config, seed, progress)
        first += assumption_rows(assumptions, attribute, figures, config, readings, why)
        variants = {n: (steerers[n], list(data.heldout_labels)) for n in ("A-PSR", "A-PSR r4", "A-PSR (joint)")
                    if n in steerers}
        errors = _stored_errors(m, data, variants, run_dir / "claims")
        if assumptions is not None:  # the share row also says what rank 4 buys in faithfulness
            first[-1]["note"] += rank_faithfulness_note(assumptions, errors, m.n_layers, config, seed)
        first += faithfulness_rows(errors, name, experiment.single_layer(m), m.n_layers, figures, config, seed,
                                   findings=(4,))
        write_cached(partial, {"unit": name, "findings": [1, 4], "rows": first})
    result = run_experiment(m, experiment, run_dir, attribute=attribute, data=data, progress=progress, **judges)
    rows = comparison_rows(result.comparison, name, figures)
    numeric = [label for label in result.comparison.meta["targets"] if label != "Cp"]
    target = numeric[0] if numeric else "C80"
    row = result.results[(result.results["method"] == "Const-DiM") & (result.results["target"] == target)]
    const_alpha = float(row["alpha"].iloc[0]) if len(row) else math.nan
    measured = {} if math.isnan(const_alpha) else {f"Const-DiM @{target}": (steerers["Const-DiM"], const_alpha)}
    errors = _stored_errors(m, data, measured, run_dir / "claims")
    rows += faithfulness_rows(errors, name, experiment.single_layer(m), m.n_layers, figures, config, seed, const_alpha,
                              target, findings=(3,))
    atomic_write_bytes(run_dir / "claims" / "differences.csv",
                       result.comparison.differences().to_csv(index=False, float_format="%.6g").encode("utf-8"))
    order = {1: 0, 2: 1, 3: 2, 4: 3}
    return sorted(first + rows, key=lambda r: order.get(r["finding"], 9))


def _stored_errors(model: LoadedModel, data, measured: dict, directory: Path) -> pd.DataFrame:
    key = fingerprint(PAIR_ERRORS_VERSION, model.model_id, pairs_fingerprint(data.heldout_pairs),
                      pairs_fingerprint(data.paraphrase_pairs or []),
                      {n: [steerer_fingerprint(s), a if isinstance(a, float) else list(a)] for n, (s, a) in sorted(measured.items())})
    return cached(directory / f"pair-errors-{key}.parquet",
                  lambda: pair_errors(model, data.heldout_pairs, measured, paraphrase=data.paraphrase_pairs))


def _instruction_unit(model: _Model, config: ClaimsConfig, out: Path, progress: bool) -> list[dict]:
    run = run_instruction_following(
        model.get(), config.instructions, n_train=config.if_n_train, n_test=config.if_n_test, rank=config.if_rank,
        layers=config.if_layers, max_new_tokens=config.if_max_new_tokens, seed=config.experiment.seed,
        train_config=TrainConfig(steps=config.if_steps, seed=config.experiment.seed), n_boot=config.n_boot,
        directory=out / "instruction_following", progress=progress)
    atomic_write_bytes(out / "instruction_following" / "summary.csv",
                       run.summary.to_csv(index=False, float_format="%.6g").encode("utf-8"))
    return instruction_rows(run, out / "figures", config, config.experiment.seed)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def run_claims(model: LoadedModel | str, config: ClaimsConfig | None = None, out: str | Path = "reports/claims", *,
               attributes: Sequence | None = None, judges: dict | None = None, progress: bool = True,
               stored_only: bool = False, log: Callable[[str], None] | None = None) -> ClaimsResult:
    """Measure the five findings on every attribute of ``config`` and write ``claims.csv``,
    ``claims.md`` and ``figures/`` into ``out``; resumes from what ``out`` holds.

    Args:
        model: a loaded model, or a model name (loaded only when something must be computed).
        attributes: :class:`~workbench.data.attributes.Attribute` objects to measure instead of
            ``config.attributes`` (e.g. one made with ``make_attribute``).
        judges: ``attribute_judge``, ``coherence_judge``, ``triplet_coherence`` for
            :func:`~workbench.app.experiment.run_experiment` (default: the offline judges).
        stored_only: compute nothing; write the table of what is stored so far (an attribute whose
            comparison is not finished contributes its findings 1 and 4).
        log: where progress lines go (default: stderr), each with the time left estimated from
            the units computed so far.
    """
    config = config or ClaimsConfig()
    judges = dict(judges or {})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    holder = _Model(model)
    chosen = [load_attribute(a) for a in (attributes if attributes is not None else config.attribute_names)]
    units = [(a.name, lambda path, a=a: _attribute_unit(holder, a, config, out, progress, judges, path),
              [a.all_questions, a.instructions, a.paraphrases,
               {k: judge_fingerprint(j) for k, j in sorted(judges.items())}]) for a in chosen]
    if config.instructions is None or config.instructions:
        units.append((INSTRUCTIONS_UNIT, lambda path: _instruction_unit(holder, config, out, progress), []))
    settings = {k: v for k, v in config.to_dict().items() if k != "attributes"}
    paths = [out / "rows" / f"{name}-{fingerprint(CLAIMS_VERSION, GENERATION_VERSION, holder.name, name, settings, what, length=16)}.json"
             for name, _, what in units]
    rows, seconds, computed = [], {}, []
    start = time.perf_counter()
    for i, ((name, compute, _), path) in enumerate(zip(units, paths)):
        key = path.stem.rsplit("-", 1)[1]
        partial = path.with_suffix(".partial.json")
        stored = read_cached(path)
        if stored is None and not stored_only:
            with directory_lock(path.parent, purpose=f"measuring the claims of {name}"):
                stored = read_cached(path)  # another process may have measured it while this one waited
                if stored is None:
                    say(f"[{i + 1}/{len(units)}] {name}: measuring ...")
                    t0, c0 = time.perf_counter(), time.process_time()
                    unit_rows = compute(partial)
                    seconds[name] = time.perf_counter() - t0
                    cpu = time.process_time() - c0  # CPU seconds of this process: what the unit costs on a shared machine
                    computed.append(seconds[name])
                    write_cached(path, {"key": key, "unit": name, "seconds": round(seconds[name], 1),
                                        "cpu_seconds": round(cpu, 1), "rows": unit_rows})
                    left = sum(1 for p in paths[i + 1:] if not p.is_file())
                    eta = f"; about {_duration(left * float(np.mean(computed)))} left" if left else ""
                    say(f"[{i + 1}/{len(units)}] {name}: done in {_duration(seconds[name])} (CPU {_duration(cpu)}){eta}")
                    rows += unit_rows
                    continue
        if stored is not None:
            unit_rows = stored["rows"]
            say(f"[{i + 1}/{len(units)}] {name}: stored rows read back")
        else:  # stored_only, and not measured in full
            partial_rows = read_cached(partial)
            unit_rows = partial_rows["rows"] if partial_rows is not None else []
            say(f"[{i + 1}/{len(units)}] {name}: " + ("findings 1 and 4 only (stored so far)" if unit_rows else "not measured yet"))
        rows += unit_rows
    table = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    atomic_write_bytes(out / "claims.csv", table.to_csv(index=False, float_format="%.6g").encode("utf-8"))
    atomic_write_bytes(out / "claims.md", claims_markdown(table, config).encode("utf-8"))
    total = time.perf_counter() - start
    say(f"claims: {len(table)} rows over {len(units)} units in {_duration(total)} "
        f"({len(computed)} computed, {len(units) - len(computed)} read back); {out / 'claims.md'}")
    return ClaimsResult(table, out, {**seconds, "total": total}, config)


def _number(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def claims_markdown(table: pd.DataFrame, config: ClaimsConfig | None = None) -> str:
    """The claims table as Markdown: one section per finding, one row per (attribute, claim)."""
    lines = ["# Claims", ""]
    if config is not None:
        e = config.experiment
        lines += [f"Settings: {e.n_train or 'all'} training questions, {e.evaluation.n_validation or 'all'} "
                  f"validation and {e.evaluation.n_test or 'all'} test questions, answers of {e.max_new_tokens} tokens, "
                  f"seed {e.seed}; 95% percentile bootstrap intervals ({config.n_boot} resamples) over the unit named "
                  "in each row. Verdict: holds / does not hold (the interval lies on one side of the threshold) / "
                  "not separable at this n.", ""]
    for finding, title in FINDINGS.items():
        part = table[table["finding"] == finding]
        if part.empty:
            continue
        lines += [f"## {finding}. {title}", "", "| attribute | claim | measured | 95% interval | n | verdict | note |",
                  "|---|---|---|---|---|---|---|"]
        for r in part.itertuples():
            figure = f" ([figure]({r.figure}))" if isinstance(r.figure, str) and r.figure else ""
            cells = [r.attribute, r.claim, _number(r.value), f"[{_number(r.lo)}, {_number(r.hi)}]", f"{r.n} {r.unit}",
                     f"**{r.verdict}**", f"{r.note}{figure}"]
            lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)
