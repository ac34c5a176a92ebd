"""Faithfulness: how closely a method's activations track the prompt-steered ones, layer by layer.

On held-out triplets, teacher-forced on the same response ``y'`` (DESIGN.md section 5)::

    relRMSE_l(method) = ||A_l^method(x y') - A_l(x' y')|| / ||A_l(x y') - A_l(x' y')||

over the steered span of all triplets (Frobenius norms), so 1 = no better than not steering and
0 = identical to the prompt. The reference curve is a paraphrased instruction ``x''``::

    ||A_l(x'' y') - A_l(x' y')|| / ||A_l(x y') - A_l(x' y')||

A steerer acts at its own layers; its effect is measured at every layer, so a single-layer
method shows both its fit at its layer and how the model carries (or repairs) it downstream.

A weight-space adapter (LoRA, fine-tune: :mod:`workbench.steering.weights`) is measured the same
way: the adapted model's activations on ``x y'`` (it reads no instruction) against the
prompt-steered ones. It changes weights, not the span, so it acts on every position and takes one
strength per pass: a strength per pair is run pair group by pair group.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd
import torch

from workbench.activations.extraction import extract_batch, record_span
from workbench.core.chat import AlignedPair, align
from workbench.core.checks import check_int, is_number
from workbench.core.generation import check_steering_entry
from workbench.core.models import LoadedModel
from workbench.steering import aligned_span_mask, check_alpha
from workbench.steering.names import WEIGHT_METHODS


def _batches(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _per_pair_alphas(alpha, n: int, name: str = "") -> torch.Tensor:
    """``[n]`` float strengths from one number or one per pair (each checked like any alpha)."""
    values = [alpha] * n if is_number(alpha) else list(alpha)
    if len(values) != n:
        raise ValueError(f"method {name!r}: {len(values)} strengths for {n} pairs; give one alpha or one per pair")
    return torch.tensor([check_alpha(a) for a in values], dtype=torch.float32)


@torch.no_grad()
def steered_span_acts(model: LoadedModel, pairs: Sequence[AlignedPair], steerer, alpha,
                      layers: Sequence[int]) -> torch.Tensor:
    """``[layers, span tokens, d_model]``: the base run ``x y'`` with ``steerer`` applied on the span.

    ``alpha``: one strength, or one per pair (e.g. each triplet's soft label). A weight-space
    adapter is applied at each distinct strength in turn (to the whole sequence, as weights act).
    """
    if is_weight_space(steerer):
        alphas = _per_pair_alphas(alpha, len(pairs)).tolist()
        per_pair: list = [None] * len(pairs)
        for a in sorted(set(alphas)):
            idx = [i for i, b in enumerate(alphas) if b == a]
            with steerer.apply(model, a):
                record = record_span(model, [pairs[i].base_ids for i in idx], [pairs[i].base_start for i in idx],
                                     layers)
            lengths = [pairs[i].span_len for i in idx]
            for i, chunk in zip(idx, _split_tokens(record, layers, lengths)):
                per_pair[i] = chunk
        return torch.cat(per_pair, dim=1).cpu()
    weights = aligned_span_mask(pairs).float() * _per_pair_alphas(alpha, len(pairs))[:, None]
    with steerer.apply(model, 1.0) as span:
        span.mask = weights.to(model.device)
        record = record_span(model, [p.base_ids for p in pairs], [p.base_start for p in pairs], layers)
    return torch.stack([record[l] for l in layers]).cpu()


def is_weight_space(steerer) -> bool:
    """Whether ``steerer`` is a weight-space adapter (LoRA, fine-tune) rather than a steerer."""
    return getattr(getattr(steerer, "info", None), "method", None) in WEIGHT_METHODS


def _split_tokens(record: dict, layers: Sequence[int], lengths: Sequence[int]) -> list[torch.Tensor]:
    """Per pair ``[layers, span_len, d]`` from a record of packed span tokens ``{layer: [tokens, d]}``."""
    stacked = torch.stack([record[l] for l in layers])
    return list(torch.split(stacked, list(lengths), dim=1))


def paraphrase_pairs(tokenizer, pairs_text: Sequence[tuple[str, str, Sequence[int]]], paraphrase: str,
                     placement: str = "system") -> list[AlignedPair]:
    """Pairs ``x y'`` / ``x'' y'`` for ``(question, instruction, response_ids)`` items and a paraphrase ``x''``."""
    return [align(tokenizer, q, paraphrase, ids, placement=placement) for q, _, ids in pairs_text]


@torch.no_grad()
def faithfulness(
    model: LoadedModel,
    pairs: Sequence[AlignedPair],
    methods: Mapping[str, tuple] | None = None,
    *,
    paraphrase: Sequence[AlignedPair] | None = None,
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
) -> pd.DataFrame:
    """Relative RMSE per layer for each method, plus the paraphrase reference.

    Args:
        pairs: held-out aligned triplets (``x y'`` / ``x' y'``).
        methods: ``{name: (steerer, alpha)}``; ``alpha`` is one strength or one per pair (say,
            each held-out triplet's soft label: the strength the steerer was trained to match
            the prompt at).
        paraphrase: the same triplets with the paraphrased instruction as ``x''`` (same order,
            same responses), e.g. from :func:`paraphrase_pairs`; gives the ``"paraphrase"`` rows.
        layers: where to measure (default: all).
    Returns:
        A tidy DataFrame with columns ``method, layer, rel_rmse``; ``"no steering"`` rows are 1.
    """
    if not pairs:
        raise ValueError("no held-out triplets to measure faithfulness on")
    check_int("batch_size", batch_size, minimum=1)
    methods = dict(methods or {})
    for name, entry in methods.items():
        check_steering_entry(f"methods[{name!r}]", entry)
    layers = model.check_layers(layers)
    if paraphrase is not None:
        if len(paraphrase) != len(pairs) or any(a.span_ids != b.span_ids for a, b in zip(pairs, paraphrase)):
            raise ValueError("the paraphrase pairs must carry the same responses as the pairs, in the same order")
    strengths = {name: _per_pair_alphas(alpha, len(pairs), name) for name, (_, alpha) in methods.items()}
    err = {name: torch.zeros(len(layers)) for name in [*methods, *(["paraphrase"] if paraphrase else [])]}
    ref = torch.zeros(len(layers))
    for idx in _batches(len(pairs), batch_size):
        batch = [pairs[i] for i in idx]
        acts = extract_batch(model, batch, layers, local=False)
        target = acts.steered
        ref += acts.acc.pow(2).sum(dim=(1, 2))
        for name, (steerer, _) in methods.items():
            got = steered_span_acts(model, batch, steerer, strengths[name][list(idx)].tolist(), layers)
            err[name] += (got - target).pow(2).sum(dim=(1, 2))
        if paraphrase:
            para_pairs = [paraphrase[i] for i in idx]  # only A_l(x'' y') is new: one pass
            para = record_span(model, [p.steered_ids for p in para_pairs], [p.steered_start for p in para_pairs], layers)
            err["paraphrase"] += (torch.stack([para[l] for l in layers]).cpu() - target).pow(2).sum(dim=(1, 2))
    rows = [{"method": "no steering", "layer": l, "rel_rmse": 1.0} for l in layers]
    for name, e in err.items():
        rel = (e / ref.clamp_min(1e-12)).sqrt()
        rows += [{"method": name, "layer": l, "rel_rmse": float(v)} for l, v in zip(layers, rel)]
    return pd.DataFrame(rows)
