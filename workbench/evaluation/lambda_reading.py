"""Does a PSR probe read the prompt's strength? ``lambda_t`` against ``c_t`` along its own ``z``.

A PSR adds ``alpha * lambda(a_t) * z`` with ``lambda(a) = ReLU(a . w + b)``: if it imitates the
prompt, ``lambda_t`` should track the prompt's coefficient along that same direction,
``c_t = <D_t, z / ||z||>``, token by token. :func:`lambda_reading` measures it on held-out response
tokens (``lambda`` read from the unsteered activations ``A_l(x y')``, as the steerer sees them at
``alpha = 0``): Spearman's rank correlation and ``R^2`` (of the least-squares line, the squared
Pearson correlation) of ``lambda_t`` with ``c_t``, beside the same with ``||D_t||`` (what
:func:`workbench.steering.lambda_tables.lambda_vs_delta` reports), and their difference; each with a
percentile interval from resampling held-out responses (the same resamples for both, so the
difference is paired). :func:`strength_reading` is the same on plain tensors.

:func:`steerer_direction` gives a steerer's own unit ``z`` at a layer (Const-DiM's mean delta, a
PSR's learned direction), for these measures and for :mod:`workbench.evaluation.assumptions`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from workbench.activations.directions import check_direction
from workbench.activations.store import DeltaStore
from workbench.core.checks import check_instance, check_int, check_number
from workbench.evaluation.spread import check_responses
from workbench.evaluation.statistics import percentile_interval, resample_indices
from workbench.steering.steerer import Steerer

__all__ = ["lambda_reading", "r_squared", "spearman", "steerer_direction", "strength_reading"]

READING_COLUMNS = ["target", "measure", "value", "lo", "hi", "n", "n_tokens"]


def steerer_direction(steerer: Steerer, layer: int, component: int = 0) -> torch.Tensor:
    """A steerer's own direction at ``layer`` (component ``component`` of a rank-r PSR), unit length: ``[d_model]``.

    A layer the steerer does not steer raises ``IndexError`` naming it and the steerer's layers.
    """
    check_instance("steerer", steerer, Steerer)
    i = steerer.layer_index(check_int("layer", layer))
    component = check_int("component", component, minimum=0, maximum=steerer.rank - 1)
    return check_direction(steerer.z[i, component], steerer.d_model, name=f"{steerer.name}'s z at layer {layer}")


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denom = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denom) if denom > 0 else float("nan")


def spearman(x, y) -> float:
    """Spearman's rank correlation (Pearson on average ranks); NaN when either side is constant.

    Example:
        >>> spearman([1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 16.0]), spearman([1.0, 1.0], [0.0, 1.0])
        (1.0, nan)
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return _pearson(_ranks(x), _ranks(y))


def r_squared(x, y) -> float:
    """``R^2`` of the least-squares line of ``y`` on ``x`` (the squared Pearson correlation).

    Example:
        >>> round(r_squared([0.0, 1.0, 2.0], [1.0, 3.0, 5.0]), 6)
        1.0
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return _pearson(x, y) ** 2


_MEASURES = {"spearman": spearman, "r2": r_squared}


def strength_reading(lam, deltas: torch.Tensor, z, sample, *, n_boot: int = 1000, level: float = 0.95,
                     seed: int = 0) -> pd.DataFrame:
    """How well per-token ``lam`` reads the coefficient along ``z``, and the norm, over responses.

    Args:
        lam: ``[tokens]`` the probe's strength per token.
        deltas: ``[tokens, d_model]`` the prompt's deltas on the same tokens.
        z: ``[d_model]`` the direction (made a unit vector).
        sample: ``[tokens]`` each token's response id (the resampled unit).
    Returns:
        Rows ``target, measure, value, lo, hi, n, n_tokens`` (:data:`READING_COLUMNS`): ``target``
        ``"coefficient"`` (``c_t``), ``"norm"`` (``||D_t||``) or ``"coefficient - norm"``;
        ``measure`` ``"spearman"`` or ``"r2"``; ``n`` responses.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> c = torch.rand(40, generator=g) * 4 - 2                   # strengths, half of them negative
        >>> z = torch.tensor([1.0, 0.0, 0.0])
        >>> deltas = c[:, None] * z + torch.tensor([0.0, 2.0, 0.0])  # plus a constant sideways part
        >>> table = strength_reading(c.clamp_min(0), deltas, z, torch.arange(40) // 10, n_boot=50)
        >>> print(table[table["measure"] == "spearman"][["target", "value"]].round(2).to_string(index=False))
                    target  value
               coefficient   0.89
                      norm   0.26
        coefficient - norm   0.63
    """
    deltas = torch.as_tensor(deltas).double()
    if deltas.ndim != 2:
        raise ValueError(f"deltas must be [tokens, d_model], got shape {list(deltas.shape)}")
    lam = np.asarray(torch.as_tensor(lam, dtype=torch.float64), dtype=float).reshape(-1)
    sample = np.asarray(torch.as_tensor(sample)).reshape(-1)
    if not len(lam) == len(sample) == deltas.shape[0]:
        raise ValueError(f"lam ({len(lam)}), sample ({len(sample)}) and deltas ({deltas.shape[0]}) need one row per token")
    check_int("n_boot", n_boot, minimum=1)
    check_number("level", level, above=0, below=1)
    unit = check_direction(z, deltas.shape[1], name="z").double()
    targets = {"coefficient": (deltas @ unit).numpy(), "norm": deltas.norm(dim=1).numpy()}
    ids = np.unique(sample)
    check_responses(len(ids))
    members = [np.flatnonzero(sample == s) for s in ids]
    point = {(t, m): f(lam, v) for t, v in targets.items() for m, f in _MEASURES.items()}
    draws = {key: np.empty(n_boot) for key in point}
    for b, row in enumerate(resample_indices(len(ids), n_boot, seed)):
        tokens = np.concatenate([members[i] for i in row])
        for (t, m) in point:
            draws[(t, m)][b] = _MEASURES[m](lam[tokens], targets[t][tokens])
    rows = []
    for m in _MEASURES:
        draws[("coefficient - norm", m)] = draws[("coefficient", m)] - draws[("norm", m)]
        point[("coefficient - norm", m)] = point[("coefficient", m)] - point[("norm", m)]
    for (t, m), value in point.items():
        finite = draws[(t, m)][~np.isnan(draws[(t, m)])]
        lo, hi = percentile_interval(finite, level) if len(finite) else (float("nan"), float("nan"))
        rows.append({"target": t, "measure": m, "value": float(value), "lo": lo, "hi": hi, "n": len(ids),
                     "n_tokens": len(lam)})
    return pd.DataFrame(rows, columns=READING_COLUMNS)


def lambda_reading(steerer: Steerer, store: DeltaStore, layer: int | None = None, *, kind: str | None = None,
                   samples: Sequence[int] | None = None, component: int | None = None, n_boot: int = 1000,
                   level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """:func:`strength_reading` of a steerer's ``lambda_t`` at ``layer`` on a store's response tokens.

    Args:
        steerer: a PSR (a constant vector's lambda is 1 everywhere: its correlations are NaN).
        store: held-out deltas with ``base`` activations (lambda is read from ``A_l(x y')``).
        layer: default: the steerer's layer, or the middle one of an all-layer steerer's.
        kind: ``"acc"`` or ``"loc"`` (default: what the steerer was fitted on: accumulated deltas
            for single-layer steerers, local ones for all-layer ones).
        component: which component of a rank-r PSR (its lambda and its z); needed when r > 1.
    Returns:
        :data:`READING_COLUMNS` plus ``method, layer, kind``.
    """
    check_instance("steerer", steerer, Steerer)
    layer = steerer.layers[len(steerer.layers) // 2] if layer is None else check_int("layer", layer)
    steerer.layer_index(layer)
    if layer not in store.layers:
        raise IndexError(f"layer {layer} is not in the store {store.directory}, which holds layers {store.layers}")
    if steerer.d_model != store.d_model:
        raise ValueError(f"{steerer.name} has d_model {steerer.d_model} but the store {store.d_model}")
    if component is None:
        if steerer.rank > 1:
            raise ValueError(f"{steerer.name} has rank {steerer.rank}: pass component= (0..{steerer.rank - 1})")
        component = 0
    kind = kind or ("acc" if steerer.info.scope == "single" else "loc")
    if kind not in ("acc", "loc"):
        raise ValueError(f"kind must be 'acc' or 'loc', got {kind!r}")
    z = steerer_direction(steerer, layer, component)
    tokens = store.tokens(samples)
    response = ~tokens["is_header"]
    base = store.get("base", layer, samples)[response]
    deltas = store.get(kind, layer, samples)[response]
    with torch.no_grad():
        lam = steerer.lambdas_from_acts(layer, base)[:, component]
    table = strength_reading(lam, deltas, z, tokens["sample"][response], n_boot=n_boot, level=level, seed=seed)
    return table.assign(method=steerer.name, layer=layer, kind=kind)
