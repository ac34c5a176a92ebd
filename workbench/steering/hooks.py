"""Applying steerers to a model through TransformerLens hooks, on the steered span only.

A steerer acts at ``blocks.{l}.hook_resid_post`` for each of its layers, and only on the positions
a :class:`Span` selects. The caller owns the span and sets ``span.mask`` before each forward pass:

- teacher-forced aligned pairs (right-padded as :func:`workbench.activations.extraction.right_pad` does):
  ``span.mask = aligned_span_mask(pairs)``, i.e. positions ``>= base_start`` of each real row;
- generation, prefill (prompts left-padded as :func:`workbench.core.generation.left_pad` does):
  ``span.mask = prefill_span_mask(attention_mask, header_lens)``, the assistant header, i.e. the
  last ``header_len`` positions of each row;
- generation, decode with the KV cache (the hook sees one new position per step):
  ``span.mask = None``, every position, i.e. every generated token.

So :func:`workbench.core.generation.generate_batch` steers like this::

    with steerer.apply(model, alpha) as span:
        span.mask = prefill_span_mask(mask, header_lens)
        logits = forward_with_cache(model, ids, mask, positions, cache)        # prefill
        span.mask = None
        ... forward_with_cache(model, token[:, None], mask, next_pos, cache)   # each decode step

Several steerers stack by nesting their context managers (they may share one span), and a
steerer stacks with a prompt by running it on ``x'`` sequences (``aligned_span_mask(pairs,
"steered")``). Leaving the context removes its hooks, also after an exception.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

import torch

from workbench.core.chat import AlignedPair
from workbench.core.span import Span
from workbench.steering.alpha import check_alpha

if TYPE_CHECKING:
    from workbench.steering.steerer import Steerer


def add_steering(steerer: Steerer, layer: int, resid: torch.Tensor, weight) -> torch.Tensor:
    """``resid + weight * delta(resid)``: the one place an intervention is added.

    Args:
        resid: ``[batch, seq, d_model]`` at ``blocks.{layer}.hook_resid_post``.
        weight: a float (alpha everywhere) or ``[batch, seq, 1]`` (alpha times the span mask).
    """
    # float32 at least (a bfloat16 model's steerer still computes in float32); float64 stays float64
    # (near-ties decided in float64, workbench.core.sampling)
    delta = steerer.delta(layer, resid if resid.dtype == torch.float64 else resid.float())
    return resid + (weight * delta).to(resid.dtype)


def _apply_hook(steerer: Steerer, layer: int, alpha: float, span: Span) -> Callable:
    def hook(resid: torch.Tensor, hook=None) -> torch.Tensor:
        if alpha == 0:
            return resid
        mask = span.weights(resid, f"blocks.{layer}.hook_resid_post")
        return add_steering(steerer, layer, resid, alpha if mask is None else alpha * mask)

    return hook


@contextmanager
def apply(model, steerer: Steerer, alpha: float = 1.0, span: Span | None = None) -> Iterator[Span]:
    """Steer ``model`` with ``steerer`` at strength ``alpha`` inside the ``with`` block.

    Yields the :class:`Span` (a new one selecting every position unless given); set its
    ``mask`` before each forward. ``alpha = 0`` leaves every activation untouched. The hooks go
    away when the block is left, also on an exception.
    """
    steerer.check_model(model)
    alpha = check_alpha(alpha)
    span = Span() if span is None else span
    if not isinstance(span, Span):
        raise TypeError(f"span must be a workbench.core.span.Span, got {type(span).__name__}")
    hooks = [(model.resid_hook(l), _apply_hook(steerer, l, alpha, span)) for l in steerer.layers]
    with model.bridge.hooks(fwd_hooks=hooks):
        yield span


@contextmanager
def frozen(model) -> Iterator[None]:
    """Turn off ``requires_grad`` on the model's weights for a while (training a steerer through
    the model), restoring each flag afterwards."""
    params = list(model.bridge.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


@torch.no_grad()
def lambdas(model, steerer: Steerer, sequence, alpha: float = 0.0, which: str = "base") -> torch.Tensor:
    """Per-token lambda of every steered layer and rank component, read through the model.

    Args:
        sequence: an :class:`~workbench.core.chat.AlignedPair` (read on its steered span: the assistant
            header and response of ``x y'``, or of ``x' y'`` with ``which="steered"``), or token
            ids (a list or 1-D tensor; every position).
        alpha: strength at which the steerer is applied while reading (0: lambdas of the
            unsteered run; for A- steerers a positive alpha lets later layers see the steering).
    Returns:
        ``[n_steered_layers, tokens, rank]`` float32 on the CPU (all ones for constant vectors).
    """
    steerer.check_model(model)
    alpha = check_alpha(alpha)
    if which not in ("base", "steered"):
        raise ValueError(f"which must be 'base' or 'steered', got {which!r}")
    if isinstance(sequence, AlignedPair):
        pair = sequence
        ids, start = (pair.base_ids, pair.base_start) if which == "base" else (pair.steered_ids, pair.steered_start)
    else:
        ids = sequence.tolist() if isinstance(sequence, torch.Tensor) else list(sequence)
        if isinstance(sequence, torch.Tensor) and sequence.ndim != 1:
            raise ValueError(f"token ids must be 1-D, got shape {list(sequence.shape)}")
        start = 0
    if not ids:
        raise ValueError("empty sequence: no tokens to read lambda on")
    if len(ids) > model.n_ctx:
        raise ValueError(f"a sequence of {len(ids)} tokens does not fit the context length {model.n_ctx}")
    mask = torch.zeros((1, len(ids)), dtype=torch.bool)
    mask[0, start:] = True
    span = Span(mask)
    seen: dict[int, torch.Tensor] = {}

    def reader(layer: int) -> Callable:
        def hook(resid: torch.Tensor, hook=None) -> torch.Tensor:
            seen[layer] = steerer.lambdas_from_acts(layer, resid[0, start:].float()).float().cpu()
            return resid

        return hook

    # The readers go in first, so each sees the layer's input to the steerer's own hook.
    readers = [(model.resid_hook(l), reader(l)) for l in steerer.layers]
    with model.bridge.hooks(fwd_hooks=readers), apply(model, steerer, alpha, span):
        model.bridge(torch.tensor([ids], device=model.device), return_type=None)
    return torch.stack([seen[l] for l in steerer.layers])
