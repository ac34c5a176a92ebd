"""The paper's two assumptions about Delta_PS measured directly, each number with an interval over responses.

The paper models a token's change as ``D[l, t] ~ c_t z_l``: one direction per layer (its
Assumption 3.1) and a strength ``c_t`` that varies from token to token (against Assumption 3.2 of
the constant steering vectors, which add the same ``c`` everywhere). Its first finding is read off
the norm ``||D[l, t]||``; this module measures the model itself (DESIGN.md section 3, "Strength
along a direction"):

- **the strength** (:mod:`workbench.evaluation.spread`): how unevenly ``|c_t|`` spreads over
  response tokens (p90/p10, p99/p1), how many tokens the direction leaves nearly alone
  (``|c_t| <= 0.1 x`` the median), how many it pushes *backwards* (``c_t < 0``); the same measures
  of the norm beside them. The norm cannot see the last two: a token pushed backwards, or
  sideways, has a large norm.
- **the direction** (:mod:`workbench.evaluation.direction_shares`): the share of the held-out
  ``sum_t ||D_t||^2`` that lies along ``z`` (Assumption 3.1 says nearly all of it), along the top
  ``k`` principal directions of the training deltas for ``k = 1, 2, 4, ...``, and along ``k``
  random orthonormal directions (about ``k / d_model``); the rank that holds 50 % and 80 % of it.

Which data: ``z`` (the unit mean of the training deltas at each layer, or any direction passed in)
and the principal directions are fitted on the *training* store; every coefficient and share is
measured on the *held-out* store (triplets on other questions), so a direction is never scored on
the tokens it was fitted to. Only response tokens enter (the assistant header is the same text in
every triplet). Intervals are percentile bootstraps over held-out **responses** (a response's tokens
stay together, since they are not independent), the same resamples for every layer and measure;
at least two held-out responses are needed. :func:`measure_assumptions` runs all of it, on a
held-out store that :func:`heldout_store` extracts once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from workbench.activations.deltas import extract_deltas, pairs_fingerprint
from workbench.activations.directions import coefficient_table
from workbench.activations.store import DeltaStore
from workbench.core.chat import AlignedPair
from workbench.core.checks import check_int
from workbench.core.models import LoadedModel
from workbench.evaluation.direction_shares import Energies, layer_energies, rank_for_share, share_along, share_curves
from workbench.evaluation.spread import Spread, check_responses, spread_statistics

__all__ = ["Assumptions", "heldout_store", "measure_assumptions"]


@dataclass
class Assumptions:
    """Everything :func:`measure_assumptions` measured.

    Attributes:
        coefficients: the held-out per-token table (``norm``, ``coef``, ``cos``; header rows flagged).
        norm_spread, coef_spread: :class:`Spread` of ``||D_t||`` and of ``c_t``, on the same tokens.
        along, along_summary: :func:`~workbench.evaluation.direction_shares.share_along`.
        curves: :func:`~workbench.evaluation.direction_shares.share_curves` by layer band; ranks:
            :func:`~workbench.evaluation.direction_shares.rank_for_share`.
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
    random ones (arguments as :func:`~workbench.evaluation.direction_shares.layer_energies`; ``tokenizer`` decodes the tokens)."""
    energies = layer_energies(train, heldout, layers, kind, directions=directions, train_samples=train_samples,
                              heldout_samples=heldout_samples, max_rank=max_rank, n_random=n_random, seed=seed)
    table = coefficient_table(heldout, energies.directions, kind, heldout_samples, tokenizer)
    kw = dict(n_boot=n_boot, level=level, seed=seed)
    along, summary = share_along(energies, **kw)
    return Assumptions(table, spread_statistics(table, "norm", **kw), spread_statistics(table, "coef", **kw), along,
                       summary, share_curves(energies, bands=bands, **kw), rank_for_share(energies, **kw), energies)
