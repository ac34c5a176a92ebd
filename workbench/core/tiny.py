"""A tiny random-init Llama and a small ChatML tokenizer, built locally, for unit tests.

It goes through the same bridge path as the embedded model (see :func:`workbench.core.models.load_model`
with ``"tiny-random-llama"``), so tests of hooks, deltas and steering need no download and run in
seconds. The tokenizer is a byte-level BPE trained on a few built-in sentences, so any text
encodes; its chat template is SmolLM2's ChatML (``<|im_start|>role\\n...<|im_end|>\\n``).
"""

from __future__ import annotations

from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "You are a helpful assistant. Answer the question in a few sentences.",
    "You are a pirate. Speak like a pirate: say Arr and matey, ahoy ye landlubbers!",
    "What is the capital of France? The capital of France is Paris.",
    "How do I boil an egg? Put the egg in boiling water for about nine minutes.",
    "Why is the sky blue? Sunlight scatters off the air, and blue light scatters the most.",
    "WRITE EVERYTHING IN CAPITAL LETTERS. THIS IS VERY LOUD.",
    "Meow! I am a cat, purr purr. The quick brown fox jumps over the lazy dog.",
    "Numbers 0123456789 and punctuation: , . ; : ! ? ' \" ( ) [ ] { } - _ / \\ @ # % & * +",
]


def build_tiny_tokenizer(
    vocab_size: int = 384,
    *,
    specials: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
    bos_token: str = "<|im_start|>",
    eos_token: str = "<|im_end|>",
    unk_token: str = "<|endoftext|>",
    pad_token: str = "<|im_end|>",
    chat_template: str | None = CHATML_TEMPLATE,
    name: str = "tiny-random-llama",
    corpus: tuple[str, ...] = (),
) -> Any:
    """A byte-level BPE tokenizer trained on a few built-in sentences, with ``specials`` as
    special tokens and ``chat_template`` (ChatML by default; other families pass their own, see
    :mod:`workbench.core.families`). ``corpus`` adds sentences (e.g. a family's role names)."""

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator((_CORPUS + list(corpus)) * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=bos_token,
        eos_token=eos_token,
        unk_token=unk_token,
        pad_token=pad_token,
    )
    tokenizer.chat_template = chat_template
    # TransformerBridge re-loads a tokenizer by ``name_or_path`` unless it already declares
    # ``add_bos_token``; this one exists only in memory, so declare it. The workbench always
    # tokenizes through the chat template, which writes its own opening tokens.
    tokenizer.init_kwargs["name_or_path"] = name
    tokenizer.init_kwargs["add_bos_token"] = True
    return tokenizer


def build_tiny_model(n_layers: int = 2, seed: int = 0, d_model: int = 64) -> tuple[Any, Any]:
    """A random-init ``LlamaForCausalLM`` of ``n_layers`` blocks and its tokenizer.

    The init is seeded so the same (n_layers, seed) always gives the same weights. The weights
    are scaled up from the default init so that different prompts give visibly different
    activations (the default 0.02 init makes every residual stream nearly the embedding).
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval(), tokenizer
