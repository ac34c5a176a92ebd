"""What a model is, by content: the id written into every artefact made with it.

A model's id is a readable name and a fingerprint, ``gemma3_text-268m@3f9c0a1b2d4e``: the name is
its ``model_type`` and parameter count, the fingerprint a SHA-256 over what decides its numbers,
never over where it was loaded from:

- the config as the installed transformers reads it (``config.to_dict()`` without paths, versions,
  dtype and run-time switches) and the generation config's token ids;
- every tensor of the state dict: its name, shape and dtype, and a sample of its values in float32
  (one element per row, at a position that moves with the row, plus 4,096 elements spread evenly);
- the tokenizer: its size, special and added tokens, 4,096 vocabulary entries spread evenly, the
  ids of a fixed probe text, and the chat template.

So the same checkpoint loaded from a relative path, an absolute path, a copy elsewhere or a GGUF's
float32 cache gets the same id, and a different model saved at the same path gets another one.
What the sample cannot see is a change that touches none of the sampled elements (one per row of
every tensor; a fine-tune, a merged LoRA, a changed norm or a ROME edit all do). Weights loaded in
another dtype (a float32 checkpoint in bfloat16) have other values, hence another id.

Cost: a few gathers per tensor, no pass over the weights: measured on Gemma-3-270M (236 tensors)
in the README's *Bring your own model*.

Example:
    >>> from workbench.core.tiny import build_tiny_model
    >>> hf, tok = build_tiny_model(n_layers=1, seed=0)
    >>> content_model_id(hf, tok).startswith("llama-1m@")
    True
    >>> content_model_id(hf, tok) == content_model_id(*build_tiny_model(n_layers=1, seed=0))
    True
    >>> content_model_id(hf, tok) == content_model_id(*build_tiny_model(n_layers=1, seed=1))
    False
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from typing import Any, Iterator

import torch

#: Config keys that say how or where the model was loaded, not what it computes.
_VOLATILE_CONFIG = frozenset({
    "_name_or_path", "name_or_path", "_model_name_or_path", "_commit_hash", "transformers_version", "dtype",
    "torch_dtype", "_attn_implementation", "_attn_implementation_autoset", "_attn_implementation_internal",
    "attn_implementation", "quantization_config", "use_cache", "output_hidden_states", "output_attentions",
    "return_dict", "_experts_implementation", "experts_implementation",
})
_SPREAD = 4096
_PROBE = ("Hello, world! The quick brown fox: 0123456789, ünïcödé, 中文, emoji 🙂.\n\tTwo  spaces, "
          "'quotes', <b>tags</b></s> and code: def f(x): return x ** 2")


def readable_name(hf_model: Any) -> str:
    """``{model_type}-{parameters}``, e.g. ``gemma3_text-268m`` or ``llama-8.0b``."""
    n = sum(p.numel() for p in hf_model.parameters())
    size = f"{n / 1e9:.1f}b" if n >= 1e9 else f"{max(1, round(n / 1e6))}m"
    return f"{getattr(hf_model.config, 'model_type', None) or type(hf_model).__name__.lower()}-{size}"


def content_model_id(hf_model: Any, tokenizer: Any, length: int = 12) -> str:
    """The id of a loaded model: ``readable_name@fingerprint`` (see the module docstring)."""
    return f"{readable_name(hf_model)}@{model_fingerprint(hf_model, tokenizer, length)}"


def model_fingerprint(hf_model: Any, tokenizer: Any, length: int = 12) -> str:
    """Hex digest of the model's config, sampled tensors and tokenizer (see the module docstring)."""
    digest = hashlib.sha256()
    digest.update(_json(config_identity(hf_model)))
    with _one_thread():  # thousands of tiny gathers: a second OpenMP thread only spins (10-50x slower)
        for name, tensor in sorted(hf_model.state_dict().items()):
            values = _tensor_values(hf_model, name, tensor)
            digest.update(_json([name, list(values.shape), str(values.dtype)]))
            digest.update(tensor_sample(values))
    digest.update(_json(tokenizer_identity(tokenizer)))
    return digest.hexdigest()[:length]


def config_identity(hf_model: Any) -> dict:
    """The config's computation-relevant fields and the generation config's token ids."""
    config = {k: v for k, v in hf_model.config.to_dict().items() if k not in _VOLATILE_CONFIG}
    generation = getattr(hf_model, "generation_config", None)
    tokens = {k: getattr(generation, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    return {"config": config, "generation": tokens}


def tensor_sample(tensor: torch.Tensor) -> bytes:
    """The bytes of a float32 sample of ``tensor``: one element per row (the row's position times a
    large odd number, modulo the row length) and ``_SPREAD`` elements spread evenly; the whole
    tensor when it is small. Nothing is copied but the sample."""
    tensor = tensor.detach()
    n = tensor.numel()
    if n <= 2 * _SPREAD:
        picked = tensor.reshape(-1)
    else:
        device = tensor.device
        spread = torch.arange(_SPREAD, device=device) * (n - 1) // (_SPREAD - 1)
        if tensor.dim() > 1:
            rows, inner = tensor.shape[0], n // tensor.shape[0]
            r = torch.arange(rows, device=device)
            spread = torch.cat([r * inner + (r * 2654435761) % inner, spread])
        picked = tensor.view(-1)[spread] if tensor.is_contiguous() else tensor[torch.unravel_index(spread, tensor.shape)]
    if picked.is_floating_point() or picked.is_complex():
        picked = picked.float()
    return picked.cpu().contiguous().view(torch.uint8).numpy().tobytes()


def tokenizer_identity(tokenizer: Any) -> dict:
    """Size, special and added tokens, an even sample of the vocabulary, a probe text's ids, the template."""
    size = len(tokenizer)
    ids = sorted({i * (size - 1) // (_SPREAD - 1) for i in range(_SPREAD)})
    added = {int(i): [str(t.content), bool(t.special)] for i, t in tokenizer.added_tokens_decoder.items()}
    return {
        "size": size,
        "specials": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
        "special_ids": sorted(int(i) for i in tokenizer.all_special_ids),
        "added": hashlib.sha256(_json(sorted(added.items()))).hexdigest(),
        "sample": tokenizer.convert_ids_to_tokens(ids),
        "probe": [int(i) for i in tokenizer(_PROBE, add_special_tokens=False)["input_ids"]],
        "chat_template": tokenizer.chat_template if isinstance(tokenizer.chat_template, (str, type(None)))
        else json.dumps(tokenizer.chat_template, sort_keys=True),
    }


def _tensor_values(hf_model: Any, name: str, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``, or where a device map offloaded it to disk (a ``meta`` placeholder), its values
    as accelerate's hook reads them back."""
    if tensor.device.type != "meta":
        return tensor
    parts = name.split(".")
    for cut in range(len(parts) - 1, -1, -1):
        module = hf_model.get_submodule(".".join(parts[:cut])) if cut else hf_model
        weights = getattr(getattr(module, "_hf_hook", None), "weights_map", None)
        if weights is not None:
            try:
                return weights[".".join(parts[cut:])]
            except KeyError:
                continue
    raise ValueError(f"cannot fingerprint {name}: it is on the meta device and no offload hook holds its values")


@contextmanager
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
