"""No entry point that does not train keeps an autograd graph (issue: memory grew ~150 MB per decode
step at batch 16 when generation ran with grad enabled).

Every forward pass of any module is watched by a global pre-hook that records whether grad mode was
on; the model's weights require grad, so a forward in grad mode would record a graph.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from tiny_triplets import make_tiny_pairs

from workbench.activations.deltas import extract_deltas, pair_magnitudes
from workbench.core.generation import SamplingConfig, generate, generate_answers
from workbench.core.likelihood import mean_response_logprob
from workbench.data.attributes import make_attribute
from workbench.data.triplets import TripletConfig, build_triplets
from workbench.evaluation.faithfulness import faithfulness
from workbench.steering import TrainConfig, train_steerer
from workbench.steering.lambda_tables import lambda_vs_delta

QUESTIONS = ["What is rain?", "Why is the sea salty?", "How do birds fly?"]


@contextmanager
def grad_modes():
    """Collect ``torch.is_grad_enabled()`` at every module forward inside the block."""
    seen: list[bool] = []
    handle = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, args: seen.append(torch.is_grad_enabled()))
    try:
        yield seen
    finally:
        handle.remove()


def assert_no_graph(run):
    assert torch.is_grad_enabled(), "the test must start in grad mode, as a user's notebook does"
    with grad_modes() as seen:
        out = run()
    assert seen, "no forward pass was watched"
    assert not any(seen), f"{sum(seen)} of {len(seen)} module forwards ran with grad enabled"
    return out


@pytest.fixture(scope="module")
def steerer(tiny_model):
    pairs = make_tiny_pairs(tiny_model)
    return train_steerer("psr-mse", tiny_model, 1.0, layers=None, pairs=pairs,
                         config=TrainConfig(steps=3), progress=False)


def test_the_weights_require_grad_so_the_watch_can_fail(tiny_model):
    assert any(p.requires_grad for p in tiny_model.bridge.parameters())
    with grad_modes() as seen:
        tiny_model.bridge(torch.tensor([[1, 2, 3]]), return_type=None)
    assert any(seen)  # a plain forward in grad mode is seen as one (HF's rotary embedding runs no_grad itself)


def test_generation_entry_points_run_without_a_graph(tiny_model, steerer):
    from workbench.core.chat import prompt_ids

    built = [prompt_ids(tiny_model.tokenizer, q) for q in QUESTIONS]
    config = SamplingConfig(max_new_tokens=6, temperature=0.7)
    assert_no_graph(lambda: generate(tiny_model, [p for p, _ in built], config, row_seeds=[1, 2, 3], progress=False))
    answers = assert_no_graph(lambda: generate_answers(tiny_model, QUESTIONS, steerers=[steerer.at(1.0)], config=config,
                                                       progress=False))
    assert all(lam[0].requires_grad is False for a in answers for lam in [a.lambdas])


def test_data_and_measurement_entry_points_run_without_a_graph(tiny_model, steerer, tmp_path):
    pairs = make_tiny_pairs(tiny_model)
    attribute = make_attribute("planted", "says arr", ["You are a pirate. Say arr."], [f"Question {i}?" for i in range(12)],
                               scorer=lambda response: 100.0 * ("arr" in response.lower()))
    assert_no_graph(lambda: build_triplets(tiny_model, attribute, tmp_path / "t",
                                           TripletConfig(n_questions=2, max_new_tokens=6), progress=False))
    assert_no_graph(lambda: extract_deltas(tiny_model, pairs, tmp_path / "d", progress=False))
    assert_no_graph(lambda: pair_magnitudes(tiny_model, pairs))
    assert_no_graph(lambda: mean_response_logprob(tiny_model, QUESTIONS[:2], ["Rain is water.", "Salt."]))
    assert_no_graph(lambda: steerer.lambdas(tiny_model, pairs[0]))
    assert_no_graph(lambda: lambda_vs_delta(tiny_model, steerer, pairs))
    assert_no_graph(lambda: faithfulness(tiny_model, pairs, {"A-PSR": (steerer, 1.0)}))
