"""The spine's invariants on every tiny model family (random init, real architecture, the family's
own chat format): token alignment, layer l = HF ``hidden_states[l + 1]``, local deltas that add up
to the prompt-steered run, alpha 0 bit-identical, batched = one by one, steering that survives
KV-cache decoding, and the lambda read-out."""

import pytest
import torch
from tiny_triplets import replay_local_deltas

from workbench.activations.extraction import extract_batch
from workbench.core.chat import align, encode_response, has_system_role, prompt_ids, resolve_placement
from workbench.core.families import FAMILIES
from workbench.core.generation import SamplingConfig, generate_answers
from workbench.core.models import load_model
from workbench.core.span import aligned_span_mask, right_pad
from workbench.steering import TrainConfig, lambdas, train_steerer

pytestmark = pytest.mark.usefixtures("one_thread")

N_LAYERS = 3
HEADERS = {  # the assistant turn's opening, as each family's real template writes it
    "tiny-random-llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "tiny-random-qwen2": "<|im_start|>assistant\n",
    "tiny-random-gemma2": "<start_of_turn>model\n",
    "tiny-random-gemma3": "<start_of_turn>model\n",
    "tiny-random-mistral": "[/INST]",  # no generation prompt: the tokens closing the user turn
    "tiny-random-phi3": "<|assistant|>\n",
}
USER_TURN = {  # how the user turn opens, so the instruction's place can be checked
    "tiny-random-llama3": "<|start_header_id|>user<|end_header_id|>\n\n",
    "tiny-random-qwen2": "<|im_start|>user\n",
    "tiny-random-gemma2": "<start_of_turn>user\n",
    "tiny-random-gemma3": "<start_of_turn>user\n",
    "tiny-random-mistral": "[INST] ",
    "tiny-random-phi3": "<|user|>\n",
}
ITEMS = [
    ("What is the capital of France?", "You are a pirate. Speak like a pirate.", "Arr matey, the capital be Paris!"),
    ("How do I boil an egg?", "You are a cat. Meow a lot.", "Meow. Put the egg in boiling water, purr."),
    ("Why is the sky blue?", "WRITE IN CAPITAL LETTERS.", "SUNLIGHT SCATTERS."),
]


def test_six_families_are_registered():
    assert set(HEADERS) == set(FAMILIES)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    model = load_model(request.param, n_layers=N_LAYERS, seed=0)
    tok = model.tokenizer
    pairs = [align(tok, q, i, encode_response(tok, r) + [tok.eos_token_id]) for q, i, r in ITEMS]
    steerer = train_steerer("psr-mse", model, [1.0, 0.8, 0.9], layers=None, pairs=pairs,
                            config=TrainConfig(steps=20, val_fraction=0.0), progress=False)
    return request.param, model, pairs, steerer


def test_model_is_the_real_architecture(family):
    name, model, _, _ = family
    assert type(model.bridge.original_model).__name__ == FAMILIES[name].architecture
    assert model.n_layers == N_LAYERS and model.model_id == f"{name}-L{N_LAYERS}-s0"


def test_chat_format_and_instruction_placement(family):
    name, model, pairs, _ = family
    tok = model.tokenizer
    p = pairs[0]
    header = tok.decode(list(p.span_ids[: p.header_len]))
    assert header == HEADERS[name]
    steered_prompt = tok.decode(list(p.steered_ids[: p.steered_start]))
    question, instruction, _ = ITEMS[0]
    if FAMILIES[name].system_role:
        assert resolve_placement(tok, "auto") == "system"
        assert USER_TURN[name] + question in steered_prompt and USER_TURN[name] + instruction not in steered_prompt
    else:  # no system role: the instruction opens the user turn, and asking for a system turn fails
        assert not has_system_role(tok) and resolve_placement(tok, "auto") == "user"
        assert f"{USER_TURN[name]}{instruction}\n\n{question}" in steered_prompt
        with pytest.raises(ValueError, match="has no system role"):
            prompt_ids(tok, question, instruction, placement="system")
    assert instruction not in tok.decode(list(p.base_ids))


def test_token_alignment(family):
    _, model, pairs, _ = family
    tok = model.tokenizer
    for (q, _, r), p in zip(ITEMS, pairs):
        assert p.base_ids[p.base_start:] == p.steered_ids[p.steered_start:]
        assert list(p.span_ids[p.header_len:]) == encode_response(tok, r) + [tok.eos_token_id]
        assert p.steered_start > p.base_start  # the instruction lengthens the prompt
        assert list(p.base_ids[: p.base_start + p.header_len]) == prompt_ids(tok, q)[0]


def test_layer_l_is_hf_hidden_state_l_plus_1(family):
    _, model, pairs, _ = family
    ids = torch.tensor([pairs[0].steered_ids])
    _, cache = model.bridge.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_resid_post"))
    with torch.no_grad():
        hidden = model.bridge.original_model(ids, output_hidden_states=True).hidden_states
    assert len(hidden) == N_LAYERS + 1
    for layer in range(N_LAYERS - 1):
        torch.testing.assert_close(cache[model.resid_hook(layer)], hidden[layer + 1], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(cache[model.resid_hook(layer)], hidden[layer], atol=1e-3)  # not off by one
    last = cache[model.resid_hook(N_LAYERS - 1)]
    torch.testing.assert_close(model.bridge.original_model.model.norm(last), hidden[-1], rtol=1e-5, atol=1e-5)


def test_local_deltas_added_up_reproduce_the_prompted_run(family):
    _, model, pairs, _ = family
    p = pairs[0]
    acts = extract_batch(model, [p])
    seen = replay_local_deltas(model, p, acts)
    for layer in range(N_LAYERS):
        torch.testing.assert_close(seen[layer], acts.steered[layer], rtol=1e-4, atol=1e-4)
    assert (acts.acc[-1] - acts.loc[-1]).norm() > 1e-2  # the accumulated deltas are another thing


def test_batched_extraction_equals_one_by_one(family):
    _, model, pairs, _ = family
    batched = extract_batch(model, pairs)
    single = [extract_batch(model, [p]) for p in pairs]
    for field in ("base", "acc", "loc"):
        torch.testing.assert_close(getattr(batched, field), torch.cat([getattr(s, field) for s in single], dim=1),
                                   rtol=1e-4, atol=1e-4)
    assert batched.acc.norm(dim=-1).min() > 0


def _logits(model, pairs):
    ids, mask = right_pad([p.base_ids for p in pairs], model.tokenizer.pad_token_id)
    with torch.no_grad():
        return model.bridge(ids, attention_mask=mask)


def test_alpha_zero_is_bit_identical(family):
    _, model, pairs, steerer = family
    plain = _logits(model, pairs)
    with steerer.apply(model, alpha=0.0) as span:
        span.mask = aligned_span_mask(pairs)
        assert torch.equal(_logits(model, pairs), plain)
    with steerer.apply(model, alpha=1.0) as span:
        span.mask = aligned_span_mask(pairs)
        assert not torch.allclose(_logits(model, pairs), plain)


def test_steering_survives_kv_cache_decoding(family):
    """Greedy steered generation with the KV cache = re-running the whole sequence each step with
    the steerer on the span (assistant header + tokens so far)."""
    _, model, _, steerer = family
    question, alpha = ITEMS[0][0], 4.0
    config = SamplingConfig(max_new_tokens=6, temperature=0, stop_at_end_of_turn=False)
    [answer] = generate_answers(model, [question], steerers=[(steerer, alpha)], config=config,
                                record_lambdas=False, progress=False)
    prompt, header = prompt_ids(model.tokenizer, question)
    ids, recomputed, moved = list(prompt), [], False
    for _ in range(config.max_new_tokens):
        mask = torch.zeros((1, len(ids)), dtype=torch.bool)
        mask[0, len(prompt) - header:] = True
        with torch.no_grad():
            plain = model.bridge(torch.tensor([ids]), return_type="logits")[0, -1]
            with steerer.apply(model, alpha=alpha) as span:
                span.mask = mask
                steered = model.bridge(torch.tensor([ids]), return_type="logits")[0, -1]
        moved |= not torch.allclose(steered, plain, atol=1e-3)
        recomputed.append(int(steered.argmax()))
        ids.append(recomputed[-1])
    assert answer.ids == recomputed
    assert moved  # the steerer does change the logits it decodes from


def test_lambda_read_out(family):
    _, model, pairs, steerer = family
    p = pairs[0]
    lam = lambdas(model, steerer, p)
    assert lam.shape == (N_LAYERS, p.span_len, 1) and (lam >= 0).all()
    _, cache = model.bridge.run_with_cache(torch.tensor([p.base_ids]), names_filter=lambda n: n.endswith("resid_post"))
    for i, layer in enumerate(steerer.layers):
        acts = cache[model.resid_hook(layer)][0, p.base_start:]
        torch.testing.assert_close(lam[i], steerer.lambdas_from_acts(layer, acts), rtol=1e-5, atol=1e-6)
    on = lambdas(model, steerer, p, alpha=1.0)
    torch.testing.assert_close(on[0], lam[0])
    assert not torch.allclose(on[-1], lam[-1])  # later layers see the earlier interventions
