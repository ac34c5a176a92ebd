"""JSON records and tables that carry their own checksum, written atomically and verified when read.

- :func:`write_json` / :func:`read_json`: a JSON object with one more key, ``"checksum"``, the SHA-256
  of the canonical encoding of the rest. Any other reader sees the object as it was (plus that key).
- :func:`write_frame` / :func:`read_frame`: a parquet table with a content checksum in its schema
  metadata (and parquet's own page checksums), of the table as it reads back.

A read that does not verify (a flipped byte, a truncated or foreign file) raises
:class:`~workbench.core.tensor_files.CorruptFileError` naming the file; a missing file
``FileNotFoundError``. Tensor files have their own helper, :mod:`workbench.core.tensor_files`.

Example:
    >>> import tempfile, pandas as pd
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_json(f"{d}/run.json", {"n": 3})
    ...     _ = write_frame(f"{d}/t.parquet", pd.DataFrame({"x": [1.5, 2.5]}))
    ...     read_json(f"{d}/run.json"), read_frame(f"{d}/t.parquet")["x"].tolist()
    ({'n': 3}, [1.5, 2.5])
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.core.files import atomic_write_bytes
from workbench.core.fingerprint import fingerprint
from workbench.core.tensor_files import CorruptFileError

__all__ = ["CHECKSUM_FIELD", "frame_checksum", "read_frame", "read_json", "write_frame", "write_json"]

CHECKSUM_FIELD = "checksum"
_FRAME_KEY = b"workbench_checksum"


def _json_checksum(obj: Mapping) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True).encode("utf-8")).hexdigest()


def write_json(path: str | Path, obj: Mapping[str, Any]) -> Path:
    """Write the JSON object ``obj`` with its checksum, atomically."""
    if not isinstance(obj, Mapping):
        raise TypeError(f"write_json writes a JSON object (a dict), got {type(obj).__name__}")
    body = {k: v for k, v in obj.items() if k != CHECKSUM_FIELD}
    body = json.loads(json.dumps(body))  # what a reader will see (tuples as lists, keys as strings)
    path = Path(path)
    atomic_write_bytes(path, json.dumps({**body, CHECKSUM_FIELD: _json_checksum(body)}, indent=2, sort_keys=True).encode())
    return path


def read_json(path: str | Path, *, legacy_ok: bool = False) -> dict:
    """The object :func:`write_json` wrote, verified; without the ``checksum`` key.

    ``legacy_ok`` accepts a plain JSON object without a checksum (a file written before checksums
    existed); its caller should write it again with one.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CorruptFileError(f"{path} is not text (corrupt): {err}") from err
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise CorruptFileError(f"{path} is not valid JSON (corrupt or truncated): {err}") from err
    if not isinstance(obj, dict):
        raise CorruptFileError(f"{path} holds a JSON {type(obj).__name__}, not the object the workbench wrote")
    stored = obj.pop(CHECKSUM_FIELD, None)
    if stored is None:
        if legacy_ok:
            return obj
        raise CorruptFileError(f"{path} has no checksum: it was not written by this workbench, or was edited")
    if stored != _json_checksum(obj):
        raise CorruptFileError(f"{path} does not match its checksum (the file is corrupt or was edited)")
    return obj


def frame_checksum(frame: pd.DataFrame) -> str:
    """SHA-256 of a table's column names and values (what a reader gets back)."""
    return fingerprint([str(c) for c in frame.columns], [frame.iloc[:, i].tolist() for i in range(frame.shape[1])],
                       length=64)


def _parquet_bytes(frame: pd.DataFrame, checksum: str | None) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if checksum is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _FRAME_KEY: checksum.encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, write_page_checksum=True)
    return buffer.getvalue()


def _parquet_frame(data: bytes) -> tuple[pd.DataFrame, bytes | None]:
    table = pq.read_table(io.BytesIO(data), page_checksum_verification=True)
    return table.to_pandas(), (table.schema.metadata or {}).get(_FRAME_KEY)


def write_frame(path: str | Path, frame: pd.DataFrame) -> Path:
    """Write ``frame`` (index dropped) as parquet with its checksum, atomically."""
    frame = frame.reset_index(drop=True)
    checksum = frame_checksum(_parquet_frame(_parquet_bytes(frame, None))[0])  # of the table as it reads back
    path = Path(path)
    atomic_write_bytes(path, _parquet_bytes(frame, checksum))
    return path


def read_frame(path: str | Path, *, legacy_ok: bool = False) -> pd.DataFrame:
    """The table :func:`write_frame` wrote, verified (``legacy_ok``: accept one without a checksum)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        frame, stored = _parquet_frame(data)
        actual = frame_checksum(frame)
    except Exception as err:  # pyarrow raises its own error types for truncated / corrupt files
        raise CorruptFileError(f"{path} is not a readable parquet table (corrupt or truncated): {err}") from err
    if stored is None:
        if legacy_ok:
            return frame
        raise CorruptFileError(f"{path} has no checksum: it was not written by this workbench")
    if stored.decode(errors="replace") != actual:
        raise CorruptFileError(f"{path} does not match its checksum (the file is corrupt)")
    return frame
