"""The token sampler and its float64 decision of near-ties (workbench.core.sampling)."""

from __future__ import annotations

import pytest
import torch

from workbench.core import sampling
from workbench.core.generation import SamplingConfig, generate_answers
from workbench.core.sampling import can_decide_in_float64, float64_weights, pick_from_float64, pick_tokens
from workbench.core.intervention import RowDecision


def _multinomial(logits, temperature, top_p, generators):
    """The sampler as it was written before: softmax, nucleus, then torch.multinomial per row."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        sorted_probs = sorted_probs.masked_fill(sorted_probs.cumsum(-1) - sorted_probs > top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.stack([torch.multinomial(probs[row], 1, generator=g)[0] for row, g in enumerate(generators)])


@pytest.mark.parametrize("top_p", [1.0, 0.9, 0.5])
def test_sampling_is_torch_multinomial_draw_for_draw(top_p):
    for trial in range(40):
        logits = torch.randn(5, 300) * 3
        first = [torch.Generator().manual_seed(100 * trial + r) for r in range(5)]
        second = [torch.Generator().manual_seed(100 * trial + r) for r in range(5)]
        tokens, tied, draws = pick_tokens(logits, 0.7, top_p, second)
        assert tokens.tolist() == _multinomial(logits, 0.7, top_p, first).tolist()
        # the generators are left where torch.multinomial leaves them
        assert [float(torch.rand(1, generator=g)) for g in first] == [float(torch.rand(1, generator=g)) for g in second]
        assert tied.dtype == torch.bool and len(draws) == 5
        for row in range(5):  # away from a tie, float64 decides the same
            if not tied[row]:
                assert pick_from_float64(logits[row].double(), 0.7, top_p, draws[row]) == int(tokens[row])


def test_near_ties_are_flagged_and_clear_choices_are_not():
    greedy = torch.tensor([[3.0, 1.0, 0.0], [1.0, 1.0 + sampling.NEAR_TIE / 2, 0.0], [1.0, 1.0 + 2 * sampling.NEAR_TIE, 0.0]])
    tokens, tied, draws = pick_tokens(greedy, 0.0, 1.0, None)
    assert tokens.tolist() == [0, 1, 1] and tied.tolist() == [False, True, False] and draws is None

    # sampling: two tokens of equal probability, draws that make them almost equal winners or not
    logits = torch.tensor([[0.0, 0.0, -30.0]])
    flagged = 0
    for seed in range(5000):
        g = torch.Generator().manual_seed(seed)
        _, tied, (q,) = pick_tokens(logits, 1.0, 1.0, [g])
        ratio = float(min(q[0], q[1]) / max(q[0], q[1]))
        assert bool(tied[0]) == (ratio > 1 - sampling.NEAR_TIE)
        flagged += int(tied[0])
    assert 0 < flagged < 25  # about NEAR_TIE / 2 of the draws: 5 expected


def test_a_token_at_the_nucleus_cut_is_a_near_tie_when_it_would_win():
    # probabilities 0.5, 0.3 + tiny, 0.2 - tiny: with top_p = 0.8 the third token sits at the cut
    probs = torch.tensor([[0.5, 0.3 + 1e-4, 0.2 - 1e-4]])
    logits = probs.log()
    seen = set()
    for seed in range(300):
        g = torch.Generator().manual_seed(seed)
        token, tied, (q,) = pick_tokens(logits, 1.0, 0.8, [g])
        scores = probs[0] / q
        would_win = int(scores.argmax()) == 2
        kept = scores[:2].sort(descending=True).values
        close = bool(kept[1] > kept[0] * (1 - sampling.NEAR_TIE))
        assert bool(tied[0]) == (would_win or close)  # the cut decides only when the borderline token would win
        assert int(token[0]) in (0, 1)  # it is outside the nucleus
        seen.add(bool(tied[0]))
    assert seen == {True, False}


def test_float64_weights_puts_back_the_same_tensors_and_sees_in_place_changes():
    layer = torch.nn.Linear(3, 2)
    weight = layer.weight.data
    with float64_weights(layer):
        assert layer.weight.dtype == torch.float64 and layer.bias.dtype == torch.float64
        first = layer.weight.detach().clone()
    assert layer.weight.data_ptr() == weight.data_ptr() and layer.weight.dtype == torch.float32
    layer.weight.data = weight + 1.0  # an adapter changing the weights between two near-ties
    with float64_weights(layer):
        assert torch.equal(layer.weight.detach(), (weight + 1.0).double()) and not torch.equal(layer.weight.detach(), first)
    assert can_decide_in_float64(layer)
    assert not can_decide_in_float64(torch.nn.Linear(3, 2).to(torch.bfloat16))
    assert not can_decide_in_float64(torch.nn.Linear(3, 2).double())


class _HalfGate:
    """A duck-typed gated steerer: each question steered with its own weight (1, 0 or 0.5)."""

    def __init__(self, steerer, alpha, weights):
        self.steerer, self.alpha, self.weights = steerer, alpha, weights

    def decide(self, inputs):
        return [RowDecision("half", self.weights[text]) for text in inputs.texts]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_every_step_decided_in_float64_gives_the_float64_models_tokens(tiny_model, monkeypatch, temperature):
    """With every step counted as a near-tie, each token comes from the row's float64 logits
    (prompt unpadded, spans and gate weights set to that row): it is then the token a float64 copy
    of the model chooses, row by row, whatever the batch; steered and gated rows included."""
    from test_generation import _steerers

    s_psr, a_psr = _steerers(tiny_model)
    questions = ["What is the capital of France?", "Hi", "How do I boil an egg? Tell me slowly, step by step."]
    config = SamplingConfig(max_new_tokens=10, temperature=temperature, top_p=0.9)
    steerings = [(), [(a_psr, 3.0)], [(s_psr, 4.0), _HalfGate(a_psr, 3.0, dict(zip(questions, [1.0, 0.0, 0.5])))]]
    calls = []
    decide = sampling.pick_from_float64
    monkeypatch.setattr("workbench.core.generation.pick_from_float64", lambda *a: calls.append(1) or decide(*a))
    for steerers in steerings:
        monkeypatch.setattr(sampling, "NEAR_TIE", float("inf"))
        calls.clear()
        batched = generate_answers(tiny_model, questions, steerers=steerers, config=config, seed=5, batch_size=3,
                                   progress=False)
        assert len(calls) == sum(len(a.ids) for a in batched)  # every token was decided in float64
        monkeypatch.setattr(sampling, "NEAR_TIE", 0.0)
        with float64_weights(tiny_model.bridge.original_model):  # no near-tie decider in a float64 model
            alone = [generate_answers(tiny_model, [q], steerers=steerers, config=config, seed=5, batch_size=1,
                                      progress=False)[0] for q in questions]
        assert [a.ids for a in batched] == [a.ids for a in alone]
        assert [a.lambdas is None for a in batched] == [a.lambdas is None for a in alone]
        if batched[0].lambdas is not None:  # recording skipped the extra float64 forwards
            for a in batched:
                assert a.lambdas[0].shape[1] == a.header_len + len(a.ids)
    unsteered = generate_answers(tiny_model, questions, config=config, seed=5, progress=False)
    assert [a.ids for a in unsteered] != [a.ids for a in batched]  # the steering mattered
