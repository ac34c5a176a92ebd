"""Policy gates: decisions per row in one batch, bit for bit, learning, composition, files, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench.core.chat import prompt_ids
from workbench.core.generation import SamplingConfig, generate, generate_answers, generate_batch, left_pad, read_prompt_resid
from workbench.core.intervention import RowDecision
from workbench.core.span import Span
from workbench.steering.gates import (
    ActivationGate,
    AllGate,
    AnyGate,
    GatedSteerer,
    TextGate,
    fit_gate,
    learn_direction,
    load_gate,
    precision_recall_f1,
    prompt_activations,
    search_gate,
)
from workbench.steering.steerer import ConstSteerer, SteererInfo

pytestmark = pytest.mark.usefixtures("one_thread")

GREEDY = SamplingConfig(max_new_tokens=8, temperature=0)
SEA = ["Tell me about ships on the sea.", "How do sailors steer a ship at sea?", "What is a ship's anchor for?",
       "Why do ships float on the ocean?", "How did old ships cross the sea?", "What is the deck of a ship?"]
OTHER = ["How do I bake bread?", "What is a prime number?", "Why is the sky blue?", "How do I plant tomatoes?",
         "What is a verb?", "How does a bicycle work?"]


def const_steerer(model, scale: float = 8.0, seed: int = 1, layers=(0, 1, 2), model_id=None) -> ConstSteerer:
    g = torch.Generator().manual_seed(seed)
    info = SteererInfo("const-dim", "all" if len(layers) > 1 else "single", "layerwise", tuple(layers), 1,
                       model_id or model.model_id, model.d_model, model.n_layers)
    return ConstSteerer(info, scale * torch.randn(len(layers), 1, model.d_model, generator=g))


def ship_rule(text: str) -> bool:
    return "ship" in text.lower()


def _batch(model, questions):
    built = [prompt_ids(model.tokenizer, q) for q in questions]
    return [p for p, _ in built], [h for _, h in built]


# --------------------------------------------------------------------------------------------- the span


def test_span_row_weights_multiply_the_mask_and_broadcast_over_positions():
    resid = torch.zeros(3, 4, 2)
    span = Span(torch.tensor([[0, 0, 1, 1]] * 3, dtype=torch.bool), rows=torch.tensor([1.0, 0.0, 0.5]))
    w = span.weights(resid)
    assert w.shape == (3, 4, 1)
    assert w[:, :, 0].tolist() == [[0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0.5, 0.5]]
    decode = Span(rows=torch.tensor([1.0, 0.0, 0.5])).weights(torch.zeros(3, 1, 2))
    assert decode[:, 0, 0].tolist() == [1.0, 0.0, 0.5]
    assert Span(torch.tensor([[1.0], [0.0], [1.0]])).weights(resid)[:, :, 0].tolist() == [[1] * 4, [0] * 4, [1] * 4]
    with pytest.raises(ValueError, match="span.rows must be a float"):
        Span(rows=torch.ones(2)).weights(resid)


def test_reading_the_prompt_stops_early_and_matches_the_full_forward(tiny_model):
    prompts, _ = _batch(tiny_model, SEA[:3])
    ids, mask = left_pad(prompts, tiny_model.tokenizer.pad_token_id)
    early = read_prompt_resid(tiny_model, ids, mask, [0])
    full = read_prompt_resid(tiny_model, ids, mask, [0, 2])
    assert torch.equal(early[0], full[0]) and set(full) == {0, 2}
    with pytest.raises(IndexError, match="out of range"):
        read_prompt_resid(tiny_model, ids, mask, [7])


# --------------------------------------------------------------------------------------------- bit for bit


def test_mixed_batch_is_bit_identical_to_unsteered_and_to_ungated_rows(tiny_model):
    steerer = const_steerer(tiny_model)
    questions = [SEA[0], OTHER[0], SEA[1], OTHER[1], OTHER[2], SEA[2]]
    prompts, heads = _batch(tiny_model, questions)
    plain = generate_batch(tiny_model, prompts, GREEDY)
    ungated = generate_batch(tiny_model, prompts, GREEDY, steerers=[steerer.at(1.0)], header_lens=heads)
    rule = TextGate(ship_rule, "ships").then(steerer.at(1.0))
    gated = generate_batch(tiny_model, prompts, GREEDY, steerers=[rule], header_lens=heads, texts=questions)
    flagged = [ship_rule(q) for q in questions]
    assert any(flagged) and not all(flagged)
    for row, flag in enumerate(flagged):
        assert gated[row] == (ungated[row] if flag else plain[row])
    assert all(ungated[r] != plain[r] for r in range(len(questions)))  # the steerer does change every row


def test_generate_answers_returns_decisions_and_scores_with_the_answers(tiny_model):
    steerer = const_steerer(tiny_model)
    questions = [OTHER[3], SEA[3], OTHER[4], SEA[4]]
    rule = TextGate(ship_rule, "ships").then(steerer.at(1.0), name="sea rule")
    answers = generate_answers(tiny_model, questions, steerers=[rule], config=GREEDY, progress=False, batch_size=3)
    plain = generate_answers(tiny_model, questions, config=GREEDY, progress=False, batch_size=3)
    steered = generate_answers(tiny_model, questions, steerers=[steerer.at(1.0)], config=GREEDY, progress=False,
                               batch_size=3)
    for a, p, s, q in zip(answers, plain, steered, questions):
        (d,) = a.decisions
        assert d.rule == "sea rule" and d.steered == ship_rule(q) and a.steered == ship_rule(q)
        assert d.score == float(ship_rule(q)) and d.error is None
        assert a.ids == (s.ids if ship_rule(q) else p.ids)
    assert plain[0].decisions is None and plain[0].steered is None


def test_two_rules_at_once_each_row_gets_only_its_own_steerers(tiny_model):
    sea, other = const_steerer(tiny_model, seed=1), const_steerer(tiny_model, seed=2)
    questions = [SEA[0], OTHER[0], SEA[1], "Hello there"]
    prompts, heads = _batch(tiny_model, questions)
    rules = [TextGate(ship_rule, "ships").then(sea.at(1.0)),
             TextGate(lambda t: "?" in t and "ship" not in t.lower(), "questions").then(other.at(1.0))]
    gated = generate_batch(tiny_model, prompts, GREEDY, steerers=rules, header_lens=heads, texts=questions)
    only_sea = generate_batch(tiny_model, prompts, GREEDY, steerers=[sea.at(1.0)], header_lens=heads)
    only_other = generate_batch(tiny_model, prompts, GREEDY, steerers=[other.at(1.0)], header_lens=heads)
    plain = generate_batch(tiny_model, prompts, GREEDY)
    assert [gated[0], gated[1], gated[2], gated[3]] == [only_sea[0], only_other[1], only_sea[2], plain[3]]
    assert only_sea[1] != only_other[1]


def test_activation_gate_in_generation_matches_its_offline_scores(tiny_model):
    steerer = const_steerer(tiny_model)
    gate = fit_gate(tiny_model, SEA, OTHER, layer=1)
    questions = SEA[:2] + OTHER[:2]
    offline = gate.score_texts(tiny_model, questions)
    answers = generate_answers(tiny_model, questions, steerers=[gate.then(steerer.at(1.0))], config=GREEDY,
                               progress=False)
    scores = [a.decisions[0].score for a in answers]
    assert np.allclose(scores, offline, atol=1e-4)
    assert [a.decisions[0].steered for a in answers] == list(gate.flags(offline))


def test_a_text_gate_that_raises_fails_its_row_only(tiny_model):
    steerer = const_steerer(tiny_model)

    def fragile(text):
        if "bread" in text:
            raise RuntimeError("judge timed out")
        return 0.0 if "prime" in text else True

    questions = [OTHER[0], SEA[0], OTHER[1]]
    answers = generate_answers(tiny_model, questions, steerers=[TextGate(fragile).then(steerer.at(1.0))],
                               config=GREEDY, progress=False)
    plain = generate_answers(tiny_model, questions, config=GREEDY, progress=False)
    failed, ok, no = (a.decisions[0] for a in answers)
    assert failed.error == "RuntimeError: judge timed out" and not failed.steered
    assert ok.steered and ok.error is None and not no.steered and no.error is None
    assert answers[0].ids == plain[0].ids and answers[1].ids != plain[1].ids
    bad = TextGate(lambda t: 2.5).decide_texts(["x"])[0]
    assert bad.weight == 0 and "returned 2.5" in bad.error


def test_a_strength_between_zero_and_one_scales_alpha(tiny_model):
    steerer = const_steerer(tiny_model)
    questions = [SEA[0], OTHER[0]]
    prompts, heads = _batch(tiny_model, questions)
    half = generate_batch(tiny_model, prompts, GREEDY, steerers=[TextGate(lambda t: 0.5).then(steerer.at(2.0))],
                          header_lens=heads)
    assert half == generate_batch(tiny_model, prompts, GREEDY, steerers=[steerer.at(1.0)], header_lens=heads)


# --------------------------------------------------------------------------------------------- learning


def test_learn_direction_recovers_a_planted_direction():
    g = torch.Generator().manual_seed(0)
    planted = torch.nn.functional.normalize(torch.randn(64, generator=g), dim=0)
    base = torch.randn(2000, 64, generator=g)
    pos, neg = base[:1000] + 3 * planted, base[1000:] - 1 * planted
    for method in ("mean-diff", "pca"):
        direction, center = learn_direction(pos, neg, method)
        assert torch.nn.functional.cosine_similarity(direction, planted, dim=0) > 0.99
    assert torch.allclose(center, (pos.mean(0) + neg.mean(0)) / 2)
    with pytest.raises(ValueError, match="negative prompt set is empty"):
        learn_direction(pos, torch.zeros(0, 64))


def test_precision_recall_f1():
    assert precision_recall_f1([1, 1, 0, 0], [1, 0, 1, 0]) == (0.5, 0.5, 0.5)
    assert precision_recall_f1([0, 0], [1, 0]) == (0.0, 0.0, 0.0)
    assert precision_recall_f1([1, 0, 1], [1, 0, 1]) == (1.0, 1.0, 1.0)


def test_search_finds_a_separating_gate_on_the_tiny_model(tiny_model):
    sea = [f"The ship ship ship sails the sea sea, question {i}?" for i in range(8)]
    other = [f"Bread and cake recipe number {i}, please." for i in range(8)]
    result = search_gate(tiny_model, sea[:5], other[:5], sea[5:], other[5:], layers=[0, 2])
    assert set(result.table["layer"]) == {0, 2}
    assert result.table["f1"].max() == 1.0 and result.gate.meta["validation"]["f1"] == 1.0
    scores = result.gate.score_texts(tiny_model, sea[5:] + other[5:])
    assert result.gate.flags(scores).tolist() == [True] * 3 + [False] * 3
    assert result.gate.layer in (0, 2)


def test_any_and_all(tiny_model):
    a, b = TextGate(lambda t: "ship" in t, "a"), TextGate(lambda t: "sea" in t, "b")
    texts = ["ship sea", "ship", "sea", "cake"]
    from workbench.core.intervention import GateInputs

    inputs = GateInputs(texts, torch.zeros(4, 1), torch.ones(4, 1), tiny_model, lambda layers: {})
    assert [d.steered for d in (a | b).decide(inputs)] == [True, True, True, False]
    assert [d.steered for d in AllGate([a, b]).decide(inputs)] == [True, False, False, False]
    assert isinstance(a | b, AnyGate) and (a & b).name == "(a and b)"
    failing = TextGate(lambda t: 1 / 0, "broken")
    d = AnyGate([a, failing]).decide(inputs)[1]
    assert d.steered and "broken: ZeroDivisionError" in d.error


# --------------------------------------------------------------------------------------------- files


def test_gate_and_rule_save_and_load(tiny_model, tmp_path):
    gate = fit_gate(tiny_model, SEA, OTHER, layer=2, pool="last")
    back = load_gate(gate.save(tmp_path / "g.safetensors"), tiny_model)
    assert torch.equal(back.direction, gate.direction) and back.threshold == gate.threshold
    assert (back.layer, back.pool, back.comparator) == (2, "last", ">")
    assert np.allclose(back.score_texts(tiny_model, SEA[:2]), gate.score_texts(tiny_model, SEA[:2]))
    steerer = const_steerer(tiny_model)
    rule = gate.then(steerer.at(1.5))
    again = GatedSteerer.load(rule.save(tmp_path / "rule"), tiny_model)
    assert again.alpha == 1.5 and torch.equal(again.steerer.z, steerer.z) and again.name == rule.name
    with pytest.raises(TypeError, match="only activation gates can be saved"):
        TextGate(ship_rule).then(steerer.at(1.0)).save(tmp_path / "text")


def test_a_saved_gate_from_another_version_or_model_is_refused(tiny_model, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from workbench.core.tensor_files import write_tensor_file

    gate = fit_gate(tiny_model, SEA, OTHER, layer=0)
    path = gate.save(tmp_path / "g.safetensors")
    with safe_open(path, framework="pt") as fh:
        meta = json.loads(fh.metadata()["workbench_gate"])
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    save_file(tensors, tmp_path / "old.safetensors", metadata={"workbench_gate": json.dumps({**meta, "format_version": 0})})
    with pytest.raises(ValueError, match="gate format 0; this workbench reads format 2"):
        load_gate(tmp_path / "old.safetensors")
    save_file(tensors, tmp_path / "unchecked.safetensors", metadata={"workbench_gate": json.dumps(meta)})
    with pytest.raises(ValueError, match="unchecked.safetensors: the gate's checksums are missing"):
        load_gate(tmp_path / "unchecked.safetensors")
    plain = {k: v for k, v in meta.items() if k not in ("format_version", "package_version")}
    write_tensor_file(tmp_path / "other.safetensors", tensors, {**plain, "model_id": "gemma"}, meta_key="workbench_gate",
                      format_version=2)
    with pytest.raises(ValueError, match="learned on 'gemma'"):
        load_gate(tmp_path / "other.safetensors", tiny_model)
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"g.safetensors: tensor '\w+' does not match its checksum"):
        load_gate(path)


# --------------------------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_clearly(tiny_model):
    gate = fit_gate(tiny_model, SEA, OTHER, layer=0)
    foreign = const_steerer(tiny_model, model_id="another-model")
    with pytest.raises(ValueError, match="learned on .* but steerer .* was trained on 'another-model'"):
        gate.then(foreign.at(1.0))
    with pytest.raises(IndexError, match="out of range"):
        fit_gate(tiny_model, SEA, OTHER, layer=9)
    with pytest.raises(ValueError, match="gate layer 9 is out of range"):
        ActivationGate(gate.direction, gate.center, 9, 0.0, model_id=gate.model_id, d_model=gate.d_model,
                       n_layers=gate.n_layers)
    with pytest.raises(ValueError, match="positive prompt set is empty"):
        fit_gate(tiny_model, [], OTHER, layer=0)
    with pytest.raises(ValueError, match="validation negative prompt set is empty"):
        search_gate(tiny_model, SEA, OTHER, SEA, [], layers=[0])
    for bad in (float("nan"), float("inf"), "high"):
        with pytest.raises(ValueError, match="threshold must be a finite number"):
            gate.with_threshold(bad)
    with pytest.raises(TypeError, match="steerer.at"):
        gate.then(const_steerer(tiny_model))
    with pytest.raises(ValueError, match="comparator"):
        gate.with_threshold(0.1, "=")


def test_prompt_activations_do_not_depend_on_the_batch(tiny_model):
    together = prompt_activations(tiny_model, SEA + OTHER, [1], batch_size=12)
    apart = prompt_activations(tiny_model, SEA + OTHER, [1], batch_size=1)
    assert together.shape == (12, 1, tiny_model.d_model)
    assert torch.allclose(together, apart, atol=1e-4)


def test_generate_keeps_decisions_in_order_across_batches(tiny_model):
    steerer = const_steerer(tiny_model)
    questions = SEA[:3] + OTHER[:3]
    prompts, heads = _batch(tiny_model, questions)
    rule = TextGate(ship_rule).then(steerer.at(1.0))
    gated = generate(tiny_model, prompts, GREEDY, batch_size=2, progress=False, steerers=[rule], header_lens=heads,
                     texts=questions)
    plain = generate(tiny_model, prompts, GREEDY, batch_size=2, progress=False)
    assert [g == p for g, p in zip(gated, plain)] == [not ship_rule(q) for q in questions]
    assert isinstance(RowDecision("r", 1.0).steered, bool)
