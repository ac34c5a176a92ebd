"""A run directory grows with the same seed and says exactly what differs when it cannot; the base
prompt is a recorded choice, not a hidden convention."""

from __future__ import annotations

import pytest

from workbench.core.chat import base_prompt_text, prompt_ids
from workbench.data.attributes import make_attribute
from workbench.data.triplets import TripletConfig, build_triplets

QUESTIONS = [f"What is thing number {i}?" for i in range(20)]


@pytest.fixture
def attribute():
    return make_attribute("planted", "says arr", ["You are a pirate. Say arr."], QUESTIONS,
                          scorer=lambda response: 100.0 * ("arr" in response.lower()))


def test_a_run_grows_and_reuses_every_stored_sample(tiny_model, attribute, tmp_path, monkeypatch):
    small = build_triplets(tiny_model, attribute, tmp_path, TripletConfig(n_questions=3, max_new_tokens=5), progress=False)
    from workbench.data import triplets as module

    calls = []
    real = module.generate
    monkeypatch.setattr(module, "generate", lambda model, prompts, *a, **k: calls.append(len(prompts)) or real(model, prompts, *a, **k))
    grown = build_triplets(tiny_model, attribute, tmp_path, TripletConfig(n_questions=4, max_new_tokens=5, batch_size=2),
                           progress=False)
    assert calls == [1]  # only the new question was sampled
    assert len(grown.table) == 4
    ids = lambda table: [list(map(int, r)) for r in table["response_ids"]]  # noqa: E731
    assert ids(grown.table)[:3] == ids(small.table)
    fresh = build_triplets(tiny_model, attribute, tmp_path / "fresh", TripletConfig(n_questions=4, max_new_tokens=5),
                           progress=False)
    assert ids(fresh.table) == ids(grown.table)  # the same draws as one run of four
    calls.clear()
    shrunk = build_triplets(tiny_model, attribute, tmp_path, TripletConfig(n_questions=2, max_new_tokens=5), progress=False)
    assert len(shrunk.table) == 2 and calls == []


def test_another_run_is_refused_naming_only_the_keys_that_differ(tiny_model, attribute, tmp_path):
    build_triplets(tiny_model, attribute, tmp_path, TripletConfig(n_questions=2, max_new_tokens=5), progress=False)
    with pytest.raises(ValueError) as err:
        build_triplets(tiny_model, attribute, tmp_path, TripletConfig(n_questions=2, max_new_tokens=5, seed=1),
                       progress=False)
    message = str(err.value)
    assert "config.seed: 0 there, 1 here" in message
    assert "max_new_tokens" not in message and "temperature" not in message


def test_the_base_prompt_is_recorded_and_can_be_an_empty_system_message(tiny_model, attribute, tmp_path):
    tok = tiny_model.tokenizer
    default = build_triplets(tiny_model, attribute, tmp_path / "a", TripletConfig(n_questions=1, max_new_tokens=4),
                             progress=False)
    assert default.meta["base_prompt"] == base_prompt_text(tok, None)
    assert "{question}" in default.meta["base_prompt"]
    empty = build_triplets(tiny_model, attribute, tmp_path / "b",
                           TripletConfig(n_questions=1, max_new_tokens=4, base_system=""), progress=False)
    assert empty.base_system == "" and empty.meta["base_prompt"] != default.meta["base_prompt"]
    ids, _ = prompt_ids(tok, empty.table["question"][0], None, base_system="")
    assert list(empty.table["base_prompt_ids"][0]) == ids
    pair = empty.pairs(tok, only_kept=False)[0]
    assert list(pair.base_ids[: len(ids)]) == ids


def test_make_attribute_keeps_a_split_given_as_a_mapping_and_resplits_a_list():
    from workbench.data.attributes import load_attribute

    pirate = load_attribute("pirate")
    kept = make_attribute("mine", "d", ["Be a pirate."], pirate.splits, scorer=lambda r: 0.0)
    assert all(kept.questions(s) == pirate.questions(s) for s in ("train", "validation", "test"))
    resplit = make_attribute("mine", "d", ["Be a pirate."], pirate.all_questions, scorer=lambda r: 0.0)
    assert resplit.questions("test") != pirate.questions("test")
    with pytest.raises(ValueError, match="splits"):
        make_attribute("mine", "d", ["Be a pirate."], {"train": ["a?"]}, scorer=lambda r: 0.0)


def test_a_template_without_a_system_role_gets_the_instruction_in_the_user_turn(attribute, tmp_path):
    from workbench.core.models import load_model

    gemma = load_model("tiny-random-gemma2")
    run = build_triplets(gemma, attribute, tmp_path, TripletConfig(n_questions=1, max_new_tokens=3), progress=False)
    assert run.meta["config"]["placement"] == "user" and set(run.table["placement"]) == {"user"}
    steered = gemma.tokenizer.decode(list(run.table["steered_prompt_ids"][0]))
    assert "You are a pirate. Say arr." in steered and "system" not in steered
    with pytest.raises(ValueError, match="no system role"):
        build_triplets(gemma, attribute, tmp_path / "s", TripletConfig(n_questions=1, placement="system"), progress=False)
