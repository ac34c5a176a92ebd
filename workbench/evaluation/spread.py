"""How unevenly a per-token value spreads over response tokens, with intervals over responses.

The measures (:data:`SPREAD_MEASURES`) are made for the signed coefficient ``c_t = <D_t, z>`` of
:mod:`workbench.activations.directions`, and work on the norm ``||D_t||`` too, so the two can be
read side by side (:mod:`workbench.evaluation.assumptions`): the 90th over the 10th and the 99th
over the 1st percentile of ``|value|``, the share of tokens near zero (``|value| <= 0.1 x`` the
median) and the share negative. The norm cannot show the last two; the coefficient can. Intervals
are percentile bootstraps over **responses** (a response's tokens stay together), the same
resamples for every layer; at least two responses are needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from workbench.core.checks import check_int, check_number
from workbench.evaluation.statistics import percentile_interval, resample_indices

__all__ = ["SPREAD_MEASURES", "Spread", "check_responses", "spread_measures", "spread_statistics"]

#: The spread measures, in the order tables list them.
SPREAD_MEASURES = {
    "p90_p10": "90th / 10th percentile of |value|",
    "p99_p1": "99th / 1st percentile of |value|",
    "near_zero": "share of tokens with |value| <= 0.1 x the median |value|",
    "negative": "share of tokens with value < 0",
}
NEAR_ZERO = 0.1


def check_responses(n: int, what: str = "held-out responses") -> None:
    """At least two responses, or a ``ValueError`` naming how many there are: an interval over
    responses needs two to resample."""
    if n < 2:
        raise ValueError(f"an interval over responses needs at least two {what}, got {n}")


def interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval of the draws that are numbers (NaN, NaN when none is)."""
    draws = np.asarray(draws, dtype=float)
    if np.isnan(draws).all():
        return float("nan"), float("nan")
    return percentile_interval(draws[~np.isnan(draws)], level)


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
            lo, hi = interval(draws[m][:, j], level)
            per_layer.append({"layer": layer, "measure": m, "value": float(point[m][j]), "lo": lo, "hi": hi})
        lo, hi = interval(np.median(draws[m], axis=1), level)
        summary.append({"measure": m, "value": float(np.median(point[m])), "lo": lo, "hi": hi})
    return Spread(value, pd.DataFrame(per_layer), pd.DataFrame(summary), len(ids), values.shape[1])


