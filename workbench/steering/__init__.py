"""Steerers: constant vectors and Prompt Steering Replacement (DESIGN.md section 4).

Train every method with :func:`train_steerer`, apply one with ``steerer.apply(model, alpha)`` (a
context manager, hooks on the steered span only), read per-token lambda with
``steerer.lambdas(model, pair)``, save with ``steerer.save(path)`` and load with
``Steerer.load(path, model)``. Modules, one job each:

- :mod:`~workbench.steering.steerer`: the classes and their maths on plain tensors, a steerer at a
  strength (``steerer.at(alpha)`` or ``alpha * steerer``), sums of steerers, save / load;
- :mod:`~workbench.steering.names`: the one grammar of method names (parse and print);
- :mod:`~workbench.steering.alpha`: the strength check and layer-range labels;
- :mod:`~workbench.steering.lambda_tables`: lambda read-out as tables (per pair, per generation);
- :mod:`~workbench.steering.data`: packed training tokens, soft labels, splits;
- :mod:`~workbench.steering.train`: the shared loop (progress, early stopping, stop / resume);
- :mod:`~workbench.steering.layerwise`: fits on stored deltas, layer by layer;
- :mod:`~workbench.steering.joint`: training through the model (joint A-PSR, PSR-LL);
- :mod:`~workbench.steering.hooks`: applying to a model on the span, lambda read-out through the model;
- :mod:`~workbench.steering.io`: the safetensors file format;
- :mod:`~workbench.steering.api`: :func:`train_steerer` and :func:`make_trainer`.
"""

from workbench.core.span import Span, aligned_span_mask, prefill_span_mask
from workbench.steering.alpha import MAX_ABS_ALPHA, check_alpha, layers_label
from workbench.steering.api import make_trainer, token_data_from_pairs, train_steerer
from workbench.steering.data import StoreTokens, TokenData, load_token_data, soft_labels_of, split_sequences, token_data_from_store
from workbench.steering.hooks import apply, lambdas
from workbench.steering.io import read_metadata
from workbench.steering.joint import response_nll, span_mse
from workbench.steering.layerwise import fit_const_mse, fit_dim, relative_mse
from workbench.steering.steerer import (
    METHODS,
    ConstSteerer,
    PSRSteerer,
    Steerer,
    SteererAt,
    SteererInfo,
    compose,
    load_steerer,
    make_steerer,
    save_steerer,
)
from workbench.steering.train import TrainConfig, TrainProgress

__all__ = [
    "MAX_ABS_ALPHA", "METHODS", "ConstSteerer", "PSRSteerer", "Span", "Steerer", "SteererAt", "SteererInfo", "compose", "TokenData",
    "TrainConfig", "TrainProgress", "aligned_span_mask", "apply", "check_alpha", "fit_const_mse", "fit_dim",
    "lambdas", "layers_label", "load_steerer", "make_steerer", "make_trainer", "prefill_span_mask", "read_metadata",
    "relative_mse", "response_nll", "save_steerer", "soft_labels_of", "span_mse", "split_sequences",
    "StoreTokens", "load_token_data", "token_data_from_pairs", "token_data_from_store", "train_steerer",
]
