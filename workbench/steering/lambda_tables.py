"""Per-token lambda as tidy tables, the input of the heat maps (:func:`workbench.viz.token_maps.token_heatmap`).

A PSR steerer's strength on a token, ``lambda(a) = ReLU(a . w + b)``, is read either while
generating (:attr:`workbench.core.generation.Generation.lambdas`) or teacher-forced on an aligned
triplet (:func:`workbench.steering.lambdas`). Both become one row per (layer, position):
``layer, position, token_id, token, is_header, lambda`` (and ``component`` for rank > 1), the
same layout as :func:`workbench.activations.deltas.token_magnitudes`, so Delta_PS and lambda draw alike.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch

from workbench.activations.deltas import delta_norms
from workbench.activations.extraction import extract_batch
from workbench.core.chat import prompt_ids
from workbench.steering.hooks import lambdas

LAMBDA_COLUMNS = ["layer", "position", "token_id", "token", "is_header", "component", "lambda"]


def lambda_frame(lam: torch.Tensor, layers: Sequence[int], token_ids: Sequence[int], header_len: int,
                 tokenizer) -> pd.DataFrame:
    """Tidy rows from ``lam [n_layers, tokens, rank]`` read on the span ``token_ids`` (header first)."""
    lam = torch.as_tensor(lam, dtype=torch.float32)
    if lam.ndim != 3 or lam.shape[0] != len(layers) or lam.shape[1] != len(token_ids):
        raise ValueError(f"lambda of shape {list(lam.shape)} does not match {len(layers)} layers x "
                         f"{len(token_ids)} tokens x rank")
    if not 0 <= header_len <= len(token_ids):
        raise ValueError(f"header_len {header_len} is outside 0..{len(token_ids)}")
    tokens = [tokenizer.decode([int(t)]) for t in token_ids]
    rows = []
    for i, layer in enumerate(layers):
        for pos, (tid, tok) in enumerate(zip(token_ids, tokens)):
            for k in range(lam.shape[2]):
                rows.append((int(layer), pos, int(tid), tok, pos < header_len, k, float(lam[i, pos, k])))
    return pd.DataFrame(rows, columns=LAMBDA_COLUMNS)


def generation_lambda_table(generation, tokenizer, steerer_index: int = 0, layers: Sequence[int] | None = None
                            ) -> pd.DataFrame:
    """The lambdas of one generated answer (``generate_answers(..., steerers=...)``) as a table.

    Positions cover the assistant header (read at prefill) then every generated token.

    Args:
        generation: a :class:`workbench.core.generation.Generation` made with steerers.
        steerer_index: which of its steerers.
        layers: the steerer's layers, in order (default: ``0..n-1`` for a lambda read at n layers;
            pass ``steerer.layers`` to label them right).
    """
    if generation.lambdas is None:
        raise ValueError("this answer was generated without a steerer (or with record_lambdas=False): no lambda")
    if not 0 <= steerer_index < len(generation.lambdas):
        raise IndexError(f"steerer_index {steerer_index} is out of range for {len(generation.lambdas)} steerer(s)")
    lam = generation.lambdas[steerer_index]
    layers = list(range(lam.shape[0])) if layers is None else list(layers)
    prompt_header = _header_ids(tokenizer, generation)
    return lambda_frame(lam, layers, prompt_header + list(generation.ids), generation.header_len, tokenizer)


def pair_lambda_table(model, steerer, pair, alpha: float = 0.0, which: str = "base") -> pd.DataFrame:
    """Teacher-forced lambdas of ``steerer`` on an aligned triplet's span (see
    :func:`workbench.steering.lambdas`), labelled by the steerer's layers."""
    lam = lambdas(model, steerer, pair, alpha, which)
    return lambda_frame(lam, steerer.layers, list(pair.span_ids), pair.header_len, model.tokenizer)


def _header_ids(tokenizer, generation) -> list[int]:
    prompt, header_len = prompt_ids(tokenizer, generation.question, generation.instruction)
    if header_len != generation.header_len:
        raise ValueError(f"the answer's header length {generation.header_len} does not match its prompt's {header_len}")
    return prompt[-header_len:]


def lambda_vs_delta(model, steerer, pairs, kind: str | None = None) -> pd.DataFrame:
    """Does the probe read where the prompt acts? Per steered layer, over the response tokens of
    ``pairs`` (teacher-forced, unsteered run): Spearman correlation of ``lambda`` (summed over rank
    components) with ``||D[l, t]||``.

    Args:
        kind: ``"acc"`` or ``"loc"`` deltas (default: what the steerer was fitted on: accumulated
            for single-layer steerers, local for all-layer ones).
    Returns:
        ``layer, spearman, n_tokens`` (NaN correlation for constant vectors, whose lambda is 1).
    """

    if not pairs:
        raise ValueError("no pairs to compare lambda with Delta_PS on")
    steerer.check_model(model)
    kind = kind or ("acc" if steerer.info.scope == "single" else "loc")
    # lambda at alpha 0 is read from the unsteered run's activations, which the extraction records
    # anyway: one batched extraction gives both sides
    with torch.no_grad():
        acts = extract_batch(model, pairs, steerer.layers, local=kind == "loc")
    response = acts.position >= acts.header_len[acts.sample]  # [tokens]
    rows = []
    for i, layer in enumerate(steerer.layers):
        lam = steerer.lambdas_from_acts(layer, acts.base[i]).sum(-1)[response]
        norm, _ = delta_norms((acts.acc if kind == "acc" else acts.loc)[i], acts.base[i])
        series = pd.Series(lam.tolist())
        # Spearman = Pearson on (average) ranks; pandas' own "spearman" needs scipy
        spearman = (float(series.rank().corr(pd.Series(norm[response].tolist()).rank()))
                    if series.nunique() > 1 else float("nan"))
        rows.append({"layer": int(layer), "spearman": spearman, "n_tokens": len(series)})
    return pd.DataFrame(rows)
