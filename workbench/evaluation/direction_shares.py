"""How many directions the prompt uses: shares of the held-out ``sum_t ||D_t||^2`` held by directions
fitted on training triplets, with intervals over held-out responses.

:func:`layer_energies` fits, per layer, the direction ``z`` (the unit mean of the training deltas,
or one given) and the principal directions of the training deltas, and measures per held-out
response how much of its ``sum_t ||D_t||^2`` they hold, and how much ``k`` random orthonormal
directions hold (the baseline, about ``k / d_model``). From those per-response numbers:
:func:`share_along` (the share along ``z``: the paper's Assumption 3.1 says nearly all of it),
:func:`share_curves` (share against ``k``, by layer band) and :func:`rank_for_share` (the least
``k`` holding 50 % / 80 %). Every interval resamples held-out responses with the same draws for
every layer and ``k`` (bootstrap weights, so a resample is a matrix product).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from workbench.activations.directions import (
    captured_energy,
    check_direction,
    mean_direction,
    principal_directions,
    random_directions,
    response_deltas,
)
from workbench.activations.store import DeltaStore
from workbench.core.checks import check_int, check_number
from workbench.evaluation.spread import check_responses, interval
from workbench.evaluation.statistics import resample_indices

__all__ = ["Energies", "default_ks", "layer_bands", "layer_energies", "rank_for_share", "share_along", "share_curves"]

SHARE_TARGETS = (0.5, 0.8)


def _draw_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, n]``: how often each response is drawn in each bootstrap resample."""
    index = resample_indices(n, n_boot, seed)
    weights = np.zeros((n_boot, n))
    np.add.at(weights, (np.arange(n_boot)[:, None], index), 1.0)
    return weights


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
    rows = [{"layer": l, "share": float(point[j]), **dict(zip(("lo", "hi"), interval(draws[:, j], level))), "n": n}
            for j, l in enumerate(energies.layers)]
    lo, hi = interval(np.median(draws, axis=1), level)
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
                lo, hi = interval(draws[:, i], level)
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


