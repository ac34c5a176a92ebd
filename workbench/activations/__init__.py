"""Stage 1, what the prompt does to the residual stream: span activations of the base and
prompt-steered runs (one batched extraction), the sharded on-disk store, the Delta_PS tables
(accumulated and local deltas, per-token magnitudes, token kinds), and Delta_PS along a direction
(mean and principal directions, per-token coefficients)."""

from workbench.activations.deltas import (
    delta_norms,
    extract_deltas,
    magnitude_by_kind,
    pair_magnitudes,
    token_kinds,
    token_magnitudes,
)
from workbench.activations.directions import coefficient_table, mean_directions
from workbench.activations.extraction import SpanActivations, extract_batch, record_span
from workbench.activations.store import DeltaStore, DeltaWriter

__all__ = [
    "DeltaStore", "DeltaWriter", "SpanActivations", "coefficient_table", "delta_norms", "extract_batch",
    "extract_deltas", "magnitude_by_kind", "mean_directions", "pair_magnitudes", "record_span", "token_kinds",
    "token_magnitudes",
]
