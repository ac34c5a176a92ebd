"""Faithfulness kept per held-out triplet, so that its relative RMSE has a bootstrap interval.

:func:`workbench.evaluation.faithfulness.faithfulness` sums the squared errors over all held-out
triplets before taking the ratio. Here the two sums are kept per triplet::

    err[i, l] = ||A_l^method(x_i y_i') - A_l(x_i' y_i')||^2     (summed over triplet i's span)
    ref[i, l] = ||A_l(x_i y_i')        - A_l(x_i' y_i')||^2

so ``relRMSE_l = sqrt(sum_i err[i, l] / sum_i ref[i, l])`` equals the pooled number, and a
resample of triplets gives a resample of it (:func:`workbench.evaluation.findings.rel_rmse_draws`).
The same passes as the pooled measure: the base and prompt-steered runs once, one steered run per
method, one run of the paraphrase.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd
import torch

from workbench.activations.extraction import extract_batch, record_span
from workbench.core.chat import AlignedPair
from workbench.core.checks import check_int, is_number
from workbench.core.generation import check_steering_entry
from workbench.core.models import LoadedModel
from workbench.evaluation.faithfulness import steered_span_acts

__all__ = ["pair_errors"]


def _per_pair(squared: torch.Tensor, sample: torch.Tensor, n: int) -> torch.Tensor:
    """``[layers, tokens]`` squared norms -> ``[n, layers]`` sums over each triplet's tokens."""
    out = torch.zeros(squared.shape[0], n, dtype=torch.float64)
    out.index_add_(1, sample.long(), squared.double())
    return out.T


@torch.no_grad()
def pair_errors(
    model: LoadedModel,
    pairs: Sequence[AlignedPair],
    methods: Mapping[str, tuple] | None = None,
    *,
    paraphrase: Sequence[AlignedPair] | None = None,
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
) -> pd.DataFrame:
    """Per-triplet squared errors of each method (and the paraphrase) against the prompt.

    Args:
        pairs: held-out aligned triplets (``x y'`` / ``x' y'``).
        methods: ``{name: (steerer, alpha)}``, ``alpha`` one number or one per pair.
        paraphrase: the same triplets with the paraphrased instruction (rows ``"paraphrase"``).
        layers: where to measure (default: all).
    Returns:
        Tidy rows ``method, pair, layer, err, ref`` (``ref``: the unsteered error, the same for
        every method of a pair and layer); ``"no steering"`` rows have ``err == ref``.
    """
    if not pairs:
        raise ValueError("no held-out triplets to measure faithfulness on")
    check_int("batch_size", batch_size, minimum=1)
    methods = dict(methods or {})
    for name, entry in methods.items():
        check_steering_entry(f"methods[{name!r}]", entry)
    layers = model.check_layers(layers)
    if paraphrase is not None and (len(paraphrase) != len(pairs)
                                   or any(a.span_ids != b.span_ids for a, b in zip(pairs, paraphrase))):
        raise ValueError("the paraphrase pairs must carry the same responses as the pairs, in the same order")
    names = ["no steering", *methods, *(["paraphrase"] if paraphrase else [])]
    err = {name: torch.zeros(len(pairs), len(layers), dtype=torch.float64) for name in names}
    ref = torch.zeros(len(pairs), len(layers), dtype=torch.float64)
    alphas = {}
    for name, (_, alpha) in methods.items():
        values = [alpha] * len(pairs) if is_number(alpha) else list(alpha)
        if len(values) != len(pairs):
            raise ValueError(f"method {name!r}: {len(values)} strengths for {len(pairs)} pairs")
        alphas[name] = values
    for start in range(0, len(pairs), batch_size):
        idx = list(range(start, min(start + batch_size, len(pairs))))
        batch = [pairs[i] for i in idx]
        acts = extract_batch(model, batch, layers, local=False)
        target, sample = acts.steered, acts.sample
        ref[idx] = _per_pair(acts.acc.pow(2).sum(-1), sample, len(idx))
        err["no steering"][idx] = ref[idx]
        for name, (steerer, _) in methods.items():
            got = steered_span_acts(model, batch, steerer, [alphas[name][i] for i in idx], layers)
            err[name][idx] = _per_pair((got - target).pow(2).sum(-1), sample, len(idx))
        if paraphrase:
            para = [paraphrase[i] for i in idx]
            record = record_span(model, [p.steered_ids for p in para], [p.steered_start for p in para], layers)
            got = torch.stack([record[l] for l in layers]).cpu()
            err["paraphrase"][idx] = _per_pair((got - target).pow(2).sum(-1), sample, len(idx))
    rows = []
    for name in names:
        for i in range(len(pairs)):
            rows += [{"method": name, "pair": i, "layer": l, "err": float(err[name][i, j]), "ref": float(ref[i, j])}
                     for j, l in enumerate(layers)]
    return pd.DataFrame(rows, columns=["method", "pair", "layer", "err", "ref"])
