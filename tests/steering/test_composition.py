"""A steerer at a strength is a value; steerers of one form add up to one steerer."""

from __future__ import annotations

import pytest
import torch
from tiny_triplets import make_tiny_pairs

from workbench.core.chat import prompt_ids
from workbench.core.generation import SamplingConfig, generate
from workbench.steering import ConstSteerer, PSRSteerer, SteererAt, SteererInfo, load_steerer, make_steerer

D = 8


def psr(layers, rank=1, seed=0, model_id="m", n_layers=4):
    g = torch.Generator().manual_seed(seed)
    shape = (len(layers), rank, D)
    info = SteererInfo("psr-mse", "single" if len(layers) == 1 else "all", "layerwise", tuple(layers), rank, model_id, D,
                       n_layers)
    return PSRSteerer(info, torch.randn(shape, generator=g), torch.randn(shape, generator=g),
                      torch.randn(shape[:2], generator=g))


def const(layers, seed=0):
    info = SteererInfo("const-dim", "single" if len(layers) == 1 else "all", "layerwise", tuple(layers), 1, "m", D, 4)
    return ConstSteerer(info, torch.randn((len(layers), 1, D), generator=torch.Generator().manual_seed(seed)))


def test_a_steerer_at_a_strength_is_a_checked_value():
    s = psr([1])
    assert s.at(1.5) == SteererAt(s, 1.5) and (2 * s).alpha == 2.0 and (s * 0.5).alpha == 0.5
    steerer, alpha = s.at(0.25)  # unpacks like the (steerer, alpha) pairs of older code
    assert steerer is s and alpha == 0.25
    with pytest.raises(ValueError, match="finite"):
        s.at(float("nan"))
    with pytest.raises(ValueError, match="outside the sane range"):
        1000 * s


def test_psr_steerers_add_up_to_one_of_higher_rank_with_the_summed_intervention():
    a, b = psr([1, 2], rank=1, seed=0), psr([2, 3], rank=2, seed=1)
    both = a + b
    assert both.rank == 3 and both.layers == (1, 2, 3) and both.info.scope == "all"
    acts = torch.randn(5, D)
    for layer in (1, 2, 3):
        want = sum(s.delta(layer, acts) for s in (a, b) if layer in s.layers)
        torch.testing.assert_close(both.delta(layer, acts), want)
    assert "composed_of" in both.info.config


def test_constant_vectors_add_to_one_vector_and_forms_do_not_mix():
    a, b = const([1], seed=0), const([1], seed=1)
    both = a + b
    assert both.rank == 1 and torch.equal(both.z, a.z + b.z)
    with pytest.raises(TypeError, match="different forms"):
        a + psr([1])
    with pytest.raises(ValueError, match="different models"):
        psr([1]) + psr([1], model_id="other")


def test_a_sum_saves_and_loads(tmp_path):
    both = psr([0], seed=2) + psr([0], seed=3)
    again = load_steerer(both.save(tmp_path / "sum.safetensors"))
    assert again.rank == 2 and all(torch.equal(again.params()[k], both.params()[k]) for k in ("z", "w", "b"))


def test_generate_takes_steerers_at_a_strength_like_pairs(tiny_model):
    pairs = make_tiny_pairs(tiny_model)
    from workbench.steering import train_steerer

    s = train_steerer("const-dim", tiny_model, 1.0, layers=1, pairs=pairs, progress=False)
    built = [prompt_ids(tiny_model.tokenizer, q) for q in ("What is rain?", "Why?")]
    run = lambda steerers: generate(tiny_model, [p for p, _ in built], SamplingConfig(max_new_tokens=6, temperature=0),  # noqa: E731
                                    steerers=steerers, header_lens=[h for _, h in built], progress=False)
    assert run([s.at(3.0)]) == run([(s, 3.0)]) == run([3.0 * s])
    assert run([s.at(3.0)]) != run([])  # it does steer
    assert run([s.at(0.0)]) == run([])
    assert make_steerer(s.info, s.z).name == "Const-DiM"
