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
step (the gate itself and what it sees and answers: :mod:`workbench.core.intervention`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

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
