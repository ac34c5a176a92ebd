"""The paper's two assumptions about Delta_PS measured directly, each number with an interval over responses.

The paper models a token's change as ``D[l, t] ~ c_t z_l``: one direction per layer (its
Assumption 3.1) and a strength ``c_t`` that varies from token to token (against Assumption 3.2 of
the constant steering vectors, which add the same ``c`` everywhere). Its first finding is read off
the norm ``||D[l, t]||``; this module measures the model itself (DESIGN.md section 3, "Strength
along a direction"):

- **the strength** (:func:`spread_statistics`): how unevenly ``|c_t|`` spreads over response
  tokens (p90/p10, p99/p1), how many tokens the direction leaves nearly alone (``|c_t| <= 0.1 x``
  the median), how many it pushes *backwards* (``c_t < 0``); the same measures of the norm beside
  them. The norm cannot see the last two: a token pushed backwards, or sideways, has a large norm.
- **the direction** (:func:`layer_energies`, then :func:`share_along`, :func:`share_curves`,
  :func:`rank_for_share`): the share of the held-out ``sum_t ||D_t||^2`` that lies along ``z``
  (Assumption 3.1 says nearly all of it), along the top ``k`` principal directions of the training
  deltas for ``k = 1, 2, 4, ...``, and along ``k`` random orthonormal directions (about ``k / d_model``);
  the rank that holds 50 % and 80 % of it.

Which data: ``z`` (the unit mean of the training deltas at each layer, or any direction passed in)
and the principal directions are fitted on the *training* store; every coefficient and share is
measured on the *held-out* store (triplets on other questions), so a direction is never scored on
the tokens it was fitted to. Only response tokens enter (the assistant header is the same text in
every triplet). Intervals are percentile bootstraps over held-out **responses** (a response's tokens
stay together, since they are not independent), the same resamples for every layer and measure;
at least two held-out responses are needed. :func:`measure_assumptions` runs all of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from workbench.activations.directions import (
    captured_energy,
    check_direction,
    coefficient_table,
    mean_direction,
    principal_directions,
    random_directions,
    response_deltas,
)
from workbench.activations.deltas import extract_deltas, pairs_fingerprint
from workbench.activations.store import DeltaStore
from workbench.core.chat import AlignedPair
from workbench.core.checks import check_int, check_number
from workbench.core.models import LoadedModel
from workbench.evaluation.statistics import percentile_interval, resample_indices

__all__ = ["Assumptions", "Energies", "Spread", "heldout_store", "layer_energies", "measure_assumptions", "rank_for_share",
           "share_along", "share_curves", "spread_measures", "spread_statistics"]

#: The spread measures, in the order tables list them.
SPREAD_MEASURES = {
    "p90_p10": "90th / 10th percentile of |value|",
    "p99_p1": "99th / 1st percentile of |value|",
    "near_zero": "share of tokens with |value| <= 0.1 x the median |value|",
    "negative": "share of tokens with value < 0",
}
NEAR_ZERO = 0.1
SHARE_TARGETS = (0.5, 0.8)


def check_responses(n: int, what: str = "held-out responses") -> None:
    """At least two responses, or a ``ValueError`` naming how many there are: an interval over
    responses needs two to resample."""
    if n < 2:
        raise ValueError(f"an interval over responses needs at least two {what}, got {n}")


def _draw_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, n]``: how often each response is drawn in each bootstrap resample."""
    index = resample_indices(n, n_boot, seed)
    weights = np.zeros((n_boot, n))
    np.add.at(weights, (np.arange(n_boot)[:, None], index), 1.0)
    return weights


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    draws = np.asarray(draws, dtype=float)
    if np.isnan(draws).all():
        return float("nan"), float("nan")
    return percentile_interval(draws[~np.isnan(draws)], level)


# --------------------------------------------------------------------------------------------
# the strength: spread of a per-token value
# --------------------------------------------------------------------------------------------


def spread_measures(values: np.ndarray, eps: float = 1e-12) -> dict[str, np.ndarray]:
    """Each of :data:`SPREAD_MEASURES` per row of ``values [layers, tokens]`` -> ``{measure: [layers]}``.

    Example:
        >>> v = np.array([[-1.0, 0.05, 1.0, 2.0, 10.0]])
        >>> {k: np.round(x, 2).tolist() for k, x in spread_measures(v).items()}
        {'p90_p10': [15.81], 'p99_p1': [110.0], 'near_zero': [0.2], 'negative': [0.2]}
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"values must be [layers, tokens] with tokens, got shape {list(values.shape)}")
    size = np.abs(values)
    q1, q10, q50, q90, q99 = np.quantile(size, [0.01, 0.1, 0.5, 0.9, 0.99], axis=1)
    return {"p90_p10": q90 / np.maximum(q10, eps), "p99_p1": q99 / np.maximum(q1, eps),
            "near_zero": (size <= NEAR_ZERO * q50[:, None]).mean(1), "negative": (values < 0).mean(1)}


def _response_matrix(table: pd.DataFrame, value: str, layers: Sequence[int] | None):
    """``[layers, tokens]`` values of response tokens, ``[tokens]`` sample ids, the layers."""
    for column in ("sample", "layer", "position", value):
        if column not in table.columns:
            raise ValueError(f"the token table needs a {column!r} column (got {list(table.columns)})")
    rows = table[~table["is_header"].astype(bool)] if "is_header" in table.columns else table
    if layers is not None:
        have = set(rows["layer"].unique())
        missing = [l for l in layers if l not in have]
        if missing:
            raise IndexError(f"layer(s) {missing} are not in the table, which holds layers {sorted(have)}")
        rows = rows[rows["layer"].isin(list(layers))]
    if rows.empty:
        raise ValueError("no response tokens in the table")
    wide = rows.pivot_table(index=["sample", "position"], columns="layer", values=value, aggfunc="first").dropna()
    return wide.to_numpy(dtype=float).T, wide.index.get_level_values("sample").to_numpy(), [int(l) for l in wide.columns]


@dataclass(frozen=True)
class Spread:
    """How unevenly one per-token value spreads over held-out response tokens.

    Attributes:
        value: the column measured (``"coef"``: the coefficient along z; ``"norm"``: ``||D||``).
        per_layer: ``layer, measure, value, lo, hi`` (one row per layer and :data:`SPREAD_MEASURES` key).
        summary: ``measure, value, lo, hi``: the median over layers, its interval from the same resamples.
        n_responses, n_tokens: what was measured (responses are the resampled unit).
    """

    value: str
    per_layer: pd.DataFrame
    summary: pd.DataFrame
    n_responses: int
    n_tokens: int

    def stat(self, measure: str, layer: int | None = None) -> dict:
        """``{"value", "lo", "hi", "n"}`` of one measure: the median over layers, or at ``layer``."""
        if measure not in SPREAD_MEASURES:
            raise ValueError(f"unknown spread measure {measure!r}; expected one of {list(SPREAD_MEASURES)}")
        rows = self.summary if layer is None else self.per_layer[self.per_layer["layer"] == layer]
        row = rows[rows["measure"] == measure]
        if row.empty:
            raise IndexError(f"layer {layer} is not measured; layers {sorted(self.per_layer['layer'].unique())}")
        r = row.iloc[0]
        return {"value": float(r["value"]), "lo": float(r["lo"]), "hi": float(r["hi"]), "n": self.n_responses}


def spread_statistics(table: pd.DataFrame, value: str = "coef", layers: Sequence[int] | None = None, *,
                      n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> Spread:
    """The :data:`SPREAD_MEASURES` of ``table[value]`` per layer and as a median over layers, with
    intervals from resampling responses.

    Args:
        table: per-token rows ``sample, layer, position, <value>`` (optionally ``is_header``: header
            rows are left out), e.g. :func:`~workbench.activations.directions.coefficient_table`.
        value: ``"coef"`` (signed) or ``"norm"`` (or any numeric column).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> table = pd.DataFrame({"sample": np.repeat(np.arange(4), 50), "layer": 0,
        ...                       "position": np.tile(np.arange(50), 4), "coef": rng.lognormal(0, 2, 200)})
        >>> spread = spread_statistics(table, "coef", n_boot=50)
        >>> spread.stat("negative")
        {'value': 0.0, 'lo': 0.0, 'hi': 0.0, 'n': 4}
        >>> spread.stat("p90_p10")["value"] > 10
        True
    """
    check_int("n_boot", n_boot, minimum=1)
    check_number("level", level, above=0, below=1)
    values, sample, layers = _response_matrix(table, value, layers)
    ids = np.unique(sample)
    check_responses(len(ids))
    members = [np.flatnonzero(sample == s) for s in ids]
    point = spread_measures(values)
    draws = {m: np.empty((n_boot, len(layers))) for m in SPREAD_MEASURES}
    for b, row in enumerate(resample_indices(len(ids), n_boot, seed)):
        measured = spread_measures(values[:, np.concatenate([members[i] for i in row])])
        for m in SPREAD_MEASURES:
            draws[m][b] = measured[m]
    per_layer, summary = [], []
    for m in SPREAD_MEASURES:
        for j, layer in enumerate(layers):
            lo, hi = _interval(draws[m][:, j], level)
            per_layer.append({"layer": layer, "measure": m, "value": float(point[m][j]), "lo": lo, "hi": hi})
        lo, hi = _interval(np.median(draws[m], axis=1), level)
        summary.append({"measure": m, "value": float(np.median(point[m])), "lo": lo, "hi": hi})
    return Spread(value, pd.DataFrame(per_layer), pd.DataFrame(summary), len(ids), values.shape[1])


# --------------------------------------------------------------------------------------------
# the direction: shares of sum ||D||^2
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Energies:
    """Per layer and held-out response, the squared lengths the share statistics resample.

    Attributes:
        layers: the layers, in order.
        responses: ``[n]`` held-out sample ids.
        total: ``[layers, n]``, ``sum_t ||D_t||^2`` over each response's tokens.
        along: ``[layers, n]``, the part along each layer's direction ``z``.
        principal, random: ``[layers, n, rank]``, the part along the first ``k`` principal directions
            of the training deltas (``random``: ``k`` random orthonormal directions, averaged over
            draws), cumulative over ``k = 1 .. rank``.
        directions: ``{layer: z [d_model]}``, the unit directions used.
        d_model, n_train_tokens: sizes (``rank <= min(d_model, n_train_tokens)``).
    """

    layers: list[int]
    responses: np.ndarray
    total: np.ndarray
    along: np.ndarray
    principal: np.ndarray
    random: np.ndarray
    directions: dict = field(repr=False)
    d_model: int = 0
    n_train_tokens: int = 0

    @property
    def rank(self) -> int:
        return int(self.principal.shape[2])

    @property
    def n_responses(self) -> int:
        return len(self.responses)


def _check_layers_in(store: DeltaStore, layers: Sequence[int], what: str) -> None:
    missing = [l for l in layers if l not in store.layers]
    if missing:
        raise IndexError(f"layer {missing[0]} is not in the {what} store {store.directory}, which holds layers "
                         f"{store.layers}")


def _checked_directions(directions: Mapping[int, object], layers: Sequence[int], d_model: int) -> dict:
    if not isinstance(directions, Mapping):
        raise TypeError(f"directions must be a {{layer: vector}} mapping, got {type(directions).__name__}")
    missing = [l for l in layers if l not in directions]
    if missing:
        raise KeyError(f"directions has no vector for layer {missing[0]} (it has layers {sorted(directions)})")
    return {l: check_direction(directions[l], d_model, name=f"directions[{l}]") for l in layers}


def layer_energies(train: DeltaStore, heldout: DeltaStore, layers: Sequence[int] | None = None, kind: str = "acc", *,
                   directions: Mapping[int, object] | None = None, train_samples: Sequence[int] | None = None,
                   heldout_samples: Sequence[int] | None = None, max_rank: int | None = None, n_random: int = 4,
                   seed: int = 0) -> Energies:
    """Fit the directions on ``train`` and measure on ``heldout`` how much of the change they hold.

    Args:
        train, heldout: delta stores (they may be one store, with disjoint ``*_samples``).
        layers: where (default: every layer of ``heldout``).
        kind: ``"acc"`` or ``"loc"`` deltas.
        directions: ``{layer: vector}``, e.g. a steerer's own z
            (:func:`workbench.evaluation.lambda_reading.steerer_direction`) or a user's vector
            (checked: length ``d_model``, non-zero, finite); default: the unit mean of the training
            deltas at each layer.
        max_rank: the most principal (and random) directions (default: ``min(d_model, training tokens)``).
        n_random: random bases averaged for the baseline.
    """
    if kind not in ("acc", "loc"):
        raise ValueError(f"kind must be 'acc' or 'loc', got {kind!r}")
    if train.d_model != heldout.d_model:
        raise ValueError(f"the training store has d_model {train.d_model}, the held-out one {heldout.d_model}")
    layers = heldout.layers if layers is None else [check_int(f"layers[{i}]", l) for i, l in enumerate(layers)]
    _check_layers_in(train, layers, "training")
    _check_layers_in(heldout, layers, "held-out")
    check_int("n_random", n_random, minimum=1)
    if train.directory.resolve() == heldout.directory.resolve():
        fitted = set(train.sample_ids if train_samples is None else train_samples)
        measured = set(heldout.sample_ids if heldout_samples is None else heldout_samples)
        if fitted & measured:
            raise ValueError(f"held-out samples {sorted(fitted & measured)[:10]} are also training samples: give "
                             "disjoint train_samples and heldout_samples (or two stores)")
    d = heldout.d_model
    given = None if directions is None else _checked_directions(directions, layers, d)
    totals, alongs, principals, randoms, used, ids = [], [], [], [], {}, None
    rank, n_train = None, 0
    for layer in layers:
        fit, _ = response_deltas(train, layer, kind, train_samples)
        measure, sample = response_deltas(heldout, layer, kind, heldout_samples)
        if rank is None:
            n_train = fit.shape[0]
            rank = min(d, n_train) if max_rank is None else check_int("max_rank", max_rank, minimum=1,
                                                                        maximum=min(d, n_train))
        z = mean_direction(fit) if given is None else given[layer]
        used[layer] = z
        along, total, ids = captured_energy(measure, z[None, :], sample)
        check_responses(len(ids))
        principal, _, _ = captured_energy(measure, principal_directions(fit, rank), sample)
        rand = np.mean([captured_energy(measure, random_directions(d, rank, seed=seed * 7919 + layer * 97 + j),
                                        sample)[0] for j in range(n_random)], axis=0)
        totals.append(total)
        alongs.append(along[:, 0])
        principals.append(principal)
        randoms.append(rand)
    return Energies(list(layers), ids, np.stack(totals), np.stack(alongs), np.stack(principals), np.stack(randoms),
                    used, d, n_train)


def share_along(energies: Energies, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """The share of ``sum_t ||D_t||^2`` along each layer's direction (Assumption 3.1: close to 1).

    Returns:
        ``(per_layer, summary)``: ``layer, share, lo, hi, n`` and ``{"value", "lo", "hi", "n"}`` of
        the median over layers (the same resamples of responses for every layer).
    """
    weights = _draw_weights(energies.n_responses, n_boot, seed)
    point = energies.along.sum(1) / energies.total.sum(1)  # [layers]
    draws = (weights @ energies.along.T) / (weights @ energies.total.T)  # [n_boot, layers]
    n = energies.n_responses
    rows = [{"layer": l, "share": float(point[j]), **dict(zip(("lo", "hi"), _interval(draws[:, j], level))), "n": n}
            for j, l in enumerate(energies.layers)]
    lo, hi = _interval(np.median(draws, axis=1), level)
    return pd.DataFrame(rows), {"value": float(np.median(point)), "lo": lo, "hi": hi, "n": n}


def default_ks(rank: int) -> list[int]:
    """``1, 2, 4, ...`` up to ``rank``, and ``rank`` itself.

    Example:
        >>> default_ks(12)
        [1, 2, 4, 8, 12]
    """
    ks = [1 << i for i in range(int(rank).bit_length()) if 1 << i <= rank]
    return ks if ks[-1] == rank else ks + [rank]


def layer_bands(layers: Sequence[int], bands: int | None) -> list[tuple[str, list[int]]]:
    """Contiguous groups of layers of about equal size, labelled ``"layers 0-9"`` (``None``: one per layer).

    Example:
        >>> layer_bands(range(7), 3)
        [('layers 0-2', [0, 1, 2]), ('layers 3-4', [3, 4]), ('layers 5-6', [5, 6])]
    """
    layers = list(layers)
    if bands is None:
        return [(f"layer {l}", [l]) for l in layers]
    bands = check_int("bands", bands, minimum=1)
    groups = [list(g) for g in np.array_split(np.asarray(layers), min(bands, len(layers))) if len(g)]
    return [(f"layers {g[0]}-{g[-1]}" if len(g) > 1 else f"layer {g[0]}", [int(l) for l in g]) for g in groups]


def share_curves(energies: Energies, ks: Sequence[int] | None = None, bands: int | None = 3, *, n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """The held-out share held by the top ``k`` principal directions, and by ``k`` random ones.

    Args:
        ks: the ranks (default :func:`default_ks`).
        bands: lines as contiguous layer bands (the mean over a band's layers of the per-layer
            share; ``None``: one line per layer).
    Returns:
        ``layers, k, basis, share, lo, hi, n``: ``layers`` the band's label, ``basis``
        ``"principal"`` or ``"random"``, ``n`` held-out responses.
    """
    ks = default_ks(energies.rank) if ks is None else [check_int(f"ks[{i}]", k, minimum=1, maximum=energies.rank)
                                                        for i, k in enumerate(ks)]
    column = np.asarray(ks) - 1
    weights = _draw_weights(energies.n_responses, n_boot, seed)
    rows = []
    for label, members in layer_bands(energies.layers, bands):
        index = [energies.layers.index(l) for l in members]
        for basis, captured in (("principal", energies.principal), ("random", energies.random)):
            point = np.mean([captured[j][:, column].sum(0) / energies.total[j].sum() for j in index], axis=0)
            draws = np.mean([(weights @ captured[j][:, column]) / (weights @ energies.total[j])[:, None]
                             for j in index], axis=0)  # [n_boot, len(ks)]
            for i, k in enumerate(ks):
                lo, hi = _interval(draws[:, i], level)
                rows.append({"layers": label, "k": int(k), "basis": basis, "share": float(point[i]), "lo": lo,
                             "hi": hi, "n": energies.n_responses})
    return pd.DataFrame(rows)


def _first_rank(share: np.ndarray, target: float) -> np.ndarray:
    """``share [..., rank]`` -> the least ``k`` with ``share >= target`` (``inf`` when none)."""
    reached = share >= target - 1e-12
    return np.where(reached.any(-1), reached.argmax(-1) + 1.0, np.inf)


def rank_for_share(energies: Energies, targets: Sequence[float] = SHARE_TARGETS, *, n_boot: int = 1000,
                   level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per layer, how many principal directions hold ``target`` of the held-out ``sum_t ||D_t||^2``.

    Returns:
        ``layer, target, rank, lo, hi, n``; ``inf`` where even ``energies.rank`` directions hold less.
    """
    targets = [check_number(f"targets[{i}]", t, above=0, maximum=1) for i, t in enumerate(targets)]
    weights = _draw_weights(energies.n_responses, n_boot, seed)
    rows = []
    for j, layer in enumerate(energies.layers):
        point = energies.principal[j].sum(0) / energies.total[j].sum()
        draws = (weights @ energies.principal[j]) / (weights @ energies.total[j])[:, None]
        for t in targets:
            found = _first_rank(draws, t)
            # ranks are whole numbers (inf: not reached): the interval's ends are ranks that occurred
            lo = float(np.quantile(found, (1 - level) / 2, method="lower"))
            hi = float(np.quantile(found, (1 + level) / 2, method="higher"))
            rows.append({"layer": layer, "target": float(t), "rank": float(_first_rank(point, t)), "lo": lo, "hi": hi,
                         "n": energies.n_responses})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# all of it
# --------------------------------------------------------------------------------------------


@dataclass
class Assumptions:
    """Everything :func:`measure_assumptions` measured.

    Attributes:
        coefficients: the held-out per-token table (``norm``, ``coef``, ``cos``; header rows flagged).
        norm_spread, coef_spread: :class:`Spread` of ``||D_t||`` and of ``c_t``, on the same tokens.
        along, along_summary: :func:`share_along`.
        curves: :func:`share_curves` by layer band; ranks: :func:`rank_for_share`.
        energies: the per-response squared lengths behind the shares.
    """

    coefficients: pd.DataFrame
    norm_spread: Spread
    coef_spread: Spread
    along: pd.DataFrame
    along_summary: dict
    curves: pd.DataFrame
    ranks: pd.DataFrame
    energies: Energies

    @property
    def layers(self) -> list[int]:
        return list(self.energies.layers)

    def spread_summary(self) -> pd.DataFrame:
        """The median over layers of each spread measure, of ``||D_t||`` and of ``c_t`` side by side:
        index ``measure``, columns ``(norm | coef, value | lo | hi)``."""
        return pd.concat({"norm": self.norm_spread.summary.set_index("measure"),
                          "coef": self.coef_spread.summary.set_index("measure")}, axis=1)

    def by_layer(self) -> pd.DataFrame:
        """One row per layer: ``share_along`` (the share along z), ``rank_50`` / ``rank_80`` (the
        principal directions needed for 50 % / 80 %; inf: more than were fitted) and the p90/p10 of
        ``||D_t||`` and of ``|c_t|`` (``norm_p90_p10``, ``coef_p90_p10``)."""
        ranks = self.ranks.pivot(index="layer", columns="target", values="rank")
        spread = {v: s.per_layer[s.per_layer["measure"] == "p90_p10"].set_index("layer")["value"]
                  for v, s in (("norm", self.norm_spread), ("coef", self.coef_spread))}
        return pd.DataFrame({"share_along": self.along.set_index("layer")["share"],
                             **{f"rank_{100 * t:.0f}": ranks[t] for t in ranks.columns},
                             "norm_p90_p10": spread["norm"], "coef_p90_p10": spread["coef"]}).rename_axis("layer")

    def top_tokens(self, layer: int, n: int = 5, largest: bool = True) -> pd.DataFrame:
        """The response tokens with the largest (``largest=False``: most negative) coefficient at ``layer``:
        ``sample, position, token, coef, x_median`` (``x_median``: ``c_t`` over the median ``|c_t|``)."""
        rows = self.coefficients[(self.coefficients["layer"] == layer) & ~self.coefficients["is_header"].astype(bool)]
        if rows.empty:
            raise IndexError(f"layer {layer} is not measured; layers {self.layers}")
        typical = float(rows["coef"].abs().median()) or 1.0
        top = rows.sort_values("coef", ascending=not largest).head(check_int("n", n, minimum=1))
        return top.assign(x_median=top["coef"] / typical)[["sample", "position", "token", "coef", "x_median"]]


def heldout_store(model: LoadedModel, pairs: Sequence[AlignedPair], directory, *, batch_size: int = 8,
                  progress: bool = False) -> DeltaStore:
    """The Delta_PS of held-out triplets (base activations, accumulated and local deltas, every layer),
    extracted once into ``<directory>/heldout-deltas-<hash of the triplets>`` and reloaded after.

    The base activations are there so that a probe's ``lambda`` can be read on the same tokens
    (:func:`workbench.evaluation.lambda_reading.lambda_reading`).
    """
    check_responses(len(pairs))
    path = Path(directory) / f"heldout-deltas-{pairs_fingerprint(pairs)}"
    return extract_deltas(model, pairs, path, batch_size=batch_size, kinds=("base", "acc", "loc"), progress=progress)


def measure_assumptions(train: DeltaStore, heldout: DeltaStore, layers: Sequence[int] | None = None,
                        kind: str = "acc", *, tokenizer=None, directions: Mapping[int, object] | None = None,
                        train_samples: Sequence[int] | None = None, heldout_samples: Sequence[int] | None = None,
                        max_rank: int | None = None, bands: int | None = 3, n_random: int = 4, n_boot: int = 1000,
                        level: float = 0.95, seed: int = 0) -> Assumptions:
    """Both assumptions on held-out triplets: the spread of ``c_t`` beside that of ``||D_t||``, and
    the shares of ``sum_t ||D_t||^2`` along ``z``, along the top-k principal directions and along
    random ones (arguments as :func:`layer_energies`; ``tokenizer`` decodes the tokens)."""
    energies = layer_energies(train, heldout, layers, kind, directions=directions, train_samples=train_samples,
                              heldout_samples=heldout_samples, max_rank=max_rank, n_random=n_random, seed=seed)
    table = coefficient_table(heldout, energies.directions, kind, heldout_samples, tokenizer)
    kw = dict(n_boot=n_boot, level=level, seed=seed)
    along, summary = share_along(energies, **kw)
    return Assumptions(table, spread_statistics(table, "norm", **kw), spread_statistics(table, "coef", **kw), along,
                       summary, share_curves(energies, bands=bands, **kw), rank_for_share(energies, **kw), energies)
