"""Delta_PS extraction through TransformerLens hooks (DESIGN.md section 3).

For a batch of aligned triplets, three forward passes, right-padded so positions stay natural:

1. the prompt-steered run ``x' y'``: record ``A_l(x' y')`` on the steered span;
2. the base run ``x y'``: record ``A_l(x y')`` on the steered span;
3. one patched run on ``x y'``: at each chosen block's input, overwrite the steered span with the
   recorded prompt-steered values of the previous layer, and record the block's output. Block
   l's input hook (``blocks.{l}.hook_resid_pre``) fires after block l-1's output hook, so each
   record is taken before the next overwrite.

Then ``D_acc[l] = A_l(x'y') - A_l(xy')`` and ``D_loc[l] = A_l(x'y') - Block_l(A~_{l-1})``.
Activations are kept "packed": the span tokens of all samples stacked into ``[tokens, d_model]``.

No pass computes the unembedding (they run the decoder stack, whose blocks carry the bridge's hooks),
and on a single-device model no pass runs the blocks above the last recorded layer. There the
patched pass also starts where the spans start: the base pass keeps its keys and values, and the
patched pass reads those of the prompt before the earliest span instead of computing them again.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import torch
from transformers.cache_utils import DynamicLayer

from workbench.core.chat import AlignedPair, check_alignment
from workbench.core.generation import new_kv_cache
from workbench.core.models import LoadedModel
from workbench.core.native_path import decoder_stack, native_model
from workbench.core.span import right_pad, span_index


@dataclass(frozen=True)
class SpanActivations:
    """Packed span activations of a batch of triplets, for ``layers``.

    Attributes:
        layers: the layer indices, in order.
        base: ``[n_layers, tokens, d_model]``, ``A_l(x y')``.
        acc: ``[n_layers, tokens, d_model]``, accumulated delta ``A_l(x'y') - A_l(xy')``.
        loc: ``[n_layers, tokens, d_model]``, local delta ``A_l(x'y') - Block_l(A~_{l-1})``,
            or ``None`` when the patched pass was skipped.
        token_ids: ``[tokens]``, the span's token ids.
        sample: ``[tokens]``, index of each token's triplet within the batch.
        position: ``[tokens]``, position within the steered span (0 = first header token).
        header_len: ``[samples]``, number of assistant-header tokens opening each span.
    """

    layers: tuple[int, ...]
    base: torch.Tensor
    acc: torch.Tensor
    loc: torch.Tensor | None
    token_ids: torch.Tensor
    sample: torch.Tensor
    position: torch.Tensor
    header_len: torch.Tensor

    @property
    def steered(self) -> torch.Tensor:
        """``[n_layers, tokens, d_model]``, ``A_l(x' y')``."""
        return self.base + self.acc


def _recorder(store: dict, layer: int, rows: torch.Tensor, cols: torch.Tensor) -> Callable:
    # Records are float32 whatever the model's dtype (deltas of bfloat16 runs are differences of
    # nearly equal numbers), on the layer's own device (layers may sit on different devices).
    def hook(resid: torch.Tensor, hook=None) -> torch.Tensor:
        store[layer] = resid[rows.to(resid.device), cols.to(resid.device)].detach().float().clone()
        return resid

    return hook


def _overwriter(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> Callable:
    def hook(resid: torch.Tensor, hook=None) -> torch.Tensor:
        patched = resid.clone()
        patched[rows.to(resid.device), cols.to(resid.device)] = values.to(device=resid.device, dtype=resid.dtype)
        return patched

    return hook


def record_span(
    model: LoadedModel,
    seqs: Sequence[Sequence[int]],
    starts: Sequence[int],
    layers: Sequence[int],
    extra_hooks: Sequence[tuple[str, Callable]] = (),
    cache=None,
    past: int = 0,
) -> dict[int, torch.Tensor]:
    """One right-padded forward pass; the span (from ``starts`` to each end) at ``layers``.

    ``extra_hooks`` (e.g. overwrites of block inputs) are active during the pass; the records are
    taken at ``blocks.{l}.hook_resid_post`` after any hook added before them at that point.
    Returns ``{layer: [span tokens, d_model]}``, packed in sequence order.

    ``cache`` (a Hugging Face ``DynamicCache``, decoder path only): with ``past == 0`` the pass
    fills it; with ``past > 0`` it holds the keys and values of the first ``past`` positions of
    these very sequences, and the pass runs only the positions after them (hooks then see
    ``[batch, len - past, d_model]``; ``extra_hooks`` must index accordingly).
    """
    device = model.device
    ids, mask = right_pad(seqs, model.tokenizer.pad_token_id)
    rows, cols = span_index(starts, [len(s) - st for s, st in zip(seqs, starts)])
    rows, cols = rows.to(device), (cols - past).to(device)
    record: dict[int, torch.Tensor] = {}
    hooks = list(extra_hooks) + [(model.resid_hook(l), _recorder(record, l, rows, cols)) for l in layers]
    body = _decoder(model)
    if (cache is not None or past) and (body is None or model.device_map is not None):
        raise ValueError("a cached pass needs the decoder path on one device (see cached_prefix_ok)")
    if past and (past > min(starts) or cache is None):
        raise ValueError(f"past ({past}) must come with its cache and end before the earliest span start ({min(starts)})")
    if body is not None and model.device_map is None:
        hooks.append((model.resid_hook(max(layers)), _stop))  # nothing after the last recorded layer is needed
    try:
        with model.bridge.hooks(fwd_hooks=hooks):
            native = native_model(model) if body is not None else None
            if native is not None:  # the same decoder without the bridge's per-module wrapping: same numbers
                body = decoder_stack(native)
            if body is None:
                model.bridge(ids.to(device), attention_mask=mask.to(device), return_type=None)
            elif cache is None:  # the decoder without its unembedding: the bridge's hooks live inside it
                body(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
            else:
                positions = torch.arange(past, ids.shape[1], device=device).expand(ids.shape[0], -1)
                body(input_ids=ids[:, past:].to(device), attention_mask=mask.to(device), position_ids=positions,
                     use_cache=True, **{_cache_argument(type(body)): cache})
    except _StopForward:
        pass
    return record


@lru_cache(maxsize=None)
def _cache_argument(body_class: type) -> str:
    """The name under which a decoder takes its KV cache (``cache`` in newer transformers)."""
    params = inspect.signature(body_class.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _plain_cache(model: LoadedModel):
    """A new KV cache whose layers all keep every position (none a sliding window), else ``None``."""
    cache = new_kv_cache(model)
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    return cache


def cached_prefix_ok(model: LoadedModel) -> bool:
    """Whether the patched pass can reuse the base pass's keys and values on the prompt (decoder
    path, one device)."""
    return _decoder(model) is not None and model.device_map is None


class _StopForward(Exception):
    """Raised after the last layer a pass records, so the blocks above it do not run."""


def _stop(resid: torch.Tensor, hook=None) -> torch.Tensor:
    raise _StopForward


def _decoder(model: LoadedModel):
    """The wrapped model's decoder stack without the unembedding, or ``None`` (:func:`decoder_stack`)."""
    return decoder_stack(model.hf_model)


@torch.no_grad()
def extract_batch(
    model: LoadedModel, pairs: Sequence[AlignedPair], layers: Sequence[int] | None = None, local: bool = True
) -> SpanActivations:
    """Base activations and accumulated / local Delta_PS of a batch of aligned triplets.

    Args:
        layers: layer indices (``None``: all layers).
        local: also run the patched pass for the local deltas.
    """
    if not pairs:
        raise ValueError("no triplets to extract")
    layers = model.check_layers(layers)
    for pair in pairs:
        check_alignment(pair)
        if max(len(pair.base_ids), len(pair.steered_ids)) > model.n_ctx:
            raise ValueError(f"a triplet of {len(pair.steered_ids)} tokens does not fit the context length {model.n_ctx}")
    lengths = [p.span_len for p in pairs]
    rows, base_cols = span_index([p.base_start for p in pairs], lengths)
    rows, base_cols = rows.to(model.device), base_cols.to(model.device)
    base_seqs, base_starts = [p.base_ids for p in pairs], [p.base_start for p in pairs]

    steered_layers = sorted(set(layers) | ({l - 1 for l in layers if l > 0} if local else set()))
    steered = record_span(model, [p.steered_ids for p in pairs], [p.steered_start for p in pairs], steered_layers)
    # The patched pass differs from the base pass only from the span on (the prompt before it
    # never sees the overwritten positions), so it reuses the base pass's keys and values there.
    cache = _plain_cache(model) if local and cached_prefix_ok(model) else None
    past = min(base_starts) if cache is not None else 0
    base = record_span(model, base_seqs, base_starts, layers, cache=cache)
    loc = None
    if local:
        if cache is not None:
            for layer in cache.layers:
                if getattr(layer, "is_initialized", False):
                    layer.keys, layer.values = layer.keys[..., :past, :], layer.values[..., :past, :]
        overwrites = [(model.block_input_hook(l), _overwriter(steered[l - 1], rows, base_cols - past))
                      for l in layers if l > 0]
        patched = record_span(model, base_seqs, base_starts, layers, extra_hooks=overwrites, cache=cache, past=past)
        del cache
        loc = torch.stack([(steered[l] - patched[l]).cpu() for l in layers])

    span_ids = torch.cat([torch.as_tensor(p.span_ids, dtype=torch.long) for p in pairs])
    position = torch.cat([torch.arange(n, dtype=torch.long) for n in lengths])
    return SpanActivations(
        layers=tuple(layers),
        base=torch.stack([base[l].cpu() for l in layers]),
        acc=torch.stack([(steered[l] - base[l]).cpu() for l in layers]),
        loc=loc,
        token_ids=span_ids,
        sample=rows.cpu(),
        position=position,
        header_len=torch.tensor([p.header_len for p in pairs], dtype=torch.long),
    )
