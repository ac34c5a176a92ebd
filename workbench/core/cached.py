"""Results kept on disk under a key of everything that produced them, read back instead of recomputed.

A cached result is a file whose name holds a fingerprint of what produced it (model, data, config,
judges, code version: the caller builds the key with :func:`workbench.core.fingerprint.fingerprint`).
:func:`cached` reads it back when it is there and verifies, and otherwise computes it and writes it
atomically with its checksum (:mod:`workbench.core.checked_files`). A file that fails its check is
never a permanent block: it is computed again, with a warning naming the file. A file written before
checksums existed is read once and written again with one.

Example:
    >>> import tempfile, pandas as pd
    >>> calls = []
    >>> def compute():
    ...     calls.append(1)
    ...     return pd.DataFrame({"x": [1.0]})
    >>> with tempfile.TemporaryDirectory() as d:
    ...     first = cached(f"{d}/abc.parquet", compute)
    ...     again = cached(f"{d}/abc.parquet", compute)
    >>> len(calls), again.equals(first)
    (1, True)
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Callable

from workbench.core.checked_files import read_frame, read_json, write_frame, write_json
from workbench.core.tensor_files import CorruptFileError

__all__ = ["cached", "read_cached", "write_cached"]

log = logging.getLogger(__name__)

_FORMATS = {".parquet": (read_frame, write_frame), ".json": (read_json, write_json)}


def _format(path: Path):
    try:
        return _FORMATS[path.suffix]
    except KeyError:
        raise ValueError(f"a cached result is a .parquet table or a .json object, not {path.name!r}") from None


def read_cached(path: str | Path) -> Any | None:
    """The result stored at ``path``, verified; ``None`` when there is none or it is corrupt
    (warned, naming the file, and removed so that it is computed again)."""
    path = Path(path)
    read, write = _format(path)
    if not path.is_file():
        return None
    try:
        return read(path)
    except CorruptFileError as err:
        try:
            value = read(path, legacy_ok=True)
        except CorruptFileError:
            warnings.warn(f"{err}; computing it again", RuntimeWarning, stacklevel=3)
            path.unlink(missing_ok=True)
            return None
        log.info("%s was written before checksums; writing it again with one", path)
        write(path, value)
        return value


def write_cached(path: str | Path, value: Any) -> Path:
    """Store ``value`` (a DataFrame for ``.parquet``, a dict for ``.json``) at ``path`` atomically."""
    path = Path(path)
    return _format(path)[1](path, value)


def cached(path: str | Path | None, compute: Callable[[], Any]) -> Any:
    """``compute()``'s result, read back from ``path`` when it is stored there (``None``: no cache)."""
    if path is None:
        return compute()
    value = read_cached(path)
    if value is None:
        value = compute()
        write_cached(path, value)
    return value
