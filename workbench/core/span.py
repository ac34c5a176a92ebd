"""The steered span: which positions of a batch an intervention acts on (DESIGN.md section 2).

The span is the assistant turn: the assistant header tokens the chat template adds, then the
response. Its shape in a batch depends on how the batch was built:

- teacher-forced aligned pairs, right-padded (:func:`right_pad`): positions ``>= base_start`` of
  each real row, :func:`aligned_span_mask`;
- generation, prefill, prompts left-padded: the last ``header_len`` positions of each row,
  :func:`prefill_span_mask`;
- generation, decode with the KV cache: every position (one new token per step), ``mask = None``.

A gated steerer acts on some rows of a batch only: ``Span.rows`` is a weight per row (``[batch]``,
0 = that row is not steered, 1 = fully) that multiplies the mask, at prefill and at every decode
step. :class:`GateInputs` is what a gate sees of a batch before the first generated token, and
:class:`RowDecision` what it answers for one row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from workbench.core.chat import AlignedPair


def right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists. Returns ``(ids [batch, len], attention_mask [batch, len])``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def span_index(starts: Sequence[int], lengths: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of every span token, packed in sample order: ``([tokens], [tokens])``."""
    rows = torch.cat([torch.full((n,), r, dtype=torch.long) for r, n in enumerate(lengths)])
    cols = torch.cat([torch.arange(s, s + n, dtype=torch.long) for s, n in zip(starts, lengths)])
    return rows, cols


@dataclass
class Span:
    """Which positions the steerers act on; mutable on purpose (set before each forward).

    Attributes:
        mask: bool ``[batch, seq]`` matching the hooked tensor's first two dimensions, or
            ``None`` for every position. A float ``[batch, seq]`` mask is a weight per position
            that multiplies ``alpha`` (0 outside the span), e.g. one strength per row. A
            ``[batch, 1]`` mask is one weight per row for every position.
        rows: float ``[batch]``, one weight per row multiplying the mask (``None``: 1 for every
            row); what a gate sets once per batch, kept across prefill and decode steps.
    """

    mask: torch.Tensor | None = None
    rows: torch.Tensor | None = None

    def weights(self, resid: torch.Tensor, where: str = "") -> torch.Tensor | None:
        """``[batch, seq, 1]`` float mask for ``resid [batch, seq, d]``, or None (everywhere)."""
        if self.mask is None and self.rows is None:
            return None
        out = None
        if self.mask is not None:
            mask = self.mask
            kind_ok = mask.dtype == torch.bool or mask.is_floating_point()
            shape_ok = mask.ndim == 2 and mask.shape[0] == resid.shape[0] and mask.shape[1] in (resid.shape[1], 1)
            if not kind_ok or not shape_ok:
                raise ValueError(
                    f"span.mask must be a bool (or float) [batch, seq] tensor of shape {list(resid.shape[:2])} to match "
                    f"the activations at {where or 'the hook'} (or [batch, 1]: one weight per row), got {mask.dtype} "
                    f"{list(mask.shape)}; set span.mask before each forward pass (None = every position, e.g. for "
                    "decode steps with a KV cache)"
                )
            out = mask.to(device=resid.device, dtype=resid.dtype)[..., None]
        if self.rows is not None:
            rows = self.rows
            if rows.ndim != 1 or rows.shape[0] != resid.shape[0] or not rows.is_floating_point():
                raise ValueError(f"span.rows must be a float [batch] tensor of {resid.shape[0]} row weights at "
                                 f"{where or 'the hook'}, got {rows.dtype} {list(rows.shape)}")
            rows = rows.to(device=resid.device, dtype=resid.dtype)[:, None, None]
            out = rows if out is None else out * rows
        return out.expand(resid.shape[0], resid.shape[1], 1)


@dataclass(frozen=True)
class RowDecision:
    """A gate's answer for one row of a batch, made before the first generated token.

    Attributes:
        rule: the name of the gated steerer (or gate) that decided.
        weight: how strongly the row is steered, in [0, 1] (0: not at all; a yes/no gate gives 0 or 1).
        score: the gate's raw score (e.g. a cosine similarity), when it has one.
        error: why the gate failed on this row (the row is then not steered), else None.
    """

    rule: str
    weight: float
    score: float | None = None
    error: str | None = None

    @property
    def steered(self) -> bool:
        return self.weight > 0


def pool_prompt(resid: torch.Tensor, attention_mask: torch.Tensor, pool: str = "mean") -> torch.Tensor:
    """One vector per prompt from left-padded activations: the mean over its real tokens, or the last.

    Args:
        resid: ``[batch, width, d]``; attention_mask: ``[batch, width]`` (1 = real token).
    Returns:
        ``[batch, d]`` float32.
    """
    if pool not in ("mean", "last"):
        raise ValueError(f"pool must be 'mean' or 'last', got {pool!r}")
    if pool == "last":  # left padding: the last position is always a real token
        return resid[:, -1].float()
    weights = attention_mask.to(device=resid.device, dtype=torch.float32)[..., None]
    return (resid.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)


@dataclass
class GateInputs:
    """What a gate sees of one batch before the first generated token.

    Attributes:
        texts: the text of each row (the user question where known, else the decoded prompt).
        ids, attention_mask: the left-padded prompts, ``[batch, width]``.
        model: the model generating (a :class:`~workbench.core.models.LoadedModel`).
        read: ``layers -> {layer: [batch, width, d_model]}``, the unsteered residual stream of the
            prompts (one forward, stopped after the deepest layer asked for); called lazily.
    """

    texts: list[str]
    ids: torch.Tensor
    attention_mask: torch.Tensor
    model: Any
    read: Callable[[Sequence[int]], dict[int, torch.Tensor]]
    prefetch: tuple[int, ...] = ()
    _cache: dict = field(default_factory=dict, repr=False)

    def resid(self, layer: int) -> torch.Tensor:
        """``[batch, width, d_model]``: the unsteered prompt activations at ``layer`` (read once)."""
        if layer not in self._cache:
            wanted = sorted({int(layer), *self.prefetch} - set(self._cache))
            self._cache.update(self.read(wanted))
        return self._cache[layer]

    def pooled(self, layer: int, pool: str = "mean") -> torch.Tensor:
        """``[batch, d_model]``: the prompt activations at ``layer`` pooled by :func:`pool_prompt`."""
        return pool_prompt(self.resid(layer), self.attention_mask, pool)


def aligned_span_mask(pairs: Sequence[AlignedPair], which: str = "base") -> torch.Tensor:
    """Steered-span mask of right-padded aligned pairs: ``[batch, width]`` bool.

    Args:
        which: ``"base"`` for ``x y'`` (positions ``>= base_start``) or ``"steered"`` for
            ``x' y'`` (positions ``>= steered_start``; steering stacked on the prompt).
    """
    if which not in ("base", "steered"):
        raise ValueError(f"which must be 'base' or 'steered', got {which!r}")
    if not pairs:
        raise ValueError("no pairs to build a span mask for")
    seqs = [(p.base_ids, p.base_start) if which == "base" else (p.steered_ids, p.steered_start) for p in pairs]
    width = max(len(ids) for ids, _ in seqs)
    mask = torch.zeros((len(pairs), width), dtype=torch.bool)
    for row, (ids, start) in enumerate(seqs):
        mask[row, start : len(ids)] = True
    return mask


def prefill_span_mask(attention_mask: torch.Tensor, header_len: int | Sequence[int]) -> torch.Tensor:
    """Steered-span mask of left-padded prompts: the last ``header_len`` positions of each row.

    Args:
        attention_mask: ``[batch, width]`` of the left-padded prompts (1 = real token).
        header_len: the assistant header length (from :func:`workbench.core.chat.prompt_ids`), one
            for all rows or one per row.
    Returns:
        ``[batch, width]`` bool.
    """
    if attention_mask.ndim != 2:
        raise ValueError(f"attention_mask must be [batch, width], got shape {list(attention_mask.shape)}")
    batch, width = attention_mask.shape
    lens = [int(header_len)] * batch if isinstance(header_len, int) else [int(h) for h in header_len]
    if len(lens) != batch:
        raise ValueError(f"{len(lens)} header lengths for a batch of {batch} prompts")
    real = attention_mask.bool().sum(-1).tolist()
    mask = torch.zeros((batch, width), dtype=torch.bool, device=attention_mask.device)
    for row, (h, n) in enumerate(zip(lens, real)):
        if not 1 <= h <= n:
            raise ValueError(f"header_len {h} of row {row} must be within 1..{n}, the row's prompt length")
        mask[row, width - h :] = True
    return mask
