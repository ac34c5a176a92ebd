"""How big and how long an extraction will be, before running it (``workbench plan``).

The store's size follows from the shapes alone: span tokens x layers x kinds x d_model x bytes.
The time is measured: a few synthetic triplets of the planned length go through
:func:`~workbench.activations.extraction.extract_batch` (the same passes a run makes: prompt-steered,
base and, for local deltas, patched), and the seconds per batch are scaled to the planned number.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from workbench.activations.extraction import extract_batch
from workbench.activations.store import check_kinds, default_kinds, format_bytes, store_bytes
from workbench.core.chat import align, encode_response
from workbench.core.checks import check_int
from workbench.core.models import LoadedModel

_FILLER = "The quick brown fox jumps over the lazy dog, and the sky is blue because light scatters. "


@dataclass(frozen=True)
class ExtractionPlan:
    """What an extraction of ``n_triplets`` will cost.

    Attributes:
        tokens_per_triplet: steered-span tokens per triplet (assistant header + response).
        store_bytes: the store's size on disk.
        passes: forward passes in all (batches x passes per batch: 3 with local deltas, else 2).
        seconds_per_batch: measured on ``sample_batches`` batches of synthetic triplets.
        seconds: the estimate for the whole run.
        free_bytes: free space where the store would go (None when no directory was given).
    """

    model_id: str
    n_triplets: int
    tokens_per_triplet: int
    layers: tuple[int, ...]
    kinds: tuple[str, ...]
    dtype: str
    batch_size: int
    store_bytes: int
    passes: int
    seconds_per_batch: float
    seconds: float
    free_bytes: int | None = None

    def describe(self) -> str:
        layers = f"{len(self.layers)} layers" + (f" ({list(self.layers)})" if len(self.layers) <= 8 else "")
        lines = [
            f"model {self.model_id}: {self.n_triplets} triplets x {self.tokens_per_triplet} span tokens, {layers}, "
            f"kinds {', '.join(self.kinds)}, {self.dtype}",
            f"store: {format_bytes(self.store_bytes)}"
            + (f" ({format_bytes(self.free_bytes)} free there)" if self.free_bytes is not None else ""),
            f"passes: {self.passes} forward passes ({math.ceil(self.n_triplets / self.batch_size)} batches of "
            f"{self.batch_size} triplets, {3 if 'loc' in self.kinds else 2} passes each)",
            f"time: {_duration(self.seconds)} (measured {self.seconds_per_batch:.3f} s per batch here)",
        ]
        if self.free_bytes is not None and self.store_bytes > self.free_bytes:
            lines.append("WARNING: the store does not fit on that disk")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def synthetic_pairs(model: LoadedModel, n: int, response_tokens: int) -> list:
    """``n`` aligned triplets with responses of ``response_tokens`` tokens (filler text)."""
    tok = model.tokenizer
    filler = encode_response(tok, _FILLER * (1 + response_tokens // 8))
    if len(filler) < response_tokens:
        raise ValueError(f"could not make a {response_tokens}-token response")
    return [align(tok, f"Question {i}: why is the sky blue?", "You are a pirate. Speak like a pirate.",
                  filler[:response_tokens], max_len=model.n_ctx) for i in range(n)]


def plan_extraction(
    model: LoadedModel,
    n_triplets: int,
    *,
    response_tokens: int = 64,
    layers: Sequence[int] | None = None,
    kinds: Sequence[str] | None = None,
    dtype: str = "float16",
    batch_size: int = 8,
    sample_batches: int = 2,
    directory: str | Path | None = None,
) -> ExtractionPlan:
    """Size, passes and measured time of extracting ``n_triplets`` (see the module docstring)."""
    for name, value in (("n_triplets", n_triplets), ("response_tokens", response_tokens), ("batch_size", batch_size),
                        ("sample_batches", sample_batches)):
        check_int(name, value, minimum=1)
    layers = model.check_layers(layers)
    kinds = default_kinds(True) if kinds is None else check_kinds(kinds)
    local = "loc" in kinds
    pairs = synthetic_pairs(model, batch_size, response_tokens)
    with torch.no_grad():
        extract_batch(model, pairs[:1], layers, local=local)  # warm-up (allocations, kernel choice)
        start = time.perf_counter()
        for _ in range(sample_batches):
            extract_batch(model, pairs, layers, local=local)
        per_batch = (time.perf_counter() - start) / sample_batches
    batches = math.ceil(n_triplets / batch_size)
    span = pairs[0].span_len
    free = None
    if directory is not None:
        place = Path(directory).absolute()
        while not place.exists():
            place = place.parent
        free = shutil.disk_usage(place).free
    return ExtractionPlan(
        model_id=model.model_id, n_triplets=n_triplets, tokens_per_triplet=span, layers=tuple(layers), kinds=kinds,
        dtype=dtype, batch_size=batch_size,
        store_bytes=store_bytes(n_triplets * span, len(layers), model.d_model, kinds, dtype),
        passes=batches * (3 if local else 2), seconds_per_batch=per_batch, seconds=batches * per_batch,
        free_bytes=free,
    )
