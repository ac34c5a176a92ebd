"""Saving and loading steerers: one safetensors file, never pickle.

The file holds the stacked parameters (``z``, and ``w``, ``b`` for PSR) and one metadata entry,
``workbench_steerer``, a JSON object with the method, scope, training, layers, rank, model id,
d_model, n_layers, attribute, training configuration and history, a hash of the training data,
the package version and the file format version. It is written to a temporary file in the same
directory and renamed, so an interrupted save never leaves a half-written steerer behind.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from workbench.core.files import atomic_path, package_version

STEERER_FORMAT_VERSION = 1
META_KEY = "workbench_steerer"


def write_steerer_file(path: str | Path, params: dict[str, torch.Tensor], info) -> Path:
    """Write ``params`` (float32 on the CPU) and ``info`` (a SteererInfo) to ``path`` atomically."""
    path = Path(path)
    meta = {"format_version": STEERER_FORMAT_VERSION, "package_version": package_version(), **asdict(info)}
    meta["layers"] = list(meta["layers"])
    try:
        text = json.dumps(meta, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the steerer's metadata cannot be saved as JSON ({err}); keep config and history plain") from err
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in params.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={META_KEY: text})
    return path


def read_metadata(path: str | Path) -> dict:
    """The metadata dict of a steerer file (raises ValueError naming the file if it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no steerer file at {path}")
    try:
        with safe_open(path, framework="pt") as fh:
            raw = (fh.metadata() or {}).get(META_KEY)
    except Exception as err:  # safetensors raises its own error types for truncated / foreign files
        raise ValueError(f"{path} is not a readable safetensors file (truncated or foreign?): {err}") from err
    if raw is None:
        raise ValueError(f"{path} is a safetensors file but not a workbench steerer (no {META_KEY!r} metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} has corrupt steerer metadata: {err}") from err
    version = meta.get("format_version")
    if version != STEERER_FORMAT_VERSION:
        raise ValueError(f"{path} is steerer format {version!r}; this workbench reads format {STEERER_FORMAT_VERSION}")
    return meta


def read_steerer_file(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(metadata, tensors)`` of a steerer file, checked for format; naming the file when it is not one."""
    path = Path(path)
    meta = read_metadata(path)
    try:
        with safe_open(path, framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:  # safetensors raises its own error types for truncated / foreign files
        raise ValueError(f"{path} is truncated or corrupt: {err}") from err
    return meta, tensors
