import pytest

from workbench.core.chat import AlignedPair, align, build_messages, encode_response, prompt_ids


def test_instruction_goes_to_system_or_user_prefix():
    assert build_messages("Q?", "Be a pirate.") == [
        {"role": "system", "content": "Be a pirate."}, {"role": "user", "content": "Q?"}]
    assert build_messages("Q?", "Be a pirate.", placement="user") == [{"role": "user", "content": "Be a pirate.\n\nQ?"}]
    assert build_messages("Q?") == [{"role": "user", "content": "Q?"}]
    with pytest.raises(ValueError, match="unknown instruction placement 'middle'"):
        build_messages("Q?", "x", placement="middle")


@pytest.mark.parametrize("question,instruction", [("", "Be a pirate."), ("   \n", "Be a pirate."), ("Q?", " ")])
def test_empty_question_or_instruction_is_refused(question, instruction):
    with pytest.raises(ValueError, match="must be a non-empty string"):
        build_messages(question, instruction)


def test_prompt_ends_with_the_assistant_header(tiny_model):
    tok = tiny_model.tokenizer
    ids, header_len = prompt_ids(tok, "What is the capital of France?")
    assert tok.decode(ids[-header_len:]) == "<|im_start|>assistant\n"


@pytest.mark.parametrize("placement", ["system", "user"])
def test_align_appends_the_same_response_ids_to_both_prompts(tiny_model, placement):
    tok = tiny_model.tokenizer
    response = encode_response(tok, " Arr, Paris!")
    pair = align(tok, "Capital of France?", "You are a pirate.", response, placement=placement)
    assert pair.base_ids[pair.base_start:] == pair.steered_ids[pair.steered_start:]
    assert list(pair.span_ids[pair.header_len:]) == response
    assert "You are a pirate." not in tok.decode(pair.base_ids[: pair.base_start])
    assert tok.decode(pair.steered_ids[: pair.steered_start]).count("You are a pirate.") == 1


def test_misaligned_pairs_fail_loudly(tiny_model):
    tok = tiny_model.tokenizer
    pair = align(tok, "Q?", "Be loud.", encode_response(tok, "HELLO THERE"))
    broken = pair.steered_ids[:-1] + (pair.steered_ids[-1] + 1,)
    with pytest.raises(ValueError, match="misaligned tokens: the steered spans differ at span position"):
        AlignedPair(pair.base_ids, broken, pair.base_start, pair.steered_start, pair.header_len)


def test_empty_and_too_long_responses_are_refused(tiny_model):
    tok = tiny_model.tokenizer
    with pytest.raises(ValueError, match="empty response"):
        align(tok, "Q?", "Be loud.", [])
    with pytest.raises(ValueError, match="must be a non-empty string"):
        encode_response(tok, "  ")
    with pytest.raises(ValueError, match="does not fit the model's context"):
        align(tok, "Q?", "Be loud.", [65] * 600, max_len=tiny_model.n_ctx)


def test_model_without_chat_template_is_refused(tiny_model):
    from workbench.core.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    tok.chat_template = None
    with pytest.raises(ValueError, match="has no chat template"):
        prompt_ids(tok, "Q?")
