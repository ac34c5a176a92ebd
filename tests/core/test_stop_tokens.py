"""Stop tokens come from the model itself: its eos ids and the special tokens its chat template writes
between an answer and the next question; never from a list shared across families."""

from types import SimpleNamespace

import pytest

from workbench.core.chat import end_of_turn_ids, turn_boundary_ids
from workbench.core.families import CHAT_TEMPLATES, FAMILIES, build_family_tokenizer
from workbench.core.generation import SamplingConfig, generate_batch, stop_token_ids
from workbench.core.models import load_model
from workbench.core.tiny import build_tiny_tokenizer

#: What each family's template writes after an answer: its end of turn, then what opens the next turn.
EXPECTED = {
    "tiny-random-llama3": {"<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"},
    "tiny-random-qwen2": {"<|im_end|>", "<|im_start|>"},
    "tiny-random-gemma2": {"<end_of_turn>", "<start_of_turn>"},
    "tiny-random-gemma3": {"<end_of_turn>", "<start_of_turn>"},
    "tiny-random-mistral": {"</s>", "[INST]"},
    "tiny-random-phi3": {"<|end|>", "<|user|>"},
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_stops_at_its_own_turn_tokens_and_no_others(family):
    tok = build_family_tokenizer(family)
    stops = set(tok.convert_ids_to_tokens(sorted(end_of_turn_ids(tok))))
    assert stops == EXPECTED[family] | {FAMILIES[family].eos}
    others = set().union(*EXPECTED.values()) - EXPECTED[family]
    assert not stops & others  # another family's turn tokens are not stops here, even where the vocabulary has them


def test_the_generation_config_eos_ids_are_stops_too():
    """Real Gemma: the tokenizer's eos is <eos>, a turn ends with <end_of_turn>; the config may list more."""
    tok = build_family_tokenizer("tiny-random-gemma2")
    tok.eos_token = "<eos>"
    bos = tok.convert_tokens_to_ids("<bos>")
    ids = end_of_turn_ids(tok, SimpleNamespace(eos_token_id=[bos]))
    assert {tok.convert_tokens_to_ids("<end_of_turn>"), tok.convert_tokens_to_ids("<eos>"), bos} <= ids
    assert bos not in end_of_turn_ids(tok, SimpleNamespace(eos_token_id=None))


def test_a_token_special_in_one_family_is_text_in_another():
    """Gemma-3's vocabulary has ``</s>`` as an ordinary token (the HTML strikethrough close): a stop
    list shared across families (Mistral's eos is ``</s>``) stopped Gemma wherever it wrote HTML."""
    family = FAMILIES["tiny-random-gemma3"]
    tok = build_tiny_tokenizer(specials=family.specials, bos_token=family.bos, eos_token=family.eos,
                               unk_token=family.unk, pad_token=family.pad, chat_template=family.template)
    tok.add_tokens(["</s>"])  # one token of the vocabulary, as in Gemma-3 (id 212 there)
    strike = tok.convert_tokens_to_ids("</s>")
    assert strike != tok.unk_token_id and tok("</s>", add_special_tokens=False)["input_ids"] == [strike]
    assert strike not in end_of_turn_ids(tok)
    assert tok.convert_tokens_to_ids("<end_of_turn>") in end_of_turn_ids(tok)


def test_a_template_without_special_tokens_or_no_template_adds_nothing():
    tok = build_family_tokenizer("tiny-random-qwen2")
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant: {% endif %}")
    assert turn_boundary_ids(tok) == set()
    assert end_of_turn_ids(tok) == {tok.eos_token_id}
    tok.chat_template = None
    assert turn_boundary_ids(tok) == set()


def test_a_template_that_rejects_three_turns_still_gives_its_end_of_turn():
    tok = build_family_tokenizer("tiny-random-qwen2")
    tok.chat_template = ("{% if messages|length > 2 %}{{ raise_exception('two turns only') }}{% endif %}"
                         + CHAT_TEMPLATES["chatml"])
    assert set(tok.convert_ids_to_tokens(sorted(turn_boundary_ids(tok)))) == {"<|im_end|>"}


def test_generation_stops_at_a_turn_opener_as_at_the_end_of_turn():
    """A model that opens the next turn instead of closing its own (a base model writing
    ``<start_of_turn>``) stops there: forced here by making that token the only likely one."""
    import torch

    model = load_model("tiny-random-gemma3", n_layers=1)
    opener = model.tokenizer.convert_tokens_to_ids("<start_of_turn>")
    assert opener in stop_token_ids(model.tokenizer, model.bridge.original_model.generation_config)
    prompt = model.tokenizer("Why is the sky blue?", add_special_tokens=False)["input_ids"]
    bias = torch.zeros(model.bridge.original_model.lm_head.weight.shape[0])
    bias[opener] = 1e4
    head = model.bridge.original_model.lm_head
    handle = head.register_forward_hook(lambda module, args, out: out + bias)
    try:
        [out] = generate_batch(model, [prompt], SamplingConfig(max_new_tokens=6, temperature=0))
    finally:
        handle.remove()
    assert out == [opener]
