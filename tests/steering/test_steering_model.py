"""Steerers on the tiny model: hooks on the span, alpha = 0, stacking, lambda read-out, training
through the model (joint A-PSR, PSR-LL), fits from a delta store."""

import pytest
import torch

from workbench.activations.deltas import extract_deltas
from workbench.core.chat import prompt_ids
from workbench.core.generation import SamplingConfig, generate_batch, left_pad
from workbench.core.span import right_pad
from workbench.steering import (
    Span,
    TrainConfig,
    aligned_span_mask,
    make_trainer,
    prefill_span_mask,
    response_nll,
    span_mse,
    train_steerer,
)

LABELS = [1.0, 0.8, 0.9]
FAST = TrainConfig(steps=150, val_fraction=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pairs(tiny_model):
    from tiny_triplets import make_tiny_pairs

    return make_tiny_pairs(tiny_model)


@pytest.fixture(scope="module")
def s_psr(tiny_model, pairs):
    return train_steerer("psr-mse", tiny_model, LABELS, layers=1, pairs=pairs, config=FAST, progress=False)


@pytest.fixture(scope="module")
def a_psr(tiny_model, pairs):
    return train_steerer("psr-mse", tiny_model, LABELS, layers=None, pairs=pairs, config=FAST, progress=False)


def logits_of(model, pairs, which="base"):
    seqs = [p.base_ids if which == "base" else p.steered_ids for p in pairs]
    ids, mask = right_pad(seqs, model.tokenizer.pad_token_id)
    with torch.no_grad():
        return model.bridge(ids, attention_mask=mask)


def test_alpha_zero_gives_exactly_the_unsteered_logits(tiny_model, pairs, s_psr, a_psr):
    plain = logits_of(tiny_model, pairs)
    for steerer in (s_psr, a_psr):
        with steerer.apply(tiny_model, alpha=0.0) as span:
            span.mask = aligned_span_mask(pairs)
            assert torch.equal(logits_of(tiny_model, pairs), plain)
        with steerer.apply(tiny_model, alpha=1.0) as span:
            span.mask = aligned_span_mask(pairs)
            steered = logits_of(tiny_model, pairs)
        assert not torch.equal(steered, plain)


def test_steering_touches_only_the_span(tiny_model, pairs, a_psr):
    plain = logits_of(tiny_model, pairs)
    with a_psr.apply(tiny_model, alpha=1.0) as span:
        span.mask = aligned_span_mask(pairs)
        steered = logits_of(tiny_model, pairs)
    for row, p in enumerate(pairs):  # causal model: positions before the span see no change
        assert torch.equal(steered[row, : p.base_start], plain[row, : p.base_start])
        assert not torch.equal(steered[row, p.base_start : len(p.base_ids)], plain[row, p.base_start : len(p.base_ids)])


def test_hooks_are_removed_on_exit_and_after_an_exception(tiny_model, pairs, s_psr):
    plain = logits_of(tiny_model, pairs)
    with pytest.raises(RuntimeError, match="boom"):
        with s_psr.apply(tiny_model, alpha=1.0):
            raise RuntimeError("boom")
    with pytest.raises(ValueError, match="span.mask must be a bool"):
        with s_psr.apply(tiny_model, alpha=1.0) as span:
            span.mask = torch.ones(1, 2, dtype=torch.bool)  # wrong shape: fails inside the hook
            logits_of(tiny_model, pairs)
    assert all(not hp._forward_hooks for hp in tiny_model.bridge.hook_dict.values())
    assert torch.equal(logits_of(tiny_model, pairs), plain)


def test_two_steerers_stack(tiny_model, pairs, s_psr, a_psr):
    def run(*steerers):
        span = Span(aligned_span_mask(pairs))
        from contextlib import ExitStack

        with ExitStack() as stack:
            for s in steerers:
                stack.enter_context(s.apply(tiny_model, 1.0, span))
            return logits_of(tiny_model, pairs)

    one, other, both = run(s_psr), run(a_psr), run(s_psr, a_psr)
    assert not torch.equal(both, one) and not torch.equal(both, other)


def test_two_constant_vectors_add_up_on_the_span(tiny_model, pairs):
    dim = train_steerer("const-dim", tiny_model, LABELS, layers=1, pairs=pairs, progress=False)
    mse = train_steerer("const-mse", tiny_model, LABELS, layers=1, pairs=pairs, progress=False)
    seen = {}

    def record(key):
        def hook(t, hook=None):
            seen[key] = t.clone()
            return t
        return hook

    span = Span(aligned_span_mask(pairs))
    name = tiny_model.resid_hook(1)
    with tiny_model.bridge.hooks(fwd_hooks=[(name, record("before"))]), dim.apply(tiny_model, 2.0, span), \
            mse.apply(tiny_model, -1.0, span), tiny_model.bridge.hooks(fwd_hooks=[(name, record("after"))]):
        logits_of(tiny_model, pairs)
    added = seen["after"] - seen["before"]
    expected = (2.0 * dim.z[0, 0] - 1.0 * mse.z[0, 0]) * span.mask[..., None]
    torch.testing.assert_close(added, expected, rtol=1e-5, atol=1e-5)


def test_steerer_stacks_with_the_prompt(tiny_model, pairs, s_psr):
    plain = logits_of(tiny_model, pairs, "steered")
    with s_psr.apply(tiny_model, 1.0) as span:
        span.mask = aligned_span_mask(pairs, "steered")
        stacked = logits_of(tiny_model, pairs, "steered")
    for row, p in enumerate(pairs):
        assert torch.equal(stacked[row, : p.steered_start], plain[row, : p.steered_start])
        assert not torch.equal(stacked[row, p.steered_start : len(p.steered_ids)], plain[row, p.steered_start : len(p.steered_ids)])


def test_span_masks():
    from workbench.core.chat import AlignedPair

    p = AlignedPair((1, 2, 3, 4, 5), (1, 9, 9, 2, 3, 4, 5), 2, 4, 1)
    q = AlignedPair((1, 2, 3), (1, 9, 2, 3), 1, 2, 1)
    assert aligned_span_mask([p, q]).int().tolist() == [[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]]
    assert aligned_span_mask([p, q], "steered").int().tolist() == [[0, 0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 0, 0, 0]]
    _, mask = left_pad([[1, 2, 3, 4], [5, 6]], pad_id=0)
    assert prefill_span_mask(mask, 2).int().tolist() == [[0, 0, 1, 1], [0, 0, 1, 1]]
    assert prefill_span_mask(mask, [3, 1]).int().tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]
    with pytest.raises(ValueError, match="header_len 3 of row 1"):
        prefill_span_mask(mask, [1, 3])
    with pytest.raises(ValueError, match="which must be"):
        aligned_span_mask([p], "x")


def greedy(model, prompts, header_lens, steerer=None, alpha=1.0, n=6):
    """A decode loop written the way workbench.core.generation will use steerers."""
    from contextlib import nullcontext

    from workbench.core.generation import forward_with_cache, new_kv_cache

    ids, mask = left_pad(prompts, model.tokenizer.pad_token_id)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    ctx = steerer.apply(model, alpha) if steerer is not None else nullcontext(Span())
    out = []
    with torch.no_grad(), ctx as span:
        span.mask = prefill_span_mask(mask, header_lens)
        cache = new_kv_cache(model)
        logits = forward_with_cache(model, ids, mask, positions, cache)
        span.mask = None  # decode: every new token
        next_pos = positions[:, -1:] + 1
        for _ in range(n):
            token = logits[:, -1].argmax(-1)
            out.append(token)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            logits = forward_with_cache(model, token[:, None], mask, next_pos, cache)
            next_pos = next_pos + 1
    return torch.stack(out, 1).tolist(), logits


def test_generation_with_span_masks(tiny_model, s_psr):
    tok = tiny_model.tokenizer
    prompts = [prompt_ids(tok, q) for q in ("Why is the sky blue?", "How do I boil an egg?")]
    ids = [p for p, _ in prompts]
    heads = [h for _, h in prompts]
    plain, plain_logits = greedy(tiny_model, ids, heads)
    reference = generate_batch(tiny_model, ids, SamplingConfig(max_new_tokens=6, temperature=0))
    assert [r[: len(ref)] for r, ref in zip(plain, reference)] == reference
    zero, zero_logits = greedy(tiny_model, ids, heads, s_psr, alpha=0.0)
    assert zero == plain and torch.equal(zero_logits, plain_logits)
    _, steered_logits = greedy(tiny_model, ids, heads, s_psr, alpha=20.0)
    assert not torch.allclose(steered_logits, plain_logits)


def test_lambdas_read_out(tiny_model, pairs, s_psr, a_psr):
    p = pairs[0]
    lam = a_psr.lambdas(tiny_model, p)
    assert lam.shape == (3, p.span_len, 1) and (lam >= 0).all()
    # at alpha = 0 the read-out is the probe applied to the unsteered activations
    _, cache = tiny_model.bridge.run_with_cache(torch.tensor([p.base_ids]), names_filter=lambda n: n.endswith("resid_post"))
    for i, layer in enumerate(a_psr.layers):
        acts = cache[f"blocks.{layer}.hook_resid_post"][0, p.base_start :]
        torch.testing.assert_close(lam[i], a_psr.lambdas_from_acts(layer, acts), rtol=1e-5, atol=1e-6)
    # with the steerer on, later layers see the earlier interventions
    on = a_psr.lambdas(tiny_model, p, alpha=1.0)
    torch.testing.assert_close(on[0], lam[0])
    assert not torch.allclose(on[2], lam[2])
    assert s_psr.lambdas(tiny_model, list(p.base_ids)).shape == (1, len(p.base_ids), 1)
    assert s_psr.lambdas(tiny_model, p, which="steered").shape == (1, p.span_len, 1)


def test_joint_training_beats_the_layerwise_fit_on_all_layer_mse(tiny_model, pairs, a_psr):
    joint = train_steerer("psr-mse", tiny_model, LABELS, layers=None, pairs=pairs, training="joint", init=a_psr,
                          config=TrainConfig(steps=40, val_fraction=0.0, batch_size=3, eval_every=5), progress=False)
    assert joint.info.training == "joint" and a_psr.info.training == "layerwise"
    layerwise_mse = span_mse(tiny_model, a_psr, pairs, LABELS)
    joint_mse = span_mse(tiny_model, joint, pairs, LABELS)
    assert float(joint_mse.sum()) < 0.95 * float(layerwise_mse.sum())
    assert float(layerwise_mse.sum()) < 3.0  # the layerwise fit itself beats not steering (3 x 1.0)


def test_psr_ll_lowers_the_nll_of_the_prompted_response(tiny_model, pairs, s_psr):
    ll = train_steerer("psr-ll", tiny_model, LABELS, layers=1, pairs=pairs, init=s_psr,
                       config=TrainConfig(steps=30, val_fraction=0.0, batch_size=3, eval_every=5), progress=False)
    assert ll.info.method == "psr-ll" and ll.info.training == "joint" and ll.name == "S-PSR-LL"
    before = response_nll(tiny_model, pairs, s_psr, LABELS)
    after = response_nll(tiny_model, pairs, ll, LABELS)
    assert after < before - 0.1
    assert after < response_nll(tiny_model, pairs)
    assert all(p.requires_grad for p in tiny_model.bridge.parameters())  # flags restored
    assert all(p.grad is None for p in tiny_model.bridge.parameters())


def test_fits_from_a_delta_store_match_the_definitions(tiny_model, pairs, tmp_path):
    store = extract_deltas(tiny_model, pairs, tmp_path / "d", dtype="float32", progress=False)
    s_dim = train_steerer("const-dim", tiny_model, LABELS, layers=2, store=store, progress=False)
    assert torch.equal(s_dim.z[0, 0], store.get("acc", 2, order="store").mean(0))  # bit for bit: the same sum order
    a_dim = train_steerer("const-dim", tiny_model, LABELS, layers=None, store=store, progress=False)
    for i in range(3):
        assert torch.equal(a_dim.z[i, 0], store.get("loc", i, order="store").mean(0))
    assert a_dim.info.scope == "all" and a_dim.info.training == "layerwise"
    # the store and the in-memory extraction give the same training data
    from_pairs = make_trainer("psr-mse", tiny_model, LABELS, layers=1, pairs=pairs, config=FAST, progress=False)
    from_store = make_trainer("psr-mse", tiny_model, LABELS, layers=1, store=store, config=FAST, progress=False)
    a, b = from_pairs.train_data, from_store.train_data
    order_a, order_b = a.seq.argsort(stable=True), b.seq.argsort(stable=True)  # the store groups by length
    assert torch.equal(a.seq[order_a], b.seq[order_b]) and torch.equal(a.alpha[order_a], b.alpha[order_b])
    torch.testing.assert_close(a.delta[:, order_a], b.delta[:, order_b], rtol=1e-4, atol=1e-4)


def test_seeded_training_through_the_model_is_bit_identical(tiny_model, pairs, s_psr):
    config = TrainConfig(steps=6, val_fraction=0.0, batch_size=2, eval_every=3)
    a, b = (train_steerer("psr-ll", tiny_model, LABELS, layers=1, pairs=pairs, init=s_psr, config=config, progress=False)
            for _ in range(2))
    for key in ("z", "w", "b"):
        assert torch.equal(a.params()[key], b.params()[key])


def test_bad_arguments(tiny_model, pairs, s_psr):
    with pytest.raises(IndexError, match="layer index 7 is out of range"):
        train_steerer("psr-mse", tiny_model, LABELS, layers=7, pairs=pairs, progress=False)
    with pytest.raises(ValueError, match="rank must be an integer >= 1, got 0"):
        train_steerer("psr-mse", tiny_model, LABELS, layers=1, pairs=pairs, rank=0, progress=False)
    with pytest.raises(ValueError, match="empty data"):
        train_steerer("psr-mse", tiny_model, LABELS, layers=1, pairs=[], progress=False)
    with pytest.raises(ValueError, match="unknown steering method 'caa'"):
        train_steerer("caa", tiny_model, LABELS, layers=1, pairs=pairs, progress=False)
    with pytest.raises(ValueError, match="training must be 'joint'"):
        train_steerer("psr-ll", tiny_model, LABELS, layers=1, pairs=pairs, training="layerwise", progress=False)
    with pytest.raises(ValueError, match="no joint training"):
        train_steerer("const-dim", tiny_model, LABELS, layers=1, pairs=pairs, training="joint", progress=False)
    with pytest.raises(ValueError, match="soft label of sample 1 must be within"):
        train_steerer("psr-mse", tiny_model, [1.0, 2.0, 1.0], layers=1, pairs=pairs, progress=False)
    with pytest.raises(KeyError, match="no soft label for sample 2"):
        train_steerer("psr-mse", tiny_model, [1.0, 1.0], layers=1, pairs=pairs, progress=False)
    with pytest.raises(ValueError, match="alpha must be finite"):
        with s_psr.apply(tiny_model, float("nan")):
            pass
    with pytest.raises(ValueError, match="rank must be 1"):
        train_steerer("const-mse", tiny_model, LABELS, layers=1, pairs=pairs, rank=2, progress=False)


def test_generation_with_steerers(tiny_model, pairs, a_psr):
    """Steered batched generation: alpha = 0 is the plain model, a strong alpha changes the text,
    and batched greedy output equals one-by-one output."""
    tok = tiny_model.tokenizer
    prompted = [prompt_ids(tok, q) for q in ("What is the capital of France?", "Hi", "How do I boil an egg?")]
    prompts, heads = [p for p, _ in prompted], [h for _, h in prompted]
    greedy = SamplingConfig(max_new_tokens=8, temperature=0)
    plain = generate_batch(tiny_model, prompts, greedy)
    assert generate_batch(tiny_model, prompts, greedy, steerers=[(a_psr, 0.0)], header_lens=heads) == plain
    strong = generate_batch(tiny_model, prompts, greedy, steerers=[(a_psr, 20.0)], header_lens=heads)
    assert strong != plain
    one_by_one = [generate_batch(tiny_model, [p], greedy, steerers=[(a_psr, 20.0)], header_lens=[h])[0]
                  for p, h in zip(prompts, heads)]
    assert strong == one_by_one
    with pytest.raises(ValueError, match="steering needs header_lens"):
        generate_batch(tiny_model, prompts, greedy, steerers=[(a_psr, 1.0)])
    assert not any(hp._forward_hooks for hp in tiny_model.bridge.hook_dict.values())
