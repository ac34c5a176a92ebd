"""Tensor files: one safetensors file with JSON metadata, a format version and checksums, verified
when read.

Every tensor file the workbench writes (store shards, steerers, gates, weight adapters, training
checkpoints) goes through :func:`write_tensor_file`: the tensors, and two metadata entries, the
caller's JSON under its own key (``meta_key``) with ``format_version`` and ``package_version`` in it,
and ``workbench_checksums``, the SHA-256 of every tensor's dtype, shape and bytes and of the
metadata text. The file is written to a temporary name and renamed, so it is whole or absent.

Reading verifies: :func:`read_tensor_file` checks every tensor, :class:`TensorFile` each tensor as
it is read (a store streams one layer of a shard at a time; only what is read is hashed). A
flipped byte anywhere, a truncated file, a foreign file, another format version or, with
``finite=True``, a NaN or infinite value raises :class:`CorruptFileError` (a ``ValueError``) naming
the file and the tensor. Files written before checksums existed (``legacy_versions``) are read
unverified; the caller decides what to say about them.

Example:
    >>> import tempfile, torch
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = write_tensor_file(f"{d}/x.safetensors", {"z": torch.ones(3)}, {"layer": 2},
    ...                              meta_key="example", format_version=1)
    ...     meta, tensors = read_tensor_file(path, meta_key="example", format_version=1)
    >>> meta["layer"], tensors["z"].tolist()
    (2, [1.0, 1.0, 1.0])
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from workbench.core.files import atomic_path, package_version

__all__ = ["CHECKSUM_KEY", "CorruptFileError", "TensorFile", "read_tensor_file", "tensor_checksum", "write_tensor_file"]

CHECKSUM_KEY = "workbench_checksums"


class CorruptFileError(ValueError):
    """A file the workbench wrote no longer holds what it wrote (or never was such a file)."""


def tensor_checksum(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (CPU, contiguous)."""
    array = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{array.dtype}{list(array.shape)}".encode())
    if array.numel():
        digest.update(array.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _text_checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_tensor_file(path: str | Path, tensors: Mapping[str, torch.Tensor], meta: Mapping, *, meta_key: str,
                      format_version: int) -> Path:
    """Write ``tensors`` and ``meta`` (plain JSON values) to ``path`` atomically, with checksums.

    Raises:
        ValueError: ``meta`` is not plain JSON (NaN and infinities included).
    """
    path = Path(path)
    body = {**meta, "format_version": format_version, "package_version": package_version()}
    try:
        text = json.dumps(body, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the metadata of {path.name} cannot be saved as JSON ({err}); keep it plain") from err
    stored = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    sums = {"meta": _text_checksum(text), "tensors": {name: tensor_checksum(t) for name, t in stored.items()}}
    with atomic_path(path) as tmp:
        save_file(stored, tmp, metadata={meta_key: text, CHECKSUM_KEY: json.dumps(sums, sort_keys=True)})
    return path


class TensorFile:
    """An open tensor file whose tensors are verified as they are read (use as a context manager).

    Args:
        path: the file.
        meta_key: the metadata entry the caller's JSON is under.
        format_version: the version this reader reads; ``legacy_versions`` are read without checksums
            (``self.verified`` is then False).
        finite: refuse tensors holding NaN or infinity.
        what: what the file is, for messages (``"steerer"``, ``"store shard"``).
    """

    def __init__(self, path: str | Path, *, meta_key: str, format_version: int,
                 legacy_versions: Iterable[int] = (), finite: bool = False, what: str = "tensor file") -> None:
        self.path, self.what, self.finite = Path(path), what, finite
        if not self.path.is_file():
            raise FileNotFoundError(f"no {what} file at {self.path}")
        try:
            self._fh = safe_open(self.path, framework="pt")
            header = self._fh.metadata() or {}
            self.keys = list(self._fh.keys())
        except Exception as err:  # safetensors raises its own error types for truncated / foreign files
            raise CorruptFileError(f"{self.path} is not a readable {what} (truncated, corrupt or foreign): {err}") from err
        raw = header.get(meta_key)
        if raw is None:
            raise CorruptFileError(f"{self.path} is a safetensors file but not a workbench {what} (no {meta_key!r} metadata)")
        try:
            self.meta = json.loads(raw)
        except json.JSONDecodeError as err:
            raise CorruptFileError(f"{self.path} has corrupt {what} metadata: {err}") from err
        version = self.meta.get("format_version") if isinstance(self.meta, dict) else None
        legacy = set(legacy_versions)
        if version != format_version and version not in legacy:
            raise CorruptFileError(f"{self.path} is {what} format {version!r}; this workbench reads format {format_version}"
                                   f" (written by workbench {self.meta.get('package_version') if isinstance(self.meta, dict) else None!r})")
        self.verified = version == format_version
        self._sums: dict[str, str] = {}
        if self.verified:
            try:
                sums = json.loads(header[CHECKSUM_KEY])
                self._sums = dict(sums["tensors"])
                meta_sum = sums["meta"]
            except (KeyError, TypeError, ValueError) as err:
                raise CorruptFileError(f"{self.path}: the {what}'s checksums are missing or corrupt ({err})") from err
            if _text_checksum(raw) != meta_sum:
                raise CorruptFileError(f"{self.path}: the {what}'s metadata does not match its checksum (the file is corrupt)")
            if set(self._sums) != set(self.keys):
                raise CorruptFileError(f"{self.path}: the {what} holds tensors {sorted(self.keys)} but its checksums "
                                       f"name {sorted(self._sums)} (the file is corrupt)")

    def __enter__(self) -> "TensorFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._fh = None

    def get(self, name: str) -> torch.Tensor:
        """Tensor ``name``, verified against its checksum (and for finiteness when asked)."""
        try:
            tensor = self._fh.get_tensor(name)
        except Exception as err:  # safetensors raises its own error types for truncated / foreign files
            raise CorruptFileError(f"{self.path}: tensor {name!r} of the {self.what} cannot be read ({err})") from err
        if self.verified and tensor_checksum(tensor) != self._sums.get(name):
            raise CorruptFileError(f"{self.path}: tensor {name!r} does not match its checksum (the {self.what} is corrupt)")
        if self.finite and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CorruptFileError(f"{self.path}: tensor {name!r} of the {self.what} holds NaN or infinite values")
        return tensor

    def read_all(self) -> dict[str, torch.Tensor]:
        return {name: self.get(name) for name in self.keys}


def read_tensor_file(path: str | Path, *, meta_key: str, format_version: int, legacy_versions: Iterable[int] = (),
                     finite: bool = False, what: str = "tensor file") -> tuple[dict, dict[str, torch.Tensor]]:
    """``(metadata, tensors)`` of a file :func:`write_tensor_file` wrote, every tensor verified."""
    with TensorFile(path, meta_key=meta_key, format_version=format_version, legacy_versions=legacy_versions,
                    finite=finite, what=what) as fh:
        return fh.meta, fh.read_all()
