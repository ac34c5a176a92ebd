"""Tiny random-init models of the real architectures researchers bring, built offline.

Each family is the Hugging Face architecture (built from its config class at a small size, random
weights) and a local byte-level BPE tokenizer whose chat template reproduces that family's turn
format, written here from the published format (nothing is downloaded). They load by name through
the same bridge path as every other model: ``load_model("tiny-random-qwen2")``.

| name | architecture | turn format | system role |
| --- | --- | --- | --- |
| ``tiny-random-llama3`` | ``LlamaForCausalLM`` | ``<|start_header_id|>role<|end_header_id|>\\n\\n...<|eot_id|>`` | yes |
| ``tiny-random-qwen2`` | ``Qwen2ForCausalLM`` | ChatML, default system prompt | yes |
| ``tiny-random-gemma2`` | ``Gemma2ForCausalLM`` | ``<start_of_turn>user\\n...<end_of_turn>``, ``model`` turn | no (error) |
| ``tiny-random-gemma3`` | ``Gemma3ForCausalLM`` | as Gemma-2; a system message is folded into the user turn | no (folded) |
| ``tiny-random-mistral`` | ``MistralForCausalLM`` | ``[INST] ...[/INST]``, no assistant header | no (folded) |
| ``tiny-random-phi3`` | ``Phi3ForCausalLM`` | ``<|user|>\\n...<|end|>\\n<|assistant|>\\n``; eos after a closed turn | yes |

The weights are drawn with a larger init than the default (as :mod:`workbench.core.tiny` does),
so different prompts give visibly different activations. End of turn: each tokenizer's
``eos_token`` is the family's end-of-turn token, so generation stops there. The templates are
public, by name, in :data:`CHAT_TEMPLATES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from workbench.core.tiny import CHATML_TEMPLATE, build_tiny_tokenizer

LLAMA3_TEMPLATE = (
    "{% for message in messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

GEMMA2_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# Mistral-7B-Instruct-v0.3: a system message goes before the last user message; there is no
# generation prompt (the assistant turn has no header of its own).
MISTRAL_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system_message = messages[0]['content'] %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set loop_messages = messages %}{% endif %}"
    "{{ bos_token }}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}"
    "{% if loop.last and system_message is defined %}{{ '[INST] ' + system_message + '\n\n' + message['content'] + '[/INST]' }}"
    "{% else %}{{ '[INST] ' + message['content'] + '[/INST]' }}{% endif %}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] | trim + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}"
    "{% endif %}"
    "{% endfor %}"
)

PHI3_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '<|end|>\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '<|end|>\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' + message['content'] + '<|end|>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)


#: The chat templates written here, by the name ``load_model(..., chat_template=name)`` takes (for
#: a tokenizer that has none, such as a GGUF of a base model): each family's published turn format.
CHAT_TEMPLATES: dict[str, str] = {
    "chatml": CHATML_TEMPLATE,
    "llama3": LLAMA3_TEMPLATE,
    "gemma2": GEMMA2_TEMPLATE,
    "gemma3": GEMMA3_TEMPLATE,
    "mistral": MISTRAL_TEMPLATE,
    "phi3": PHI3_TEMPLATE,
}


@dataclass(frozen=True)
class Family:
    """One model family: its architecture at a tiny size and its tokenizer's turn format.

    Attributes:
        name: the ``load_model`` name, ``tiny-random-<family>``.
        architecture: the Hugging Face class name (what TransformerBridge dispatches on).
        system_role: whether the chat template has a system turn of its own.
        specials, bos, eos, pad, unk: the tokenizer's special tokens (``eos`` is the end of turn).
        template: the chat template.
        build: ``(vocab_size, n_layers, d_model, special ids) -> model``.
    """

    name: str
    architecture: str
    system_role: bool
    specials: tuple[str, ...]
    bos: str
    eos: str
    pad: str
    unk: str
    template: str
    build: Callable[..., Any]


def _common(vocab: int, n_layers: int, d_model: int, ids: dict) -> dict:
    return dict(vocab_size=vocab, hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2,
                **ids)


def _llama3(vocab, n_layers, d_model, ids):
    return LlamaForCausalLM(LlamaConfig(**_common(vocab, n_layers, d_model, ids), rope_theta=500000.0,
                                        tie_word_embeddings=False))


def _qwen2(vocab, n_layers, d_model, ids):
    return Qwen2ForCausalLM(Qwen2Config(**_common(vocab, n_layers, d_model, ids), tie_word_embeddings=True,
                                        use_sliding_window=False))


def _gemma2(vocab, n_layers, d_model, ids):
    return Gemma2ForCausalLM(Gemma2Config(**_common(vocab, n_layers, d_model, ids), head_dim=d_model // 4,
                                          query_pre_attn_scalar=d_model // 4, sliding_window=8,
                                          final_logit_softcapping=30.0, attn_logit_softcapping=50.0))


def _gemma3(vocab, n_layers, d_model, ids):
    return Gemma3ForCausalLM(Gemma3TextConfig(**_common(vocab, n_layers, d_model, ids), head_dim=d_model // 4,
                                              query_pre_attn_scalar=d_model // 4, sliding_window=8))


def _mistral(vocab, n_layers, d_model, ids):
    return MistralForCausalLM(MistralConfig(**_common(vocab, n_layers, d_model, ids), sliding_window=None,
                                            tie_word_embeddings=False))


def _phi3(vocab, n_layers, d_model, ids):
    return Phi3ForCausalLM(Phi3Config(**_common(vocab, n_layers, d_model, ids), tie_word_embeddings=False))


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("tiny-random-llama3", "LlamaForCausalLM", True,
           ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
           "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>", "<|end_of_text|>", LLAMA3_TEMPLATE, _llama3),
    Family("tiny-random-qwen2", "Qwen2ForCausalLM", True, ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
           "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|endoftext|>", CHATML_TEMPLATE, _qwen2),
    Family("tiny-random-gemma2", "Gemma2ForCausalLM", False,
           ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"),
           "<bos>", "<end_of_turn>", "<pad>", "<unk>", GEMMA2_TEMPLATE, _gemma2),
    Family("tiny-random-gemma3", "Gemma3ForCausalLM", False,
           ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"),
           "<bos>", "<end_of_turn>", "<pad>", "<unk>", GEMMA3_TEMPLATE, _gemma3),
    Family("tiny-random-mistral", "MistralForCausalLM", False, ("<unk>", "<s>", "</s>", "[INST]", "[/INST]"),
           "<s>", "</s>", "</s>", "<unk>", MISTRAL_TEMPLATE, _mistral),
    Family("tiny-random-phi3", "Phi3ForCausalLM", True,
           ("<unk>", "<s>", "</s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"),
           "<s>", "<|end|>", "<|endoftext|>", "<unk>", PHI3_TEMPLATE, _phi3),
]}


def family_names() -> list[str]:
    """The tiny family names ``load_model`` knows."""
    return list(FAMILIES)


def build_family_tokenizer(name: str) -> Any:
    """The local tokenizer of a family, with its chat template."""
    family = _family(name)
    return build_tiny_tokenizer(specials=family.specials, bos_token=family.bos, eos_token=family.eos,
                                unk_token=family.unk, pad_token=family.pad, chat_template=family.template,
                                name=family.name, corpus=("user assistant system model",))


def build_family_model(name: str, n_layers: int = 2, seed: int = 0, d_model: int = 64) -> tuple[Any, Any]:
    """A seeded random-init model of family ``name`` (see :data:`FAMILIES`) and its tokenizer."""
    family = _family(name)
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    tokenizer = build_family_tokenizer(name)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = family.build(len(tokenizer), n_layers, d_model, ids)
    finally:
        torch.random.set_rng_state(state)
    model.config.architectures = [family.architecture]  # what TransformerBridge dispatches on
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.eval(), tokenizer


def _family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; the tiny families are {family_names()}")
    return FAMILIES[name]
