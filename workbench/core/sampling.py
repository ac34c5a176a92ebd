"""Choosing each generated token, and deciding near-ties in float64.

A sampled token is a discrete function of float logits: where the random draw lands within the
rounding error of the logits from a boundary between two tokens, the choice depends on the order in
which the CPU summed its floats (torch picks AVX-512, AVX2 or plain kernels by machine, and the
thread count splits sums), and the rest of the answer, its judged scores and any strength search
built on them follow that token. Measured on SmolLM2-135M in float32, the logits of one forward differ by up to
9e-5 between ``ATEN_CPU_CAPABILITY=default`` and AVX2 (token probabilities by up to 4e-5,
relatively), enough to flip about one token in 10^5.

:func:`pick_tokens` makes the same choice as ``torch.multinomial`` (sampling: the winner of
``probs / q`` with ``q ~ Exp(1)`` drawn from the row's generator, which is how torch samples one
token) or ``argmax`` (greedy), and flags every row whose choice lies within :data:`NEAR_TIE` of
another, 20 times the error measured above: the two best ``probs / q`` within that relative distance, a token within it of the
nucleus (``top_p``) cut that would change the winner, or the two best logits within it (greedy).
Generation then recomputes the logits of those rows in float64 (:func:`float64_weights`, one
unpadded forward of each flagged row) and decides them with :func:`pick_from_float64`, with the same
``q``, so the chosen tokens no longer depend on the kernels. About 2 steps in 1,000 are flagged.
Only models held in float32 are decided this way (a float16 or bfloat16 model's own rounding is
larger than any margin worth testing; a float64 model needs nothing).
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch

__all__ = ["FLOAT64_COPY_LIMIT", "NEAR_TIE", "can_decide_in_float64", "float64_weights", "pick_from_float64", "pick_tokens"]

#: A choice within this of another is decided again in float64: relative for sampling (``probs / q``
#: and the nucleus' cumulative probability), absolute logits for greedy decoding.
NEAR_TIE = 2e-3


def _nucleus(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kept, borderline)``, bool ``[batch, vocab]``: the tokens of the ``top_p`` nucleus (the most
    probable first, each kept while the probability before it is at most ``top_p``), and those whose
    probability before them lies within :data:`NEAR_TIE` of ``top_p``."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs
    kept = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, ~(before > top_p))
    borderline = torch.zeros_like(kept).scatter(-1, order, (before - top_p).abs() < NEAR_TIE)
    return kept, borderline


def pick_tokens(logits: torch.Tensor, temperature: float, top_p: float,
                generators: Sequence[torch.Generator] | None) -> tuple[torch.Tensor, torch.Tensor, list | None]:
    """One token per row of ``logits [batch, vocab]``, the rows whose choice is a near-tie, and the draws.

    Greedy when ``temperature == 0`` or without ``generators``; otherwise nucleus sampling, one
    generator per row, consuming the generator exactly as ``torch.multinomial(probs, 1)`` does.

    Returns:
        ``(tokens [batch] long, tied [batch] bool, draws)``: ``draws`` holds each row's ``q [vocab]``
        for :func:`pick_from_float64` (None when greedy). Tokens are on the logits' device.

    Example:
        >>> logits = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0005, -3.0]])
        >>> tokens, tied, _ = pick_tokens(logits, 0.0, 1.0, None)
        >>> tokens.tolist(), tied.tolist()
        ([0, 1], [False, True])
    """
    if temperature == 0 or generators is None:
        top = logits.float().topk(min(2, logits.shape[-1]), dim=-1).values
        tied = (top[:, 0] - top[:, -1] < NEAR_TIE) if top.shape[-1] == 2 else torch.zeros(len(logits), dtype=torch.bool)
        return logits.argmax(dim=-1), tied.cpu(), None
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    full = probs
    borderline = None
    if top_p < 1:
        kept, borderline = _nucleus(probs, top_p)
        probs = probs.masked_fill(~kept, 0.0)
        borderline, full = borderline.cpu(), full.cpu()
    probs = probs.cpu()
    draws = [torch.empty_like(probs[row]).exponential_(1, generator=g) for row, g in enumerate(generators)]
    tokens, tied = [], []
    for row, q in enumerate(draws):
        score = probs[row] / q  # what torch.multinomial compares: the winner of p / q, q ~ Exp(1)
        best = score.topk(2).values
        token = int(score.argmax())
        near = bool(best[1] > best[0] * (1 - NEAR_TIE))
        if borderline is not None and bool(borderline[row].any()):
            widest = torch.where(probs[row] > 0, score, full[row] / q).masked_fill((probs[row] == 0) & ~borderline[row], 0.0)
            narrowest = score.masked_fill(borderline[row], 0.0)
            near = near or int(widest.argmax()) != int(narrowest.argmax())
        tokens.append(token)
        tied.append(near)
    return torch.tensor(tokens, device=logits.device), torch.tensor(tied, dtype=torch.bool), draws


def pick_from_float64(logits: torch.Tensor, temperature: float, top_p: float, q: torch.Tensor | None) -> int:
    """The token :func:`pick_tokens` chooses, from one row's float64 ``logits [vocab]`` and its draw ``q``.

    Example:
        >>> pick_from_float64(torch.tensor([1.0, 1.0005, -3.0], dtype=torch.float64), 0.0, 1.0, None)
        1
    """
    logits = logits.double().cpu()
    if temperature == 0 or q is None:
        return int(logits.argmax())
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1:
        probs = probs.masked_fill(~_nucleus(probs[None], top_p)[0][0], 0.0)
    return int((probs / q.double()).argmax())


#: A float32 model whose float64 copy would be larger than this has its near-ties decided in float32,
#: as any other; the copy is made once per model and refreshed at each near-tie (0.1 s on 135M weights).
FLOAT64_COPY_LIMIT = 4 * 2**30

_float64_copies: "weakref.WeakKeyDictionary[torch.nn.Module, list[torch.Tensor]]" = weakref.WeakKeyDictionary()


def _floating_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    tensors = list(module.parameters()) + list(module.buffers())
    return [t for t in tensors if t.is_floating_point()]


def can_decide_in_float64(module: torch.nn.Module) -> bool:
    """Whether near-ties of this model are decided in float64: every floating weight and buffer is a
    float32 tensor with its data in memory (not offloaded) on a device that computes in float64, and
    their float64 copy stays within :data:`FLOAT64_COPY_LIMIT`."""
    tensors = _floating_tensors(module)
    return (bool(tensors) and all(t.dtype == torch.float32 and t.device.type in ("cpu", "cuda") for t in tensors)
            and 8 * sum(t.numel() for t in tensors) <= FLOAT64_COPY_LIMIT)


@contextmanager
def float64_weights(module: torch.nn.Module) -> Iterator[None]:
    """The module's float32 weights and buffers as float64 inside the block; the same tensors after.

    The float64 copy is kept for the next call and refreshed from the current weights each time (an
    adapter may have changed them in place); the float32 tensors are put back, not converted back,
    so the model is bit for bit what it was.

    Example:
        >>> layer = torch.nn.Linear(2, 1)
        >>> with float64_weights(layer):
        ...     layer.weight.dtype
        torch.float64
        >>> layer.weight.dtype
        torch.float32
    """
    tensors = _floating_tensors(module)
    copies = _float64_copies.get(module)
    if copies is None or [c.shape for c in copies] != [t.shape for t in tensors] \
            or any(c.device != t.device for c, t in zip(copies, tensors)):
        copies = [torch.empty(t.shape, dtype=torch.float64, device=t.device) for t in tensors]
        _float64_copies[module] = copies
    kept = [t.data for t in tensors]
    try:
        for t, copy in zip(tensors, copies):
            copy.copy_(t.data)
            t.data = copy
        yield
    finally:
        for t, data in zip(tensors, kept):
            t.data = data
