"""Stage 1, what the prompt does to the residual stream: span activations of the base and
prompt-steered runs (one batched extraction), the sharded on-disk store, and the Delta_PS tables
(accumulated and local deltas, per-token magnitudes, token kinds)."""

from workbench.activations.deltas import (
    delta_norms,
    extract_deltas,
    magnitude_by_kind,
    pair_magnitudes,
    token_kinds,
    token_magnitudes,
)
from workbench.activations.extraction import SpanActivations, extract_batch, record_span
from workbench.activations.store import DeltaStore, DeltaWriter

__all__ = [
    "DeltaStore", "DeltaWriter", "SpanActivations", "delta_norms", "extract_batch", "extract_deltas",
    "magnitude_by_kind", "pair_magnitudes", "record_span", "token_kinds", "token_magnitudes",
]
