"""Stage 0, the model plumbing every other stage stands on: loading models (the embedded
SmolLM2-135M, the packaged Gemma-3-270M, any GGUF file or Hugging Face checkpoint, the tiny random
families) with an identity by content, chat templates, chat formatting and token alignment, the
steered span and its masks, the intervention protocol (core.intervention), batched generation with
the KV cache and its sampler, likelihood, atomic files and the
cache root, the one fingerprint helper every cache key uses, and the checks every public input goes
through."""

from workbench.core.chat import (
    AlignedPair,
    align,
    build_messages,
    encode_response,
    end_of_turn_ids,
    has_system_role,
    prompt_ids,
    resolve_placement,
)
from workbench.core.checks import check_int, check_layers, check_number, check_str_sequence
from workbench.core.files import atomic_path, atomic_write_bytes, atomic_write_json, cache_root
from workbench.core.fingerprint import fingerprint, sample_seed
from workbench.core.generation import Generation, SamplingConfig, generate, generate_answers, generate_batch
from workbench.core.likelihood import logprob_fn, mean_response_logprob
from workbench.core.models import EMBEDDED_MODEL, GEMMA_MODEL, TINY_MODEL, LoadedModel, load_model, wrap_model
from workbench.core.span import Span, aligned_span_mask, prefill_span_mask, right_pad
from workbench.core.templates import attach_chat_template

__all__ = [
    "EMBEDDED_MODEL", "GEMMA_MODEL", "TINY_MODEL", "AlignedPair", "Generation", "LoadedModel", "SamplingConfig", "Span", "align",
    "aligned_span_mask", "atomic_path", "attach_chat_template", "atomic_write_bytes", "atomic_write_json", "build_messages",
    "cache_root", "check_int", "check_layers", "check_number", "check_str_sequence",
    "encode_response", "end_of_turn_ids", "fingerprint", "has_system_role", "generate", "generate_answers", "generate_batch", "load_model", "logprob_fn",
    "mean_response_logprob", "prefill_span_mask", "prompt_ids", "resolve_placement", "right_pad", "sample_seed", "wrap_model",
]
