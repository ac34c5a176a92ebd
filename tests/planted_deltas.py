"""Delta stores written by hand from planted tensors (no model): the structure a measure must recover."""

from __future__ import annotations

from typing import Sequence

import torch

from workbench.activations.extraction import SpanActivations
from workbench.activations.store import DeltaStore, DeltaWriter


def write_store(directory, acc: torch.Tensor, lengths: Sequence[int], *, layers: Sequence[int] = (0, 1, 2),
                base: torch.Tensor | None = None, loc: torch.Tensor | None = None, header_len: int = 1,
                first_id: int = 0, per_shard: int = 4) -> DeltaStore:
    """A float32 store of ``len(lengths)`` responses (``lengths`` count the span tokens, the first
    ``header_len`` of each being the assistant header), with sample ids ``first_id, first_id + 1, ...``.

    ``acc``, ``base``, ``loc``: ``[layers, tokens, d]`` with the responses' tokens one after the other
    (``base`` defaults to ones, ``loc`` to ``acc``).
    """
    n_layers, n_tokens, d = acc.shape
    if sum(lengths) != n_tokens or n_layers != len(layers):
        raise ValueError("acc must be [layers, sum(lengths), d]")
    base = torch.ones_like(acc) if base is None else base
    loc = acc if loc is None else loc
    writer = DeltaWriter(directory, model_id="planted", layers=layers, d_model=d, dtype="float32", local=True)
    starts = [0]
    for n in lengths:
        starts.append(starts[-1] + n)
    for first in range(0, len(lengths), per_shard):
        batch = list(range(first, min(len(lengths), first + per_shard)))
        rows = torch.cat([torch.arange(starts[i], starts[i + 1]) for i in batch])
        sample = torch.cat([torch.full((lengths[i],), j, dtype=torch.long) for j, i in enumerate(batch)])
        position = torch.cat([torch.arange(lengths[i]) for i in batch])
        acts = SpanActivations(tuple(layers), base[:, rows].clone(), acc[:, rows].clone(), loc[:, rows].clone(),
                               (position + 7).clone(), sample, position, torch.full((len(batch),), header_len))
        writer.write(acts, [first_id + i for i in batch])
    return DeltaStore(directory)


def response_mask(lengths: Sequence[int], header_len: int = 1) -> torch.Tensor:
    """``[tokens]``: True on response tokens, False on each response's header."""
    return torch.cat([torch.arange(n) >= header_len for n in lengths])


def response_ids(lengths: Sequence[int], first_id: int = 0) -> torch.Tensor:
    """``[tokens]``: each token's sample id."""
    return torch.cat([torch.full((n,), first_id + i) for i, n in enumerate(lengths)])
