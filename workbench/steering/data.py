"""Training data of steerers: packed span tokens, soft labels and train / validation splits.

Layer-by-layer fits work on :class:`TokenData`: the span tokens of many triplets stacked into
``[layers, tokens, d_model]`` tensors of activations ``a = A_l(x y')`` and target deltas (the
accumulated ``D_acc`` for single-layer steerers, the local ``D_loc`` for all-layer ones), with a
soft label ``alpha`` and a sequence id per token. Sequence ids are the store's sample ids, i.e.
row indices in :attr:`workbench.data.triplets.TripletSet.kept`, which is how soft labels are joined.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from workbench.activations.deltas import pairs_fingerprint
from workbench.activations.store import DeltaStore
from workbench.core.chat import AlignedPair
from workbench.core.fingerprint import fingerprint


@dataclass(frozen=True)
class TokenData:
    """Packed tokens for layerwise fits.

    Attributes:
        layers: the layers, in order.
        acts: ``[n_layers, tokens, d_model]``, the activations the steerer sees (``A_l(x y')``).
        delta: ``[n_layers, tokens, d_model]``, what the steerer should add at strength ``alpha``.
        alpha: ``[tokens]``, the soft label of each token's sequence, in [0, 1].
        seq: ``[tokens]`` long, the sequence (sample) id of each token.
    """

    layers: tuple[int, ...]
    acts: torch.Tensor
    delta: torch.Tensor
    alpha: torch.Tensor
    seq: torch.Tensor

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(l) for l in self.layers))
        if self.acts.ndim != 3 or self.acts.shape != self.delta.shape:
            raise ValueError(f"acts {list(self.acts.shape)} and delta {list(self.delta.shape)} must share one "
                             "[layers, tokens, d_model] shape")
        if self.acts.shape[0] != len(self.layers):
            raise ValueError(f"{len(self.layers)} layers but acts holds {self.acts.shape[0]}")
        n = self.acts.shape[1]
        if n == 0:
            raise ValueError("no training tokens (empty data)")
        if tuple(self.alpha.shape) != (n,) or tuple(self.seq.shape) != (n,):
            raise ValueError(f"alpha {list(self.alpha.shape)} and seq {list(self.seq.shape)} must both be [{n}], one per token")
        if not torch.isfinite(self.alpha).all() or self.alpha.min() < 0 or self.alpha.max() > 1:
            raise ValueError("soft labels alpha must be finite and within [0, 1]")
        for name in ("acts", "delta"):
            if not torch.isfinite(getattr(self, name)).all():
                raise ValueError(f"{name} holds NaN or infinite values")

    @property
    def n_tokens(self) -> int:
        return int(self.acts.shape[1])

    @property
    def d_model(self) -> int:
        return int(self.acts.shape[2])

    @property
    def sequences(self) -> list[int]:
        return sorted(set(self.seq.tolist()))

    def select(self, sequences: Sequence[int]) -> "TokenData":
        """The tokens of the given sequences only."""
        keep = torch.isin(self.seq, torch.as_tensor(list(sequences), dtype=self.seq.dtype))
        return TokenData(self.layers, self.acts[:, keep], self.delta[:, keep], self.alpha[keep], self.seq[keep])

    def fingerprint(self) -> str:
        """A short hash of the data (layers, tensors' bytes)."""
        return fingerprint(list(self.layers), self.acts, self.delta, self.alpha, self.seq)


def soft_labels_of(triplets) -> dict[int, float]:
    """Soft labels of a :class:`~workbench.data.triplets.TripletSet` by sample id (row of ``kept``)."""
    return {i: float(v) for i, v in enumerate(triplets.kept["soft_label"].tolist())}


def label_lookup(soft_labels, ids: Sequence[int]) -> torch.Tensor:
    """``[len(ids)]`` float32 soft labels of sample ``ids``.

    Args:
        soft_labels: a mapping ``sample id -> label``, a sequence indexed by sample id, a
            :class:`~workbench.data.triplets.TripletSet` (its ``kept`` rows), or a float for all.
    """
    if hasattr(soft_labels, "kept"):
        soft_labels = soft_labels_of(soft_labels)
    out = []
    for i in ids:
        if isinstance(soft_labels, (int, float)):
            value = soft_labels
        elif isinstance(soft_labels, Mapping):
            if int(i) not in soft_labels:
                raise KeyError(f"no soft label for sample {int(i)}")
            value = soft_labels[int(i)]
        else:
            if not 0 <= int(i) < len(soft_labels):
                raise KeyError(f"no soft label for sample {int(i)} (only {len(soft_labels)} labels)")
            value = soft_labels[int(i)]
        if value is None or not math.isfinite(float(value)) or not 0 <= float(value) <= 1:
            raise ValueError(f"soft label of sample {int(i)} must be within [0, 1], got {value!r}")
        out.append(float(value))
    return torch.tensor(out, dtype=torch.float32)


def token_data_from_store(store: DeltaStore, layers: Sequence[int], kind: str, soft_labels,
                          samples: Sequence[int] | None = None) -> TokenData:
    """Load :class:`TokenData` from a delta store.

    Args:
        layers: the layers to load (all must be in the store).
        kind: ``"acc"`` (single-layer fits) or ``"loc"`` (all-layer, layer by layer).
        soft_labels: see :func:`label_lookup`; joined on the store's sample ids.
        samples: restrict to these sample ids (default: all).
    """
    if kind not in ("acc", "loc"):
        raise ValueError(f"kind must be 'acc' or 'loc', got {kind!r}")
    layers = [int(l) for l in layers]
    if not layers:
        raise ValueError("no layers to load")
    if store.n_tokens == 0:
        raise ValueError(f"{store.directory} holds no tokens (empty data)")
    # store order: one read per shard, and the sequence ids say which tokens belong together
    seq = store.tokens(order="store")["sample"]
    acts = torch.stack([store.get("base", l, order="store") for l in layers])
    delta = torch.stack([store.get(kind, l, order="store") for l in layers])
    if samples is not None:
        keep = torch.isin(seq, torch.as_tensor([int(s) for s in samples], dtype=seq.dtype))
        if not keep.any():
            raise ValueError(f"none of the samples {list(samples)[:5]}... are in {store.directory}")
        seq, acts, delta = seq[keep], acts[:, keep], delta[:, keep]
    ids = sorted(set(seq.tolist()))
    labels = dict(zip(ids, label_lookup(soft_labels, ids).tolist()))
    alpha = torch.tensor([labels[s] for s in seq.tolist()], dtype=torch.float32)
    return TokenData(tuple(layers), acts, delta, alpha, seq)


def split_sequences(ids: Sequence[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of sequence ids into (train, validation); never empties the training side.

    With fewer than two sequences, or ``val_fraction == 0``, validation is empty.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be within [0, 1), got {val_fraction}")
    ids = sorted(int(i) for i in set(ids))
    if not ids:
        raise ValueError("no sequences to split (empty data)")
    n_val = 0 if val_fraction == 0 or len(ids) < 2 else min(len(ids) - 1, max(1, round(val_fraction * len(ids))))
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(int(seed))).tolist()
    val = sorted(ids[i] for i in order[:n_val])
    train = sorted(ids[i] for i in order[n_val:])
    return train, val


def pairs_hash(pairs: Sequence[AlignedPair], labels: torch.Tensor) -> str:
    """A short hash of aligned pairs' token ids and their soft labels."""
    return fingerprint(pairs_fingerprint(pairs), labels)
