"""Saving and loading steerers: one safetensors file, never pickle.

The file holds the stacked parameters (``z``, and ``w``, ``b`` for PSR) and one metadata entry,
``workbench_steerer``, a JSON object with the method, scope, training, layers, rank, model id,
d_model, n_layers, attribute, training configuration and history, a hash of the training data,
the package version and the file format version; and the checksums of every tensor and of the
metadata (:mod:`workbench.core.tensor_files`). It is written to a temporary file in the same
directory and renamed, so an interrupted save never leaves a half-written steerer behind.

Loading verifies the checksums and refuses parameters that are NaN or infinite, naming the file.
Files of format 1 (written before checksums) are still read, with a warning to save them again.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path

import torch

from workbench.core.tensor_files import TensorFile, write_tensor_file

STEERER_FORMAT_VERSION = 2  # 2: checksums
_LEGACY_FORMATS = (1,)
META_KEY = "workbench_steerer"


def write_steerer_file(path: str | Path, params: dict[str, torch.Tensor], info) -> Path:
    """Write ``params`` (float32 on the CPU) and ``info`` (a SteererInfo) to ``path`` atomically."""
    meta = asdict(info)
    meta["layers"] = list(meta["layers"])
    tensors = {k: v.detach().to("cpu", torch.float32) for k, v in params.items()}
    try:
        return write_tensor_file(path, tensors, meta, meta_key=META_KEY, format_version=STEERER_FORMAT_VERSION)
    except ValueError as err:
        raise ValueError(f"the steerer's metadata cannot be saved as JSON ({err}); keep config and history plain") from err


def _open(path: str | Path) -> TensorFile:
    fh = TensorFile(path, meta_key=META_KEY, format_version=STEERER_FORMAT_VERSION, legacy_versions=_LEGACY_FORMATS,
                    finite=True, what="steerer")
    if not fh.verified:
        warnings.warn(f"{fh.path} is a steerer of format {fh.meta.get('format_version')}, written before steerers had "
                      "checksums; it is read unverified: save it again to add them", stacklevel=3)
    return fh


def read_metadata(path: str | Path) -> dict:
    """The metadata dict of a steerer file (raises ValueError naming the file if it is not one)."""
    with _open(path) as fh:
        return fh.meta


def read_steerer_file(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(metadata, tensors)`` of a steerer file, every tensor verified and finite."""
    with _open(path) as fh:
        return fh.meta, fh.read_all()
