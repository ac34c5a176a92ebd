"""The float32 model cache: a GGUF dequantized once, stored as safetensors, checked on every read.

A cache directory, ``$WORKBENCH_CACHE_DIR/models/<gguf stem>-<sha256[:16]>-f32-v2``, is keyed by
the SHA-256 of the GGUF's bytes, so another file under the same name gets another cache. It holds
what ``save_pretrained`` writes (weights, config, tokenizer) and a ``manifest.json`` with the
source's digest and each file's size and SHA-256; a directory whose manifest is missing, of another
format, of another source, or whose files do not match it is never read, but rebuilt.

Building it (minutes for 270M parameters on 2 cores) happens in a staging directory beside it,
renamed into place when complete, while holding :func:`workbench.core.locks.directory_lock` on
``models/.locks/<name>``: a second process that wants the same cache waits, then reads what the
first one built, and an interrupted build leaves nothing where the cache goes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from workbench.core.files import cache_root
from workbench.core.gguf import check_gguf, dequantize_gguf
from workbench.core.locks import directory_lock

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 2
MANIFEST = "manifest.json"


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_cache_dir(stem: str, digest: str) -> Path:
    """Where the float32 cache of the GGUF file ``<stem>.gguf`` with SHA-256 ``digest`` lives."""
    return cache_root() / "models" / f"{stem}-{digest[:16]}-f32-v{CACHE_FORMAT_VERSION}"


def check_model_cache(directory: str | Path, source_sha256: str) -> str | None:
    """Why the cache ``directory`` is unusable for the GGUF with this digest, or ``None`` when it is
    complete and every file matches its checksum."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest (never written, or an interrupted write)"
    except (OSError, json.JSONDecodeError) as err:
        return f"unreadable manifest ({err})"
    if not isinstance(manifest, dict) or manifest.get("format_version") != CACHE_FORMAT_VERSION:
        return f"cache format {manifest.get('format_version') if isinstance(manifest, dict) else None!r}, " \
               f"expected {CACHE_FORMAT_VERSION}"
    if manifest.get("source", {}).get("sha256") != source_sha256:
        return "made from a different GGUF file"
    files = manifest.get("files") or {}
    if not files:
        return "manifest lists no files"
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["size"] or sha256_file(path) != expected["sha256"]:
            return f"{name} does not match its checksum"
    return None


def cached_gguf(gguf: Path | Callable[[Path], Path], digest: str, directory: Path, *, progress: bool = True) -> Path:
    """The verified cache ``directory`` of a GGUF with SHA-256 ``digest``, built first when missing
    or unusable.

    Args:
        gguf: the GGUF file, or a function that writes it into the temporary directory it is given
            and returns its path (a model shipped as chunks, assembled only to build the cache).
    """
    problem = check_model_cache(directory, digest) if directory.exists() else "not built yet"
    if problem is None:
        return directory
    with directory_lock(directory.parent / ".locks" / directory.name, purpose=f"building the model cache {directory.name}"):
        problem = check_model_cache(directory, digest) if directory.exists() else "not built yet"
        if problem is None:  # built by another process while this one waited
            return directory
        if directory.exists():
            log.warning("model cache %s is unusable (%s); rebuilding it", directory, problem)
        with tempfile.TemporaryDirectory(prefix="gguf-", dir=directory.parent) as scratch:
            path = gguf if isinstance(gguf, Path) else gguf(Path(scratch))
            _build(path, digest, directory, progress)
    return directory


def _build(gguf: Path, digest: str, directory: Path, progress: bool) -> None:
    """Dequantize ``gguf`` and write the cache atomically (staging directory, then one rename)."""
    info = check_gguf(gguf)
    log.info("dequantizing %s to float32 (once per machine; minutes on a small CPU)", gguf.name)
    steps = tqdm(total=3, desc=f"caching {gguf.name} as float32", disable=not progress)
    seconds = {}
    start = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=directory.name + ".tmp-", dir=directory.parent))
    try:
        steps.set_postfix_str("tokenizer and weights")
        hf_model, tokenizer = dequantize_gguf(gguf, seconds)
        steps.update()
        steps.set_postfix_str("writing safetensors")
        hf_model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        steps.update()
        steps.set_postfix_str("checksums")
        files = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
                 for p in sorted(staging.iterdir()) if p.is_file()}
        seconds["total"] = time.perf_counter() - start
        manifest = {
            "format_version": CACHE_FORMAT_VERSION,
            "source": {"sha256": digest, "name": gguf.name, "architecture": info.architecture,
                       "general_name": info.name, "tensor_types": info.tensor_types},
            "transformers": version("transformers"),
            "seconds": {k: round(v, 1) for k, v in seconds.items()},
            "files": files,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
        steps.update()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        steps.close()
    log.info("cached the float32 model in %s (%.1f s)", directory, time.perf_counter() - start)
