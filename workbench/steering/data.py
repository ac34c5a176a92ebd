"""Training data of steerers: packed span tokens, soft labels and train / validation splits.

Layer-by-layer fits work on :class:`TokenData`: the span tokens of many triplets stacked into
``[layers, tokens, d_model]`` tensors of activations ``a = A_l(x y')`` and target deltas (the
accumulated ``D_acc`` for single-layer steerers, the local ``D_loc`` for all-layer ones), with a
soft label ``alpha`` and a sequence id per token. Sequence ids are the store's sample ids, i.e.
row indices in :attr:`workbench.data.triplets.TripletSet.kept`, which is how soft labels are joined.

Data too large for memory stays on disk: :class:`StoreTokens` names the same tokens in a
:class:`~workbench.activations.store.DeltaStore` and hands them out one shard at a time (each shard a
small :class:`TokenData`), so training streams them with a flat peak memory.
:func:`load_token_data` picks between the two by size (:data:`IN_MEMORY_LIMIT_BYTES`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from workbench.activations.deltas import pairs_fingerprint
from workbench.activations.store import DeltaStore
from workbench.core.chat import AlignedPair
from workbench.core.checks import is_number
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
        if is_number(soft_labels):
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


#: Above this many bytes of float32 activations and deltas, :func:`load_token_data` streams from the store.
IN_MEMORY_LIMIT_BYTES = 1 << 30


def concat_tokens(parts: Sequence[TokenData]) -> TokenData:
    """One :class:`TokenData` of several with the same layers (tokens appended in order)."""
    if not parts:
        raise ValueError("nothing to concatenate (empty data)")
    if len(parts) == 1:
        return parts[0]
    if len({p.layers for p in parts}) != 1:
        raise ValueError(f"parts hold different layers: {sorted({p.layers for p in parts})}")
    return TokenData(parts[0].layers, torch.cat([p.acts for p in parts], 1), torch.cat([p.delta for p in parts], 1),
                     torch.cat([p.alpha for p in parts]), torch.cat([p.seq for p in parts]))


class StoreTokens:
    """The tokens :func:`token_data_from_store` would load, left in the store and read a shard at a time.

    ``chunk(i)`` is the :class:`TokenData` of the i-th shard that holds chosen samples (whole
    sequences, in store order); ``chunks()`` yields them all in store order, and concatenated they
    are exactly ``token_data_from_store(store, layers, kind, soft_labels, samples)``. Peak memory
    is one shard's chosen layers, whatever the number of triplets.

    Args:
        store: the :class:`~workbench.activations.store.DeltaStore`.
        layers, kind, soft_labels, samples: as for :func:`token_data_from_store`.
    """

    def __init__(self, store: DeltaStore, layers: Sequence[int], kind: str, soft_labels,
                 samples: Sequence[int] | None = None) -> None:
        if kind not in ("acc", "loc"):
            raise ValueError(f"kind must be 'acc' or 'loc', got {kind!r}")
        layers = tuple(int(l) for l in layers)
        if not layers:
            raise ValueError("no layers to load")
        if store.n_tokens == 0:
            raise ValueError(f"{store.directory} holds no tokens (empty data)")
        for layer in layers:
            store._check("base", layer)
            store._check(kind, layer)
        stored = set(store.sample_ids)
        chosen = stored if samples is None else stored & {int(s) for s in samples}
        if not chosen:
            raise ValueError(f"none of the samples {list(samples)[:5]}... are in {store.directory}")
        self.store, self.layers, self.kind = store, layers, kind
        self._ids = sorted(chosen)
        if isinstance(soft_labels, Mapping) and all(int(i) in soft_labels for i in self._ids):
            values = label_lookup({int(i): soft_labels[int(i)] for i in self._ids}, self._ids)
        else:
            values = label_lookup(soft_labels, self._ids)
        self._label_ids = torch.tensor(self._ids, dtype=torch.long)
        self._label_values = values
        self._shards = [i for i, shard in enumerate(store.shards) if chosen.intersection(shard.samples)]
        self._chosen = chosen

    @property
    def sequences(self) -> list[int]:
        return list(self._ids)

    @property
    def labels(self) -> dict[int, float]:
        """Soft label of each chosen sample."""
        return dict(zip(self._ids, self._label_values.tolist()))

    @property
    def n_chunks(self) -> int:
        return len(self._shards)

    @property
    def d_model(self) -> int:
        return self.store.d_model

    @property
    def n_tokens(self) -> int:
        """Span tokens of the chosen samples (reads only the shards' sample columns)."""
        ids = self._label_ids
        return sum(int(torch.isin(self.store.read_shard(i, (), [], None)["sample"], ids).sum()) for i in self._shards)

    @property
    def nbytes(self) -> int:
        """Bytes the data would take in memory as :class:`TokenData` (float32 activations and deltas)."""
        return self.n_tokens * len(self.layers) * self.d_model * 4 * 2

    def select(self, sequences: Sequence[int]) -> "StoreTokens":
        """The tokens of the given sequences only (still on disk)."""
        wanted = {int(s) for s in sequences}
        missing = sorted(wanted - self._chosen)
        if missing:
            raise KeyError(f"samples {missing[:5]} are not in this data")
        return StoreTokens(self.store, self.layers, self.kind, self.labels, sorted(wanted))

    def chunk(self, i: int, layers: Sequence[int] | None = None, delta_only: bool = False) -> TokenData:
        """The i-th chunk (one shard's chosen samples) as :class:`TokenData`.

        ``layers`` restricts the read to some of the layers; ``delta_only`` skips reading the
        activations (``acts`` is then the delta tensor itself, for statistics of the deltas alone).
        """
        layers = self.layers if layers is None else tuple(int(l) for l in layers)
        kinds = (self.kind,) if delta_only else ("base", self.kind)
        everything = len(self._chosen) == len(self.store.sample_ids)
        shard = self.store.read_shard(self._shards[i], kinds, layers, None if everything else self._ids)
        delta = torch.stack([shard[(self.kind, l)] for l in layers])
        acts = delta if delta_only else torch.stack([shard[("base", l)] for l in layers])
        seq = shard["sample"]
        alpha = self._label_values[torch.searchsorted(self._label_ids, seq)]
        return TokenData(layers, acts, delta, alpha, seq)

    def chunks(self, layers: Sequence[int] | None = None, delta_only: bool = False) -> Iterator[TokenData]:
        """Every chunk, in store order."""
        for i in range(self.n_chunks):
            yield self.chunk(i, layers, delta_only)

    def load(self) -> TokenData:
        """Everything in memory at once."""
        return concat_tokens(list(self.chunks()))

    def fingerprint(self) -> str:
        """A short hash of what the data is: the store's shards, the layers, kind, samples and labels."""
        shards = [{k: s[k] for k in ("file", "samples", "n_tokens", "size")} for s in self.store.index["shards"]]
        return fingerprint("store-tokens", self.store.model_id, shards, list(self.layers), self.kind,
                           self._label_ids, self._label_values)


def load_token_data(store: DeltaStore, layers: Sequence[int], kind: str, soft_labels,
                    samples: Sequence[int] | None = None, limit_bytes: int | None = None) -> "TokenData | StoreTokens":
    """Training data from a store: in memory (:class:`TokenData`) when it takes at most
    ``limit_bytes`` (default :data:`IN_MEMORY_LIMIT_BYTES`) as float32, else streamed
    (:class:`StoreTokens`). Steerer fits accept either."""
    lazy = StoreTokens(store, layers, kind, soft_labels, samples)
    limit = IN_MEMORY_LIMIT_BYTES if limit_bytes is None else int(limit_bytes)
    if lazy.nbytes > limit:
        return lazy
    return token_data_from_store(store, layers, kind, soft_labels, samples)


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
