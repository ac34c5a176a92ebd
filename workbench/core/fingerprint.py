"""One way to hash what a stored result depends on, for every cache key and seed in the workbench.

A fingerprint is the SHA-256 of a canonical JSON encoding of its parts: dict keys sorted, tuples
as lists, dataclasses as their fields, tensors and arrays by dtype, shape and raw bytes. Two calls
give the same fingerprint exactly when their parts are equal, whatever the dict order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import PurePath
from typing import Any

import numpy as np
import torch


def _canonical(value: Any, digest) -> Any:
    """A JSON-able stand-in for ``value``; tensor and array bytes go straight into ``digest``."""
    if isinstance(value, torch.Tensor):
        array = value.detach().cpu().contiguous()
        digest.update(array.view(torch.uint8).numpy().tobytes() if array.numel() else b"")
        return {"tensor": str(array.dtype), "shape": list(array.shape)}
    if isinstance(value, np.ndarray):
        digest.update(np.ascontiguousarray(value).tobytes())
        return {"array": str(value.dtype), "shape": list(value.shape)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name), digest) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _canonical(v, digest) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, digest) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_canonical(v, digest) for v in value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot fingerprint a {type(value).__name__}: give its parameters instead")


def fingerprint(*parts: Any, length: int = 16) -> str:
    """Hex digest (``length`` characters, at most 64) of ``parts``.

    Example:
        >>> fingerprint({"b": 1, "a": 2}) == fingerprint({"a": 2, "b": 1})
        True
        >>> len(fingerprint("x", [1, 2], length=20))
        20
    """
    if not 1 <= length <= 64:
        raise ValueError(f"length must be within 1..64, got {length}")
    digest = hashlib.sha256()
    body = json.dumps(_canonical(list(parts), digest), sort_keys=True, separators=(",", ":"))
    digest.update(body.encode("utf-8"))
    return digest.hexdigest()[:length]


def sample_seed(seed: int, question: str, instruction: str, sample_index: int) -> int:
    """A per-sample seed that does not depend on batching or on the order of work (32 bits).

    Kept on its own encoding so that stored runs keep their draws.
    """
    key = json.dumps([seed, question, instruction, sample_index]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")
