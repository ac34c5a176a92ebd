"""Delta_PS over many triplets: streamed extraction to a store, and per-token magnitudes.

``extract_deltas`` runs :func:`workbench.activations.extraction.extract_batch` batch by batch and streams
each batch to a :class:`~workbench.activations.store.DeltaWriter` shard, resuming after the shards already
written. It holds the store directory's lock for the whole extraction: a second process extracting
into the same directory waits for the first, then finds its work done. ``token_magnitudes`` turns a store into the tidy table behind the "which tokens does the
prompt rewrite" views: one row per (sample, layer, span position) with ``||D[l, t]||`` and the
relative magnitude ``||D[l, t]|| / ||A_l(x y')[t]||``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.activations.extraction import extract_batch
from workbench.activations.store import DeltaStore, DeltaWriter, check_disk_space, check_kinds, store_bytes
from workbench.core.chat import AlignedPair
from workbench.core.checks import check_int
from workbench.core.fingerprint import fingerprint
from workbench.core.locks import directory_lock
from workbench.core.models import LoadedModel


def pairs_fingerprint(pairs: Sequence[AlignedPair]) -> str:
    """A short hash of the triplets' token ids, recorded in a store to tie it to its data."""
    return fingerprint([[list(p.base_ids), list(p.steered_ids), p.base_start, p.steered_start] for p in pairs])


def extract_deltas(
    model: LoadedModel,
    pairs: Sequence[AlignedPair],
    directory: str | Path,
    *,
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    dtype: str = "float16",
    local: bool = True,
    sample_ids: Sequence[int] | None = None,
    progress: bool = True,
    kinds: Sequence[str] | None = None,
) -> DeltaStore:
    """Extract base activations and Delta_PS for many triplets into a sharded store.

    Args:
        pairs: aligned triplets (see :func:`workbench.core.chat.align`).
        directory: the store directory; an existing store of the same run is resumed.
        layers: layer indices (``None``: all).
        batch_size: triplets per forward batch, and per shard.
        dtype: ``"float16"`` (default) or ``"float32"`` on disk.
        local: also compute local deltas (one extra patched pass per batch).
        kinds: what to store, a subset of ``("base", "acc", "loc")`` (default: all three, or base and
            acc without ``local``); e.g. ``("acc",)`` for a third of the disk. ``"loc"`` in ``kinds``
            turns the patched pass on, its absence off. Before writing, the store's size is checked
            against the free disk space.
        sample_ids: global ids of the triplets (default ``0..n-1``), used to resume and to join
            with the triplet table.
    """
    if not pairs:
        raise ValueError("no triplets to extract")
    check_int("batch_size", batch_size, minimum=1)
    layers = model.check_layers(layers)
    if kinds is not None:
        kinds = check_kinds(kinds)
        local = "loc" in kinds
    sample_ids = list(range(len(pairs))) if sample_ids is None else [check_int(f"sample_ids[{i}]", s)
                                                                     for i, s in enumerate(sample_ids)]
    if len(sample_ids) != len(pairs) or len(set(sample_ids)) != len(sample_ids):
        raise ValueError("sample_ids must give one distinct id per triplet")
    with directory_lock(directory, purpose=f"extracting Delta_PS of {len(pairs)} triplets"):
        writer = DeltaWriter(
            directory, model_id=model.model_id, layers=layers, d_model=model.d_model, dtype=dtype, local=local,
            provenance={"triplets": pairs_fingerprint(pairs), "n_triplets": len(pairs)}, kinds=kinds,
        )
        done = writer.done_samples
        todo = [i for i, s in enumerate(sample_ids) if s not in done]
        check_disk_space(directory, store_bytes(sum(pairs[i].span_len for i in todo), len(layers), model.d_model,
                                                writer.header["kinds"], dtype))
        # Similar lengths share a batch, which keeps padding (wasted compute) small.
        todo.sort(key=lambda i: len(pairs[i].steered_ids))
        batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        for batch in tqdm(batches, desc="extracting Delta_PS", disable=not progress, leave=False):
            acts = extract_batch(model, [pairs[i] for i in batch], layers, local=local)
            writer.write(acts, [sample_ids[i] for i in batch])
        return DeltaStore(directory)


def delta_norms(delta: torch.Tensor, base: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token ``||delta||`` and ``||delta|| / ||base||``.

    Args:
        delta, base: ``[..., tokens, d_model]``.
    Returns:
        ``(norm, rel_norm)``, each ``[..., tokens]``.
    """
    if delta.shape != base.shape:
        raise ValueError(f"delta {tuple(delta.shape)} and base {tuple(base.shape)} differ in shape")
    norm = delta.float().norm(dim=-1)
    return norm, norm / base.float().norm(dim=-1).clamp_min(eps)


_MAGNITUDE_COLUMNS = ["sample", "layer", "position", "token_id", "is_header", "norm", "rel_norm"]


def _magnitude_rows(sample: list[int], position: list[int], token_ids: list[int], header: dict[int, int],
                    layers: Sequence[int], delta_and_base) -> list[pd.DataFrame]:
    """One frame per layer; ``delta_and_base(layer)`` gives ``([tokens, d], [tokens, d])``."""
    is_header = [p < header[s] for s, p in zip(sample, position)]
    frames = []
    for layer in layers:
        norm, rel = delta_norms(*delta_and_base(layer))
        frames.append(pd.DataFrame({
            "sample": sample, "layer": layer, "position": position, "token_id": token_ids,
            "is_header": is_header, "norm": norm.numpy(), "rel_norm": rel.numpy(),
        }))
    return frames


def _finish_table(frames: list[pd.DataFrame], tokenizer) -> pd.DataFrame:
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=_MAGNITUDE_COLUMNS)
    if tokenizer is not None:
        vocab = {i: tokenizer.decode([i]) for i in set(table["token_id"].tolist())}
        table.insert(4, "token", table["token_id"].map(vocab))
    return table.sort_values(["sample", "layer", "position"], ignore_index=True)


def token_magnitudes(
    store: DeltaStore, tokenizer=None, kind: str = "acc", layers: Sequence[int] | None = None
) -> pd.DataFrame:
    """Tidy per-token magnitudes of a store's deltas.

    Returns a DataFrame with columns ``sample, layer, position, token_id, token, is_header,
    norm, rel_norm`` (``token`` is the decoded token string when a tokenizer is given).
    """
    if kind not in ("acc", "loc"):
        raise ValueError(f"kind must be 'acc' or 'loc', got {kind!r}")
    layers = store.layers if layers is None else list(layers)
    frames = []
    for shard in store.iter_shards(kinds=("base", kind), layers=layers):
        header = dict(zip(shard["sample_ids"].tolist(), shard["header_len"].tolist()))
        frames += _magnitude_rows(shard["sample"].tolist(), shard["position"].tolist(), shard["token_ids"].tolist(),
                                  header, layers, lambda l: (shard[(kind, l)], shard[("base", l)]))
    return _finish_table(frames, tokenizer)


def pair_magnitudes(model: LoadedModel, pairs: Sequence[AlignedPair], layers: Sequence[int] | None = None,
                    kind: str = "acc") -> pd.DataFrame:
    """:func:`token_magnitudes` of a few aligned triplets, computed in memory (no store).

    Samples are numbered ``0..len(pairs)-1``; columns as :func:`token_magnitudes` with the
    tokens decoded.
    """
    if kind not in ("acc", "loc"):
        raise ValueError(f"kind must be 'acc' or 'loc', got {kind!r}")
    layers = model.check_layers(layers)
    with torch.no_grad():
        acts = extract_batch(model, pairs, layers, local=kind == "loc")
    delta = acts.acc if kind == "acc" else acts.loc
    header = {i: int(h) for i, h in enumerate(acts.header_len.tolist())}
    frames = _magnitude_rows(acts.sample.tolist(), acts.position.tolist(), acts.token_ids.tolist(), header, layers,
                             lambda l: (delta[layers.index(l)], acts.base[layers.index(l)]))
    return _finish_table(frames, model.tokenizer)


TOKEN_KINDS = ("assistant header", "first response token", "attribute word", "punctuation", "other word")
_PUNCT = re.compile(r"^[\W_]+$")


def token_kinds(table: pd.DataFrame, attribute_words: Iterable[str]) -> pd.Series:
    """The kind of each row's token (one of :data:`TOKEN_KINDS`), for "which tokens move most".

    Tokens are joined into words per sample (a token opening with whitespace, or a punctuation
    token, starts a new word); a token belongs to an ``attribute word`` when its whole word, lower
    case and without punctuation, is one of ``attribute_words`` (e.g. the pirate judge's lexicon).

    Args:
        table: rows with ``sample, layer, position, token, is_header`` (as from
            :func:`token_magnitudes`); every layer of a sample holds the same tokens.
    Returns:
        A string Series aligned with ``table``'s index.
    """
    for column in ("sample", "position", "token", "is_header"):
        if column not in table.columns:
            raise ValueError(f"token_kinds needs a {column!r} column (got {list(table.columns)})")
    vocabulary = {w.strip().lower() for w in attribute_words if isinstance(w, str) and w.strip()}
    tokens = table.drop_duplicates(["sample", "position"]).sort_values(["sample", "position"])
    kind_of: dict[tuple, str] = {}
    for sample, part in tokens.groupby("sample", sort=False):
        words: list[list[tuple[int, str]]] = []
        first_response = None
        for row in part.itertuples():
            if row.is_header:
                kind_of[(sample, row.position)] = "assistant header"
                continue
            text = str(row.token)
            if first_response is None:
                first_response = row.position
            if not words or text[:1].isspace() or _PUNCT.match(text.strip() or " ") or _PUNCT.match(words[-1][-1][1].strip() or " "):
                words.append([])
            words[-1].append((row.position, text))
        for word in words:
            text = "".join(t for _, t in word).strip().lower()
            bare = re.sub(r"[\W_]+", "", text)
            for position, token in word:
                if position == first_response:
                    kind = "first response token"
                elif bare and bare in vocabulary:
                    kind = "attribute word"
                elif not re.sub(r"[\W_]+", "", token):
                    kind = "punctuation"
                else:
                    kind = "other word"
                kind_of[(sample, position)] = kind
    return pd.Series([kind_of[(s, p)] for s, p in zip(table["sample"], table["position"])], index=table.index,
                     name="kind")


def magnitude_by_kind(table: pd.DataFrame, attribute_words: Iterable[str], value: str = "rel_norm",
                      layers: Sequence[int] | None = None) -> pd.DataFrame:
    """Per layer and token kind: ``n``, median and mean of ``value``, and the median relative to
    the layer's median over response tokens (``x_median``: 2 = twice the typical token)."""
    if value not in table.columns:
        raise ValueError(f"no column {value!r} in the table (got {list(table.columns)})")
    rows = table if layers is None else table[table["layer"].isin(list(layers))]
    if rows.empty:
        raise ValueError(f"no rows at layers {layers}")
    rows = rows.assign(kind=token_kinds(rows, attribute_words))
    typical = rows[~rows["is_header"].astype(bool)].groupby("layer")[value].median()
    out = rows.groupby(["layer", "kind"])[value].agg(n="size", median="median", mean="mean").reset_index()
    out["x_median"] = out["median"] / out["layer"].map(typical)
    order = {k: i for i, k in enumerate(TOKEN_KINDS)}
    return out.sort_values(["layer", "kind"], key=lambda c: c.map(order) if c.name == "kind" else c, ignore_index=True)
