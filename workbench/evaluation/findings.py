"""The numbers behind the paper's findings, each with a bootstrap interval (no model here).

- Finding 1, how unevenly the prompt rewrites tokens: :func:`spread_by_layer` (per layer, the
  90th/10th percentile and largest/smallest ratios of per-token ``||Delta_PS||`` over response
  tokens) and :func:`spread_interval` (the median over layers of the 90/10 ratio, resampling
  responses).
- Findings 3 and 4, faithfulness: :func:`rel_rmse_draws` turns per-triplet squared errors
  (:func:`workbench.evaluation.pair_faithfulness.pair_errors`) into relative RMSE per layer on
  bootstrap resamples of the triplets (the same resamples for every method, so differences between
  methods are paired); :func:`faithfulness_intervals` tabulates them for the curves, and
  :func:`faithfulness_statistic` gives any function of the curves with its interval.

Every interval is a percentile bootstrap over the independently drawn unit (a response, a
held-out triplet), at ``level`` (0.95).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import pandas as pd

from workbench.evaluation.statistics import percentile_interval, resample_indices

__all__ = ["faithfulness_intervals", "faithfulness_statistic", "rel_rmse_draws", "spread_by_layer",
           "spread_interval"]


def _response_norms(table: pd.DataFrame, value: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``[layers, tokens]`` magnitudes of response tokens (header excluded), ``[tokens]`` sample ids, layers."""
    for column in ("sample", "layer", "position", value):
        if column not in table.columns:
            raise ValueError(f"the token table needs a {column!r} column (got {list(table.columns)})")
    rows = table[~table["is_header"].astype(bool)] if "is_header" in table.columns else table
    if rows.empty:
        raise ValueError("no response tokens in the table")
    wide = rows.pivot_table(index=["sample", "position"], columns="layer", values=value, aggfunc="first")
    wide = wide.dropna()
    return wide.to_numpy(dtype=float).T, wide.index.get_level_values("sample").to_numpy(), [int(l) for l in wide.columns]


def spread_by_layer(table: pd.DataFrame, value: str = "norm", eps: float = 1e-12) -> pd.DataFrame:
    """Per layer: how many times larger the 90th-percentile token's change is than the 10th's
    (``p90_p10``) and the largest token's than the smallest's (``max_min``), over response tokens.

    Args:
        table: per-token magnitudes, columns ``sample, layer, position, <value>`` and optionally
            ``is_header`` (as from :func:`workbench.activations.deltas.token_magnitudes`).
    Returns:
        Columns ``layer, n_tokens, p10, p90, p90_p10, max_min``.
    """
    norms, _, layers = _response_norms(table, value)
    p10, p90 = np.quantile(norms, 0.1, axis=1), np.quantile(norms, 0.9, axis=1)
    return pd.DataFrame({"layer": layers, "n_tokens": norms.shape[1], "p10": p10, "p90": p90,
                         "p90_p10": p90 / np.maximum(p10, eps),
                         "max_min": norms.max(axis=1) / np.maximum(norms.min(axis=1), eps)})


def spread_interval(table: pd.DataFrame, value: str = "norm", *, n_boot: int = 500, level: float = 0.95,
                    seed: int = 0, eps: float = 1e-12) -> dict:
    """The median over layers of the per-layer 90th/10th percentile ratio, with an interval from
    resampling responses (a response's tokens stay together).

    Returns:
        ``{"value", "lo", "hi", "n"}`` (``n``: responses).
    """
    norms, sample, _ = _response_norms(table, value)
    samples = np.unique(sample)
    members = [np.flatnonzero(sample == s) for s in samples]

    def statistic(tokens: np.ndarray) -> float:
        part = norms[:, tokens]
        ratio = np.quantile(part, 0.9, axis=1) / np.maximum(np.quantile(part, 0.1, axis=1), eps)
        return float(np.median(ratio))

    draws = np.array([statistic(np.concatenate([members[i] for i in row]))
                      for row in resample_indices(len(samples), n_boot, seed)])
    lo, hi = percentile_interval(draws, level)
    return {"value": statistic(np.arange(norms.shape[1])), "lo": lo, "hi": hi, "n": int(len(samples))}


def rel_rmse_draws(errors: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> tuple[dict, dict, list[int], int]:
    """Relative RMSE per layer of every method, on the data and on bootstrap resamples of triplets.

    Args:
        errors: rows ``method, pair, layer, err, ref`` (:func:`~workbench.evaluation.pair_faithfulness.pair_errors`).
    Returns:
        ``(point, draws, layers, n)``: ``point[method]`` is ``[layers]``, ``draws[method]`` is
        ``[n_boot, layers]`` (row ``b`` uses the same resample of triplets for every method), and
        ``n`` the number of triplets.
    """
    for column in ("method", "pair", "layer", "err", "ref"):
        if column not in errors.columns:
            raise ValueError(f"the error table needs a {column!r} column (got {list(errors.columns)})")
    pairs = sorted(errors["pair"].unique())
    layers = sorted(int(l) for l in errors["layer"].unique())
    index = resample_indices(len(pairs), n_boot, seed)
    point, draws = {}, {}
    ref = None
    for method, part in errors.groupby("method", sort=False):
        err = part.pivot(index="pair", columns="layer", values="err").reindex(index=pairs, columns=layers).to_numpy()
        if ref is None:
            ref = part.pivot(index="pair", columns="layer", values="ref").reindex(index=pairs, columns=layers).to_numpy()
        point[method] = np.sqrt(err.sum(0) / np.maximum(ref.sum(0), 1e-12))
        draws[method] = np.sqrt(err[index].sum(1) / np.maximum(ref[index].sum(1), 1e-12))
    return point, draws, layers, len(pairs)


def faithfulness_intervals(errors: pd.DataFrame, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """``method, layer, rel_rmse, rel_rmse_lo, rel_rmse_hi``: the faithfulness curves with bands
    (what :func:`workbench.viz.curves.faithfulness_curves` draws)."""
    point, draws, layers, _ = rel_rmse_draws(errors, n_boot=n_boot, seed=seed)
    rows = []
    for method in point:
        lo, hi = np.quantile(draws[method], (1 - level) / 2, axis=0), np.quantile(draws[method], (1 + level) / 2, axis=0)
        rows += [{"method": method, "layer": l, "rel_rmse": float(point[method][j]), "rel_rmse_lo": float(lo[j]),
                  "rel_rmse_hi": float(hi[j])} for j, l in enumerate(layers)]
    return pd.DataFrame(rows)


def faithfulness_statistic(errors: pd.DataFrame, statistic: Callable[[Mapping[str, np.ndarray], list[int]], np.ndarray],
                           *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Any function of the relative-RMSE curves, with its bootstrap interval over triplets.

    Args:
        statistic: ``(curves, layers) -> value``, where ``curves[method]`` is ``[..., layers]``
            (``[layers]`` on the data, ``[n_boot, layers]`` on the resamples) and the value has
            the leading shape (a number, or ``[n_boot]``), e.g. the A-PSR minus paraphrase gap
            averaged over the later layers.
    Returns:
        ``{"value", "lo", "hi", "n"}`` (``n``: triplets).
    """
    point, draws, layers, n = rel_rmse_draws(errors, n_boot=n_boot, seed=seed)
    value = float(np.asarray(statistic(point, layers)))
    lo, hi = percentile_interval(np.asarray(statistic(draws, layers), dtype=float), level)
    return {"value": value, "lo": lo, "hi": hi, "n": n}
