"""What an intervention is: the protocol every steering object follows, and what a gate sees and answers.

An :class:`Intervention` changes a model's forward at a strength ``alpha`` over a steered span
(:class:`~workbench.core.span.Span`): a steerer (:class:`workbench.steering.steerer.Steerer`,
activation space) or a weight adapter (:class:`workbench.steering.weights.WeightAdapter`, a LoRA or
a fine-tune). A :class:`GatedIntervention` decides per row, before the first generated token,
whether and how strongly its intervention acts (:class:`workbench.steering.gates.GatedSteerer`):
it sees a batch as :class:`GateInputs` and answers one :class:`RowDecision` per row. Generation,
the comparison and adaptation take these protocols; nothing needs to inherit from a base class.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch

from workbench.core.span import Span

__all__ = ["GateInputs", "GatedIntervention", "Intervention", "RowDecision", "pool_prompt"]


@runtime_checkable
class Intervention(Protocol):
    """Anything that steers a model at a strength over a span.

    Attributes:
        name: how tables and figures name it.
        layers: the blocks it acts on, sorted.
        info: its provenance (method, model, training), saved with it.
    """

    @property
    def name(self) -> str: ...

    @property
    def layers(self) -> tuple[int, ...]: ...

    @property
    def info(self) -> Any: ...

    def check_model(self, model) -> None:
        """Raise ``ValueError`` naming both sides when ``model`` is not the one it was made for."""

    def apply(self, model, alpha: float = 1.0, span: Span | None = None) -> AbstractContextManager[Span]:
        """Context manager: ``model`` steered at ``alpha`` on ``span`` inside the block, unchanged after."""


@runtime_checkable
class GatedIntervention(Protocol):
    """An intervention at a strength that a gate switches on per row (a weight in [0, 1] each)."""

    steerer: Intervention
    alpha: float

    def decide(self, inputs: "GateInputs") -> "list[RowDecision]":
        """One decision per row of the batch ``inputs`` describes."""


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
