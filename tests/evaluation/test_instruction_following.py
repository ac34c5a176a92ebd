"""Instruction following (IFEval-style): the instruction file and its validation, strict and loose
checks on hand-written answers, the instruction as a judge (100 or 0) and as an attribute, the
training-sample filter (through the triplet builder), and the wiring of the comparison (through the
comparison's Evaluator) on planted answers and in small real runs on the tiny model."""

from __future__ import annotations

import doctest
import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import workbench.data.instructions as instructions_module
import workbench.evaluation.instruction_following as inf
from workbench.core.chat import encode_response
from workbench.core.fingerprint import sample_seed
from workbench.core.generation import Generation, SamplingConfig
from workbench.data import triplets
from workbench.data.instructions import instruction_attribute, instruction_questions
from workbench.data.triplets import TripletSet
from workbench.evaluation import comparison
from workbench.evaluation.instruction_following import (
    SUMMARY_COLUMNS,
    Instruction,
    check,
    check_loose,
    default_instructions,
    get_instruction,
    load_instructions,
    run_instruction_following,
    sample_training_pairs,
    score_responses,
)
from workbench.evaluation.strength import bootstrap_ci
from workbench.judges import ifeval
from workbench.judges.base import Judge
from workbench.judges.ifeval import IFEvalJudge
from workbench.judges.offline import FunctionJudge

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN_Q = list(instruction_questions()["train"])
VAL_Q = list(instruction_questions()["validation"])
TEST_Q = list(instruction_questions()["test"])


def entry(**changes):
    base = {"id": "no_commas", "text": "Never use commas.", "checker": "punctuation:no_comma", "kwargs": {},
            "default": True, "notes": "n"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not DROP}


DROP = object()


def write(tmp_path, instructions, **top):
    path = tmp_path / "instructions.json"
    path.write_text(json.dumps({"version": 1, "instructions": instructions, **top}), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the instruction file


def test_bundled_file_loads_and_defaults_are_measured():
    bundled = load_instructions()
    ids = [i.id for i in bundled]
    assert len(ids) == len(set(ids)) >= 8
    defaults = default_instructions()
    assert 3 <= len(defaults) < len(bundled)
    assert {i.id for i in defaults} <= set(ids) and all(i.default for i in defaults)
    for ins in bundled:  # every entry carries its measured numbers
        assert re.search(r"prompt \d+% \(\d+/18\), no instruction \d+% \(\d+/18\)", ins.notes), ins.id
    # the set stays varied: several kinds of checker among the defaults
    assert len({i.checker.split(":")[0] for i in defaults}) >= 3
    assert get_instruction(ids[0]) == bundled[0]
    with pytest.raises(ValueError, match="unknown instruction 'nope'"):
        get_instruction("nope")


def test_a_valid_file_round_trips(tmp_path):
    items = [entry(), entry(id="short", text="Be brief.", checker="length_constraints:number_words",
                            kwargs={"num_words": 5, "relation": "less than"}, default=False),
             entry(id="start", text="Start with Yes.", checker="ConstrainedStartChecker", kwargs={"starter": "Yes"})]
    loaded = load_instructions(write(tmp_path, items, description="mine"))
    assert [i.id for i in loaded] == ["no_commas", "short", "start"]
    assert [i.id for i in default_instructions(tmp_path / "instructions.json")] == ["no_commas", "start"]
    assert [i.to_json() for i in loaded] == [{**entry(), **item} for item in items]
    assert dict(loaded[1].kwargs) == {"num_words": 5, "relation": "less than"}
    with pytest.raises(TypeError):
        loaded[1].kwargs["num_words"] = 6  # frozen


@pytest.mark.parametrize("top, items, message", [
    ({"version": 2}, [entry()], r"version 2 is not supported"),
    ({"version": "1"}, [entry()], r"version '1' is not supported"),
    ({"version": True}, [entry()], r"version True is not supported"),
    ({"extra": 1}, [entry()], r"unknown field\(s\) \['extra'\]"),
    ({}, [], r"'instructions' must be a non-empty list"),
    ({}, [entry(colour="red")], r"instructions\[0\] \('no_commas'\): unknown field\(s\) \['colour'\]"),
    ({}, [entry(checker=DROP)], r"missing field\(s\) \['checker'\]"),
    ({}, [entry(), entry(id="b"), entry()], r"duplicate instruction id 'no_commas'"),
    ({}, [entry(id="Bad Id")], r"slug .*'Bad Id'"),
    ({}, [entry(text="  ")], r"text must be a non-empty string"),
    ({}, [entry(checker="punctuation:no_semicolons")], r"unknown checker 'punctuation:no_semicolons'"),
    ({}, [entry(checker="Instruction")], r"unknown checker 'Instruction'"),
    ({}, [entry(kwargs={"colour": "red"})], r"takes no argument 'colour'"),
    ({}, [entry(kwargs=["a"])], r"kwargs must be an object"),
    ({}, [entry(default="yes")], r"default must be true or false, got 'yes'"),
    ({}, [entry(notes=3)], r"notes must be a string, got 3"),
    # arguments the checker would draw at random: missing, null, or still drawn (negative count, no keywords)
    ({}, [entry(checker="length_constraints:number_words", kwargs={"num_words": 30})], r"needs kwargs \['relation'\]"),
    ({}, [entry(checker="length_constraints:number_words", kwargs={"num_words": 30, "relation": None})],
     r"needs kwargs \['relation'\]"),
    ({}, [entry(checker="length_constraints:number_words", kwargs={"num_words": -1, "relation": "less than"})],
     r"needs kwargs \['num_words'\].*'num_words': -1"),
    ({}, [entry(checker="keywords:existence", kwargs={"keywords": []})], r"needs kwargs \['keywords'\]"),
    ({}, [entry(checker="language:response_language")], r"needs kwargs \['language'\]"),
    ({}, [entry(checker="startend:end_checker")], r"needs kwargs \['end_phrase'\]"),
    ({}, [entry(checker="language:response_language", kwargs={"language": "xx"})], r"bad kwargs \{'language': 'xx'\}"),
    ({}, [entry(checker="length_constraints:number_words", kwargs={"num_words": 3, "relation": "about"})],
     r"bad kwargs .*'about'"),
])
def test_bad_files_are_refused_naming_the_bad_value(tmp_path, top, items, message):
    path = write(tmp_path, items, **top)
    with pytest.raises(ValueError, match=message) as err:
        load_instructions(path)
    assert str(path) in str(err.value)


def test_bad_json_and_bad_top_level(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="invalid JSON"):
        load_instructions(path)
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match="top level must be a JSON object"):
        load_instructions(path)


def test_validation_does_not_touch_the_global_random_state():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    with pytest.raises(ValueError):
        Instruction("x", "t", "length_constraints:number_words", {"num_words": 30})  # draws a relation
    Instruction("y", "t", "keywords:existence", {"keywords": ["ocean"]})
    assert random.random() == expected


# --------------------------------------------------------------------------- strict and loose checks


def make(checker, **kwargs):
    return Instruction("t", "Follow the rule.", checker, kwargs)


CASES = [
    # checker, kwargs, response, strict, loose
    ("change_case:english_lowercase", {}, "the sky is blue because sunlight scatters in the air.", True, True),
    ("change_case:english_lowercase", {}, "The sky is blue because sunlight scatters in the air.", False, False),
    ("change_case:english_lowercase", {}, "Sure! Here it is:\nthe sky is blue because sunlight scatters in the air.",
     False, True),
    ("punctuation:no_comma", {}, "Bees make honey. They live in hives.", True, True),
    ("punctuation:no_comma", {}, "Bees make honey, and they live in hives.", False, False),
    ("punctuation:no_comma", {}, "Sure, here you go:\nBees make honey.", False, True),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "Bees make sweet honey.", True, True),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "Bees make honey in their hives.",
     False, False),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"},
     "Here is my very short answer:\nBees make honey.", False, True),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "Bees make honey in hives.", True, True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Rain falls from clouds. Any other questions?",
     True, True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, '"Rain falls. any other questions?"', True, True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Rain falls.", False, False),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Rain falls. Any other questions?\n(Done.)",
     False, True),
    ("detectable_format:json_format", {}, '{"answer": "The sky is blue."}', True, True),
    ("detectable_format:json_format", {}, '```json\n{"answer": "blue"}\n```', True, True),
    ("detectable_format:json_format", {}, 'Here you go: {"answer": "blue"}', False, False),
    ("detectable_format:json_format", {}, 'Here you go:\n{"answer": "blue"}', False, True),
    ("detectable_format:title", {}, "<<Why rain falls>>\nRain falls from clouds.", True, True),
    ("detectable_format:title", {}, "<< >>\nRain falls from clouds.", False, False),
    ("keywords:existence", {"keywords": ["ocean"]}, "The Ocean is deep.", True, True),
    ("keywords:existence", {"keywords": ["ocean"]}, "The sea is deep.", False, False),
    ("ConstrainedStartChecker", {"starter": "My answer is"}, "My answer is: cats purr.", True, True),
    ("ConstrainedStartChecker", {"starter": "My answer is"}, "Cats purr.", False, False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Cats purr.\nP.S. Pet your cat.", True, True),
    ("startend:quotation", {}, '"Cats purr."', True, True),
    ("startend:quotation", {}, '**"Cats purr."**', False, True),
    ("language:response_language", {"language": "fr"},
     "Le ciel est bleu parce que la lumière du soleil est diffusée par l'air.", True, True),
    ("language:response_language", {"language": "fr"}, "The sky is blue because air scatters sunlight.", False, False),
]


@pytest.mark.parametrize("checker, kwargs, response, strict, loose", CASES)
def test_strict_and_loose_checks(checker, kwargs, response, strict, loose):
    ins = make(checker, **kwargs)
    assert ins.check(response) is strict
    assert check(ins, response) is strict
    assert ins.check_loose(response) is loose and check_loose(ins, response) is loose
    if strict:
        assert loose  # loose accepts everything strict does


@pytest.mark.parametrize("checker, kwargs", [
    ("punctuation:no_comma", {}), ("change_case:english_lowercase", {}),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}),
    ("language:response_language", {"language": "en"}),
])
def test_empty_answers_never_pass(checker, kwargs):
    ins = make(checker, **kwargs)
    for empty in ("", "   ", "\n\n"):
        assert not ins.check(empty) and not ins.check_loose(empty)
    with pytest.raises(TypeError, match="must be a str"):
        ins.check(None)


def test_language_detection_is_deterministic():
    import langdetect
    from langdetect.detector_factory import DetectorFactory

    # mixed texts that langdetect classifies differently under different random seeds
    cases = [("Sí, la casa es grande, the house is big, très grande.", "en"), ("Hola, bonjour, ciao amigo.", "es")]
    for text, language in cases:
        by_seed = set()
        for seed in range(12):
            DetectorFactory.seed = seed
            by_seed.add(langdetect.detect(text) == language)
        DetectorFactory.seed = None
        assert by_seed == {True, False}, text  # the text is ambiguous: the answer hangs on the draw
        ins = make("language:response_language", language=language)
        assert len({ins.check(text) for _ in range(25)}) == 1, text
        assert len({ins.check_loose(text) for _ in range(5)}) == 1, text
        assert make("language:response_language", language=language).check(text) == ins.check(text)
    assert DetectorFactory.seed is None  # the seed is restored after each check


# --------------------------------------------------------------------------- the instruction as a judge


def test_the_instruction_judge_scores_100_or_0_on_planted_responses():
    judge = IFEvalJudge("punctuation:no_comma")
    assert isinstance(judge, Judge) and judge.name == "ifeval punctuation:no_comma" and not judge.loose
    planted = ["Bees make honey.", "Yes, they do.", "Sure, here you go:\nBees make honey.", "", "   "]
    scores = judge.score_batch(["Q?"] * len(planted), planted)
    assert [s.value for s in scores] == [100.0, 0.0, 0.0, 0.0, 0.0]
    assert scores[0].reason == "follows punctuation:no_comma" and scores[3].reason == "empty response"
    loose = IFEvalJudge("punctuation:no_comma", loose=True)
    assert [s.value for s in loose.score_batch(["Q?"] * len(planted), planted)] == [100.0, 0.0, 100.0, 0.0, 0.0]
    assert loose.name == "ifeval punctuation:no_comma (loose)"
    # the arguments are part of the name (cache keys use it), frozen, and validated
    french = IFEvalJudge("language:response_language", {"language": "fr"})
    assert french.name == 'ifeval language:response_language {"language": "fr"}'
    assert french.score("Q?", "Le ciel est bleu parce que la lumière du soleil est diffusée par l'air.").value == 100.0
    assert french.score("Q?", "The sky is blue because air scatters sunlight.").value == 0.0
    assert IFEvalJudge("keywords:existence", {"keywords": ["ocean"]}).arguments == {"keywords": ["ocean"]}
    with pytest.raises(TypeError):
        french.kwargs["language"] = "es"
    with pytest.raises(ValueError, match=r"needs kwargs \['relation'\]"):
        IFEvalJudge("length_constraints:number_words", {"num_words": 30})
    with pytest.raises(ValueError, match="unknown checker 'nope'"):
        IFEvalJudge("nope")
    with pytest.raises(ValueError, match="got 2 questions but 1 responses"):
        judge.score_batch(["a", "b"], ["x"])
    with pytest.raises(TypeError, match="must be a str"):
        judge.score("Q?", None)
    assert ifeval.checker_class("ConstrainedStartChecker").__name__ == "ConstrainedStartChecker"


def test_an_instruction_is_an_attribute_judged_by_its_checker():
    ins = get_instruction("no_commas")
    strict, loose = ins.judge(), ins.judge(loose=True)
    assert strict.checker == ins.checker and dict(strict.kwargs) == dict(ins.kwargs) and loose.loose
    assert [strict.score("Q?", r).value for r in ("Bees make honey.", "Yes, they do.")] == [100.0, 0.0]
    attribute = instruction_attribute("no_commas")
    assert attribute.name == "if:no_commas" and attribute.instructions == (ins.text,)
    assert attribute.judge.name == strict.name
    assert [s.value for s in attribute.score(["Q?", "Q?"], ["Bees make honey.", "Yes, they do."])] == [100.0, 0.0]
    assert {s: list(attribute.questions(s)) for s in ("train", "validation", "test")} == {
        "train": TRAIN_Q, "validation": VAL_Q, "test": TEST_Q}  # the shared pool's splits
    assert instruction_attribute(ins, loose=True).judge.name == loose.name
    # chosen training questions: the other splits leave them out
    mine = instruction_attribute(ins, train=[TEST_Q[0], "Why is the sky blue?"])
    assert mine.questions("train") == (TEST_Q[0], "Why is the sky blue?") and TEST_Q[0] not in mine.questions("test")


@pytest.mark.parametrize("module", [ifeval, instructions_module, inf])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result


def test_score_responses_table():
    ins = make("punctuation:no_comma")
    table = score_responses(ins, ["Q1?", "Q2?", "Q3?"], ["Bees make honey.", "Yes, they do.", ""])
    assert list(table.columns) == ["question", "response", "strict", "loose", "coherence"]
    assert table["strict"].tolist() == [True, False, False]
    assert table["loose"].tolist() == [True, False, False]
    assert table["coherence"].iloc[0] > 50 and table["coherence"].iloc[2] == 0.0
    assert table["question"].tolist() == ["Q1?", "Q2?", "Q3?"]
    with pytest.raises(ValueError, match="got 2 questions but 1 responses"):
        score_responses(ins, ["a", "b"], ["x"])
    by_id = score_responses("no_commas", ["Q?"], ["Fine."])  # an id from the bundled file works too
    assert by_id["strict"].tolist() == [True]


# --------------------------------------------------------------------------- training samples


def question_of(tokenizer, prompt, questions):
    text = tokenizer.decode(prompt)
    found = [q for q in questions if q in text]
    assert len(found) == 1, text
    return found[0]


def planted_generate(responses, calls=None):
    """A stand-in for ``generate``: the planted response of each prompt's question, then <|im_end|>."""

    def fake(model, prompts, sampling, row_seeds=None, batch_size=16, progress=True, **kwargs):
        tok = model.tokenizer
        end = tok.convert_tokens_to_ids("<|im_end|>")
        if calls is not None:
            calls.append({"prompts": [tok.decode(p) for p in prompts], "row_seeds": row_seeds, "sampling": sampling})
        out = []
        for prompt in prompts:
            text = responses(question_of(tok, prompt, list(responses.questions)))
            out.append(encode_response(tok, text) + [end] if text else [end])
        return out

    return fake


class Planted:
    """Responses by question; ``questions`` is the pool the prompts are looked up in."""

    def __init__(self, mapping):
        self.mapping, self.questions = mapping, list(mapping)

    def __call__(self, question):
        return self.mapping[question]


def test_sample_training_pairs_keeps_passing_coherent_samples(tiny_model, monkeypatch):
    qs = TRAIN_Q[:5]
    planted = Planted({
        qs[0]: "Bees make honey in their hives.",                     # passes, coherent: kept
        qs[1]: "Bees make honey, and they sting.",                    # fails the checker
        qs[2]: "no no no no no no no no no no no no no no no no",     # passes but repetitive: dropped
        qs[3]: "Rain falls from the clouds when drops get heavy.",    # kept
        qs[4]: "",                                                    # empty: fails
    })
    calls = []
    monkeypatch.setattr(triplets, "generate", planted_generate(planted, calls))
    ins = get_instruction("no_commas")
    samples = sample_training_pairs(tiny_model, ins, qs, seed=3, progress=False)
    table = samples.table
    # drawn by the triplet builder: the attribute is the instruction, judged by its checker
    assert samples.triplets.meta["attribute"] == "if:no_commas" and samples.directory is None
    assert samples.triplets.table["attr_score"].tolist() == [100.0, 0.0, 100.0, 100.0, 0.0]
    assert (samples.triplets.kept["soft_label"] == 1.0).all()
    assert list(table.columns) == ["instruction", "question", "sample_index", "sample_seed", "response", "passed",
                                   "coherence", "kept"]
    assert table["passed"].tolist() == [True, False, True, True, False]
    assert table["kept"].tolist() == [True, False, False, True, False]
    assert samples.pass_rate == pytest.approx(3 / 5)
    assert samples.instruction == "no_commas" and (table["instruction"] == "no_commas").all()
    # the kept triplets are aligned: x' carries the instruction, both spans hold the response ids
    tok = tiny_model.tokenizer
    assert len(samples.pairs) == 2
    for pair, q in zip(samples.pairs, [qs[0], qs[3]]):
        assert ins.text in tok.decode(pair.steered_ids) and ins.text not in tok.decode(pair.base_ids)
        assert q in tok.decode(pair.base_ids)
        span = tok.decode(pair.span_ids[pair.header_len:], skip_special_tokens=True).strip()
        assert span == planted(q)
    # one seed per sample, as sample_seed draws it; the prompts carry the instruction
    call = calls[0]
    assert call["row_seeds"] == [sample_seed(3, q, ins.text, 0) for q in qs]
    assert table["sample_seed"].tolist() == call["row_seeds"]
    assert all(ins.text in p for p in call["prompts"])
    # without the coherence filter the repetitive sample is kept too
    loose = sample_training_pairs(tiny_model, ins, qs, seed=3, coherence_threshold=None, progress=False)
    assert loose.table["kept"].tolist() == [True, False, True, True, False] and len(loose.pairs) == 3


def test_sample_training_pairs_seeds_and_errors(tiny_model, monkeypatch):
    qs = TRAIN_Q[:2]
    calls = []
    monkeypatch.setattr(triplets, "generate", planted_generate(Planted({q: "Short answer." for q in qs}), calls))
    samples = sample_training_pairs(tiny_model, "no_commas", qs, samples_per_question=3, seed=0, progress=False)
    assert len(samples.table) == 6 and samples.table["sample_index"].tolist() == [0, 1, 2, 0, 1, 2]
    assert samples.table["sample_seed"].nunique() == 6
    greedy = sample_training_pairs(tiny_model, "no_commas", qs, sampling=SamplingConfig(temperature=0.0),
                                   progress=False)
    assert calls[-1]["sampling"].temperature == 0.0 and len(greedy.pairs) == 2
    with pytest.raises(ValueError, match="samples_per_question must be an integer >= 1, got 0"):
        sample_training_pairs(tiny_model, "no_commas", qs, samples_per_question=0, progress=False)
    with pytest.raises(ValueError, match="no questions"):
        sample_training_pairs(tiny_model, "no_commas", [], progress=False)
    with pytest.raises(ValueError, match="placement 'middle'"):
        sample_training_pairs(tiny_model, "no_commas", qs, placement="middle", progress=False)


def test_sample_training_pairs_stores_and_resumes_in_a_directory(tiny_model, monkeypatch, tmp_path):
    qs = TRAIN_Q[:3]
    calls = []
    monkeypatch.setattr(triplets, "generate", planted_generate(Planted({q: "Short answer." for q in TRAIN_Q}), calls))
    first = sample_training_pairs(tiny_model, "no_commas", qs, tmp_path / "t", progress=False)
    assert first.directory == tmp_path / "t" and len(calls) == 1
    stored = TripletSet.load(tmp_path / "t")
    assert stored.table["question"].tolist() == qs and stored.meta["attribute"] == "if:no_commas"
    again = sample_training_pairs(tiny_model, "no_commas", TRAIN_Q[:5], tmp_path / "t", progress=False)
    assert len(calls) == 2 and [q for p in calls[1]["prompts"] for q in TRAIN_Q[:5] if q in p] == TRAIN_Q[3:5]
    pd.testing.assert_frame_equal(again.table.iloc[:3], first.table)


# --------------------------------------------------------------------------- the comparison, planted

PASS, FAIL = "Bees make honey.", "Yes, they do."


def planted_answers(rule, suffix=lambda alpha: ""):
    """A stand-in for ``generate_answers`` (as the comparison's Evaluator calls it):
    ``rule(question, prompt, steerer rank or 0, alpha)`` says whether the answer follows the
    instruction (no commas); ``suffix(alpha)`` is appended to it."""

    def fake(model, questions, *, instruction=None, steerers=(), **kwargs):
        rank, alpha = (steerers[0][0].rank, steerers[0][1]) if steerers else (0, 0.0)
        return [Generation(q, instruction, [1], (PASS if rule(q, instruction is not None, rank, alpha) else FAIL)
                           + suffix(alpha), 1) for q in questions]

    return fake


def planted_rule(q, prompt, rank, alpha):
    i = TEST_Q.index(q) if q in TEST_Q else VAL_Q.index(q)
    if rank == 0:
        return prompt and i % 3 != 0        # prompt: 2 of every 3 questions; none without it
    if prompt:
        return True                         # PSR + prompt: all
    if rank == 1:
        return alpha == 2.0 or (alpha == 1.0 and i % 2 == 0)   # PSR: all at alpha 2, half at alpha 1
    return alpha == 0.5 and i < 2            # rank-r PSR: two answers, only at alpha 0.5


@pytest.fixture
def planted_run(tiny_model, monkeypatch):
    from workbench.steering import TrainConfig

    training = Planted({q: PASS for q in TRAIN_Q})
    monkeypatch.setattr(triplets, "generate", planted_generate(training))
    monkeypatch.setattr(comparison, "generate_answers", planted_answers(planted_rule))

    def run(**kwargs):
        args = dict(instructions=["no_commas"], n_train=4, n_test=6, n_val=4, layers=1, rank=2,
                    train_config=TrainConfig(steps=5, seed=0), n_boot=500, progress=False)
        return run_instruction_following(tiny_model, **{**args, **kwargs})

    return run


def test_planted_run_reports_accuracies_and_intervals(planted_run):
    run = planted_run()
    summary = run.summary
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert summary["method"].tolist() == ["no steering", "prompt", "PSR", "rank-r PSR", "PSR + prompt"]
    rows = summary.set_index("method")
    expected = {"no steering": [0] * 6, "prompt": [i % 3 != 0 for i in range(6)], "PSR": [i % 2 == 0 for i in range(6)],
                "rank-r PSR": [False] * 6, "PSR + prompt": [True] * 6}
    for method, hits in expected.items():
        values = np.asarray(hits, dtype=float)
        assert rows.loc[method, "strict_accuracy"] == pytest.approx(values.mean()), method
        lo, hi = bootstrap_ci(values, n_boot=500, seed=0)
        assert (rows.loc[method, "ci_lo"], rows.loc[method, "ci_hi"]) == pytest.approx((lo, hi))
        assert rows.loc[method, "ci_lo"] <= rows.loc[method, "strict_accuracy"] <= rows.loc[method, "ci_hi"]
        assert rows.loc[method, "n"] == 6
    assert rows.loc["prompt", "ci_lo"] < rows.loc["prompt", "ci_hi"]  # a real interval, not a point
    # fixed alpha 1 on the steered rows, none on the others; the steerers' ranks and layers
    assert rows.loc["PSR", "alpha"] == 1.0 and math.isnan(rows.loc["prompt", "alpha"])
    assert rows.loc["PSR", "rank"] == 1 and rows.loc["rank-r PSR", "rank"] == 2 and rows.loc["prompt", "rank"] == 0
    assert rows.loc["PSR", "layers"] == "1" and rows.loc["PSR", "steerer"] == "S-PSR"  # the names grammar
    assert rows.loc["rank-r PSR", "steerer"] == "S-PSR r2"
    assert (summary["n_train"] == 4).all() and (summary["train_pass_rate"] == 1.0).all()
    assert (summary["note"] == "").all() and (summary["seed"] == 0).all()
    # the answers behind the table, and the steerers by name
    assert len(run.responses) == 5 * 6 and set(run.responses["method"]) == set(summary["method"])
    assert run.responses.groupby("method")["strict"].mean().loc["prompt"] == pytest.approx(4 / 6)
    assert set(run.steerers) == {("no_commas", "PSR"), ("no_commas", "rank-r PSR")}
    assert run.steerers[("no_commas", "rank-r PSR")].rank == 2
    assert len(run.training["no_commas"].pairs) == 4 and run.sweep.empty
    responses = run.responses.set_index("method")
    assert list(run.responses.columns) == inf.RESPONSE_COLUMNS
    assert responses.loc["PSR", "strict"].tolist() == expected["PSR"] and (responses.loc["PSR", "alpha"] == 1.0).all()
    assert responses.loc["prompt", "question"].tolist() == TEST_Q[:6]


def test_alpha_sweep_picks_the_best_validation_alpha(planted_run):
    run = planted_run(alpha=(0.5, 1.0, 2.0))
    rows = run.summary.set_index("method")
    assert rows.loc["PSR", "alpha"] == 2.0 and rows.loc["PSR", "strict_accuracy"] == 1.0
    assert rows.loc["rank-r PSR", "alpha"] == 0.5 and rows.loc["rank-r PSR", "strict_accuracy"] == pytest.approx(2 / 6)
    assert rows.loc["PSR + prompt", "alpha"] == 1.0  # a tie everywhere: the alpha closest to 1
    sweep = run.sweep
    assert list(sweep.columns) == ["instruction", "method", "alpha", "val_strict_accuracy", "val_coherence", "n"]
    assert len(sweep) == 3 * 3 and (sweep["n"] == 4).all()
    psr = sweep[sweep["method"] == "PSR"].set_index("alpha")["val_strict_accuracy"]
    assert psr.to_dict() == {0.5: 0.0, 1.0: 0.5, 2.0: 1.0}
    assert run.responses[run.responses["method"] == "PSR"]["alpha"].eq(2.0).all()
    # an alpha list that ties between 0.5 and 1.5 keeps the larger one (both as close to 1)
    tied = planted_run(alpha=(0.5, 1.5), methods=("PSR + prompt",))
    assert tied.summary["alpha"].tolist() == [1.5]


def test_too_few_kept_triplets_leave_steered_rows_empty(tiny_model, monkeypatch, planted_run):
    training = Planted({q: (PASS if i < 2 else FAIL) for i, q in enumerate(TRAIN_Q)})
    monkeypatch.setattr(triplets, "generate", planted_generate(training))
    run = planted_run(min_train=3)
    rows = run.summary.set_index("method")
    for method in ("PSR", "rank-r PSR", "PSR + prompt"):
        assert math.isnan(rows.loc[method, "strict_accuracy"]) and rows.loc[method, "n"] == 0
        assert rows.loc[method, "note"] == "only 2 kept training triplets (< 3): not trained"
    assert rows.loc["prompt", "strict_accuracy"] == pytest.approx(4 / 6) and rows.loc["prompt", "note"] == ""
    assert (run.summary["n_train"] == 2).all() and (run.summary["train_pass_rate"] == 0.5).all()
    assert not run.steerers and set(run.responses["method"]) == {"no steering", "prompt"}


def test_rank_one_and_method_subsets(planted_run):
    run = planted_run(rank=1, methods=("rank-r PSR", "PSR"))
    assert run.summary["method"].tolist() == ["rank-r PSR", "PSR"]
    assert run.steerers[("no_commas", "PSR")] is run.steerers[("no_commas", "rank-r PSR")]
    only_prompt = planted_run(methods=("prompt",))
    assert not only_prompt.training and only_prompt.summary["n_train"].isna().all()


def test_unsteered_answers_are_generated_once(tiny_model, monkeypatch, planted_run):
    calls = []
    fake = planted_answers(planted_rule)

    def counting(model, questions, **kwargs):
        calls.append((kwargs.get("instruction"), len(kwargs.get("steerers", ()))))
        return fake(model, questions, **kwargs)

    monkeypatch.setattr(comparison, "generate_answers", counting)
    run = planted_run(instructions=["no_commas", get_instruction("keyword_ocean")], methods=("no steering", "prompt"))
    assert calls.count((None, 0)) == 1
    assert len(run.summary) == 4
    # the keyword checker fails every planted answer, even the prompted ones
    assert run.summary.set_index(["instruction", "method"]).loc[("keyword_ocean", "prompt"), "strict_accuracy"] == 0
    # the shared unsteered answers are judged by each instruction's own checker
    unsteered = run.responses[run.responses["method"] == "no steering"]
    by_instruction = unsteered.groupby("instruction")["response"].apply(tuple)
    assert by_instruction.nunique() == 1 and len(by_instruction) == 2
    assert unsteered.groupby("instruction")["strict"].mean().to_dict() == {"keyword_ocean": 0.0, "no_commas": 0.0}


def test_equal_coherence_strength(planted_run, monkeypatch):
    # coherence 90 up to alpha 2, then 10: the equal-coherence search finds alpha 2 for target 90
    monkeypatch.setattr(comparison, "generate_answers", planted_answers(planted_rule, lambda a: " zz" if a > 2 else ""))
    judge = FunctionJudge(lambda r: 10.0 if r.endswith("zz") else 90.0, name="planted coherence")
    run = planted_run(coherence_target=90.0, coherence_judge=judge, methods=("prompt", "PSR", "PSR + prompt"))
    rows = run.summary.set_index("method")
    assert rows.loc["PSR", "alpha"] == 2.0 and rows.loc["PSR", "strict_accuracy"] == 1.0
    assert rows.loc["PSR + prompt", "alpha"] == 2.0 and rows.loc["PSR", "note"] == ""
    assert rows.loc["prompt", "coherence"] == 90.0 and math.isnan(rows.loc["prompt", "alpha"])
    psr = run.sweep[run.sweep["method"] == "PSR"]
    assert {0.0, 1.0, 2.0, 4.0} <= set(psr["alpha"]) and (psr["n"] == 4).all()
    assert psr.set_index("alpha").loc[4.0, "val_coherence"] == 10.0
    # "prompt": the prompt's own validation coherence is the target
    same = planted_run(coherence_target="prompt", coherence_judge=judge, methods=("PSR",))
    assert same.summary["alpha"].tolist() == [2.0]
    # a target no strength reaches: the nearest, with the search's reason
    missed = planted_run(coherence_target=50.0, coherence_judge=judge, methods=("PSR",))
    assert missed.summary["note"].iloc[0] != ""


def test_bad_runs(tiny_model):
    with pytest.raises(ValueError, match="unknown method 'CAA'"):
        run_instruction_following(tiny_model, ["no_commas"], methods=("prompt", "CAA"), progress=False)
    with pytest.raises(ValueError, match="methods repeat"):
        run_instruction_following(tiny_model, ["no_commas"], methods=("prompt", "prompt"), progress=False)
    n_pool = len(instruction_questions()["test"])
    with pytest.raises(ValueError, match=f"n_test={n_pool + 1} but the question pool has only {n_pool}"):
        run_instruction_following(tiny_model, ["no_commas"], n_test=n_pool + 1, layers=1, progress=False)
    with pytest.raises(ValueError, match="rank must be an integer >= 1"):
        run_instruction_following(tiny_model, ["no_commas"], rank=0, layers=1, progress=False)
    with pytest.raises(IndexError, match="layer index 15"):
        run_instruction_following(tiny_model, ["no_commas"], progress=False)
    with pytest.raises(ValueError, match="instructions repeat"):
        run_instruction_following(tiny_model, ["no_commas", "no_commas"], layers=1, progress=False)
    with pytest.raises(ValueError, match="steer_method"):
        run_instruction_following(tiny_model, ["no_commas"], steer_method="const-dim", layers=1, progress=False)
    with pytest.raises(ValueError, match="unknown instruction 'nope'"):
        run_instruction_following(tiny_model, ["nope"], layers=1, progress=False)
    with pytest.raises(ValueError, match="coherence_target must be a number in 0-100 or 'prompt'"):
        run_instruction_following(tiny_model, ["no_commas"], coherence_target="C80", layers=1, progress=False)


# --------------------------------------------------------------------------- a small real run


def test_a_tiny_real_run_is_reproducible_from_its_seed(tiny_model):
    from workbench.steering import TrainConfig

    # a checker every non-empty answer of the random model passes, so that training happens
    anything = Instruction("anything", "You are a pirate. Say arr.", "keywords:forbidden_words",
                           {"forbidden_words": ["zqxjv"]})
    args = dict(n_train=4, n_test=3, n_val=2, layers=1, rank=2, max_new_tokens=6, coherence_threshold=None,
                train_config=TrainConfig(steps=4, seed=0), n_boot=200, alpha=(0.5, 1.0), progress=False)
    runs = [run_instruction_following(tiny_model, [anything], seed=s, **args) for s in (0, 0, 1)]
    first, again, other = runs
    cols = [c for c in SUMMARY_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(first.summary[cols], again.summary[cols])
    pd.testing.assert_frame_equal(first.responses, again.responses)
    pd.testing.assert_frame_equal(first.training["anything"].table, again.training["anything"].table)
    for key, steerer in first.steerers.items():
        assert torch.equal(steerer.z, again.steerers[key].z)
    assert first.training["anything"].table["kept"].sum() >= 2
    assert first.summary["strict_accuracy"].notna().all() and first.summary["n"].eq(3).all()
    assert len(first.sweep) == 3 * 2  # PSR, rank-r PSR, PSR + prompt at two alphas
    # another seed draws other training samples
    assert other.training["anything"].table["sample_seed"].tolist() != first.training["anything"].table["sample_seed"].tolist()


def test_a_real_run_draws_its_triplets_with_the_triplet_builder_and_keeps_them(tiny_model, monkeypatch, tmp_path):
    from workbench.steering import TrainConfig

    anything = Instruction("anything", "You are a pirate. Say arr.", "keywords:forbidden_words",
                           {"forbidden_words": ["zqxjv"]})
    args = dict(n_train=4, n_test=3, layers=1, max_new_tokens=6, coherence_threshold=None, methods=("prompt", "PSR"),
                train_config=TrainConfig(steps=4, seed=0), n_boot=200, progress=False, directory=tmp_path)
    built = []

    def spy(model, attribute, directory, config, **kwargs):
        built.append((attribute.name, attribute.questions("train"), Path(directory), config))
        return triplets.build_triplets(model, attribute, directory, config, **kwargs)

    monkeypatch.setattr(instructions_module, "build_triplets", spy)
    run = run_instruction_following(tiny_model, [anything], **args)
    samples = run.training["anything"]
    assert built == [("if:anything", tuple(TRAIN_Q[:4]), samples.directory, built[0][3])]
    assert built[0][3].temperature == 0.7 and built[0][3].max_new_tokens == 6 and built[0][3].seed == 0
    # the run directory holds the triplets the builder wrote, and the judged answers
    assert run.directory == tmp_path and samples.directory.parent == tmp_path / "anything"
    stored = TripletSet.load(samples.directory)
    assert stored.meta["attribute"] == "if:anything" and stored.table["question"].tolist() == TRAIN_Q[:4]
    assert stored.table["sample_seed"].tolist() == samples.table["sample_seed"].tolist()
    assert stored.table["kept"].tolist() == samples.table["kept"].tolist() and stored.table["kept"].sum() >= 2
    assert len(list((tmp_path / "answers").glob("*.parquet"))) == 2  # prompt, PSR at alpha 1
    # a rerun samples and generates nothing again, and gives the same table
    def boom(*a, **k):
        raise AssertionError("generated again")

    monkeypatch.setattr(triplets, "generate", boom)
    monkeypatch.setattr(comparison, "generate_answers", boom)
    again = run_instruction_following(tiny_model, [anything], **args)
    cols = [c for c in SUMMARY_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(run.summary[cols], again.summary[cols])
    assert again.training["anything"].directory == samples.directory


# --------------------------------------------------------------------------- the embedded model


@pytest.mark.integration
def test_a_default_instruction_is_followed_when_prompted(embedded_model):
    # measured on the first 6 test questions (greedy, 64 tokens): 5 of 6 answers under 30 words with
    # the prompt, none without
    ins = get_instruction("max_words_30")
    assert ins.default
    run = run_instruction_following(embedded_model, [ins], methods=("no steering", "prompt"), n_test=6,
                                    max_new_tokens=64, progress=False)
    acc = run.summary.set_index("method")["strict_accuracy"]
    assert acc["prompt"] >= acc["no steering"] + 0.5, run.responses[["method", "response"]].values.tolist()
    assert not run.training and run.responses["question"].iloc[:6].tolist() == TEST_Q[:6]
