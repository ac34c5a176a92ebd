import pytest
import torch

from workbench.core.chat import prompt_ids
from workbench.core.generation import SamplingConfig, generate, generate_batch, left_pad, stop_token_ids


def _prompts(model):
    qs = ["What is the capital of France?", "Hi", "How do I boil an egg? Tell me slowly, step by step."]
    return [prompt_ids(model.tokenizer, q, "You are a pirate.")[0] for q in qs]


def test_batched_greedy_equals_one_by_one(tiny_model):
    config = SamplingConfig(max_new_tokens=12, temperature=0)
    prompts = _prompts(tiny_model)
    batched = generate_batch(tiny_model, prompts, config)
    assert batched == [generate_batch(tiny_model, [p], config)[0] for p in prompts]


def test_sampling_is_seeded_per_row_whatever_the_batch(tiny_model):
    config = SamplingConfig(max_new_tokens=10, temperature=1.0, top_p=1.0)
    prompts = _prompts(tiny_model)
    together = generate(tiny_model, prompts, config, row_seeds=[1, 2, 3], batch_size=3, progress=False)
    apart = generate(tiny_model, prompts, config, row_seeds=[1, 2, 3], batch_size=1, progress=False)
    assert together == apart
    other = generate(tiny_model, prompts, config, row_seeds=[4, 5, 6], batch_size=3, progress=False)
    assert other != together


def test_rows_stop_at_end_of_turn(tiny_model):
    config = SamplingConfig(max_new_tokens=40, temperature=1.0, top_p=1.0)
    stops = stop_token_ids(tiny_model.tokenizer)
    outs = generate(tiny_model, _prompts(tiny_model) * 4, config, row_seeds=list(range(12)), progress=False)
    for out in outs:
        assert all(t not in stops for t in out[:-1])
        assert len(out) == 40 or out[-1] in stops


def test_left_pad():
    ids, mask = left_pad([[5, 6], [7]], pad_id=0)
    assert ids.tolist() == [[5, 6], [0, 7]] and mask.tolist() == [[1, 1], [0, 1]]


def test_bad_generation_inputs(tiny_model):
    with pytest.raises(ValueError, match="one seed per prompt"):
        generate_batch(tiny_model, _prompts(tiny_model), SamplingConfig(temperature=0.7))
    with pytest.raises(ValueError, match="exceeds the model's context length"):
        generate_batch(tiny_model, [[1] * 500], SamplingConfig(max_new_tokens=64, temperature=0))
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0)


# --------------------------------------------------------------------------- answers and lambda

def _steerers(tiny_model):
    from tiny_triplets import make_tiny_pairs

    from workbench.steering import TrainConfig, train_steerer

    pairs = make_tiny_pairs(tiny_model)
    config = TrainConfig(steps=30, seed=0)
    s_psr = train_steerer("psr-mse", tiny_model, 1.0, layers=1, pairs=pairs, rank=2, config=config, progress=False)
    a_psr = train_steerer("psr-mse", tiny_model, 1.0, layers=None, pairs=pairs, config=config, progress=False)
    return s_psr, a_psr


def test_lambda_recorded_while_generating_equals_a_teacher_forced_read_out(tiny_model):
    from workbench.core.chat import AlignedPair, prompt_ids
    from workbench.core.generation import generate_answers
    from workbench.steering import lambdas

    s_psr, a_psr = _steerers(tiny_model)
    questions = ["What is the capital of France?", "Hi", "How do I boil an egg? Tell me slowly."]
    config = SamplingConfig(max_new_tokens=8, temperature=0)
    for steerer, alpha in ((s_psr, 2.0), (a_psr, 1.5)):
        answers = generate_answers(tiny_model, questions, steerers=[(steerer, alpha)], config=config, progress=False)
        for q, answer in zip(questions, answers):
            (lam,) = answer.lambdas
            assert lam.shape == (len(steerer.layers), answer.header_len + len(answer.ids), steerer.rank)
            prompt, header = prompt_ids(tiny_model.tokenizer, q)
            seq = tuple(prompt + answer.ids)
            pair = AlignedPair(seq, seq, len(prompt) - header, len(prompt) - header, header)
            expected = lambdas(tiny_model, steerer, pair, alpha=alpha)
            assert torch.allclose(lam, expected, atol=1e-4), (q, (lam - expected).abs().max())
        assert any(float(a.lambdas[0].std()) > 0 for a in answers)  # not a constant read-out


def test_generate_answers_text_seeds_and_no_lambda_without_steering(tiny_model):
    from workbench.core.generation import answer_seed, generate_answers

    questions = ["What is the capital of France?", "Hi"]
    config = SamplingConfig(max_new_tokens=6, temperature=1.0, top_p=1.0)
    answers = generate_answers(tiny_model, questions, instruction="You are a pirate.", config=config, seed=3,
                               progress=False)
    assert [a.lambdas for a in answers] == [None, None]
    assert answers[0].text == tiny_model.tokenizer.decode(answers[0].ids, skip_special_tokens=True).strip()
    prompts = [prompt_ids(tiny_model.tokenizer, q, "You are a pirate.")[0] for q in questions]
    direct = generate(tiny_model, prompts, config, row_seeds=[answer_seed(3, q) for q in questions], progress=False)
    assert [a.ids for a in answers] == direct
    with pytest.raises(ValueError, match="no questions"):
        generate_answers(tiny_model, [], progress=False)


def test_recording_lambda_does_not_change_the_answers(tiny_model):
    from workbench.core.generation import generate_answers

    s_psr, _ = _steerers(tiny_model)
    questions = ["What is the capital of France?", "Hi"]
    config = SamplingConfig(max_new_tokens=8, temperature=0)
    kwargs = dict(steerers=[(s_psr, 2.0)], config=config, progress=False)
    with_lam = generate_answers(tiny_model, questions, record_lambdas=True, **kwargs)
    without = generate_answers(tiny_model, questions, record_lambdas=False, **kwargs)
    assert [a.ids for a in with_lam] == [a.ids for a in without]
    assert all(a.lambdas is None for a in without)


def test_kv_cached_greedy_decoding_equals_recomputing_the_whole_sequence(tiny_model):
    # Guards the KV-cache plumbing: a cache the model never fills makes every decode step see
    # only its own token, which batched-vs-one-by-one comparisons cannot notice.
    config = SamplingConfig(max_new_tokens=10, temperature=0)
    stops = stop_token_ids(tiny_model.tokenizer)
    for prompt, cached in zip(_prompts(tiny_model), generate_batch(tiny_model, _prompts(tiny_model), config)):
        ids, recomputed = list(prompt), []
        with torch.no_grad():
            for _ in range(config.max_new_tokens):
                token = int(tiny_model.bridge(torch.tensor([ids]), return_type="logits")[0, -1].argmax())
                recomputed.append(token)
                ids.append(token)
                if token in stops:
                    break
        assert cached == recomputed


def test_an_unfilled_kv_cache_fails_loudly(tiny_model, monkeypatch):
    from workbench.core import generation

    monkeypatch.setattr(generation, "_kv_argument", lambda model: "not_the_cache")
    with pytest.raises(RuntimeError, match="KV cache holds 0 positions"):
        generate_batch(tiny_model, _prompts(tiny_model)[:1], SamplingConfig(max_new_tokens=3, temperature=0))


def test_generation_can_run_past_end_of_turn(tiny_model):
    stopping = SamplingConfig(max_new_tokens=30, temperature=0)
    fixed = SamplingConfig(max_new_tokens=30, temperature=0, stop_at_end_of_turn=False)
    prompts = [prompt_ids(tiny_model.tokenizer, "What is the capital of France?")[0]] + _prompts(tiny_model)
    short, full = generate_batch(tiny_model, prompts, stopping), generate_batch(tiny_model, prompts, fixed)
    assert all(len(row) == 30 for row in full)
    assert [f[: len(s)] for s, f in zip(short, full)] == short
    assert any(len(s) < 30 for s in short)  # some row did stop early, so the switch mattered
