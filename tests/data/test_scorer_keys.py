"""Stored scores are keyed on the judge's behaviour: a changed scorer scores again, an unchanged one
is read back, in the triplets and in the evaluations (the notebook workflow: edit a cell, rerun)."""

from __future__ import annotations

import logging

import pytest

from workbench.data.attributes import make_attribute
from workbench.data.triplets import TripletConfig, build_triplets
from workbench.evaluation.comparison import EvalConfig, Evaluator, Method
from workbench.judges.base import judge_fingerprint
from workbench.judges.offline import CoherenceJudge, FunctionJudge

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTIONS = [f"Question number {i}?" for i in range(10)]
CONFIG = TripletConfig(n_questions=4, max_new_tokens=4, batch_size=4)
COHERENCE = CoherenceJudge()  # heuristics only: no model forward in these tests
CALLS = {"n": 0}


def _always(value):
    return make_attribute("always", "Always the same.", ["Be anything."], QUESTIONS, value)


def counting_scorer(response: str) -> float:
    CALLS["n"] += 1
    return 100.0


def test_a_changed_scorer_scores_the_stored_triplets_again(tiny_model, tmp_path, caplog):
    first = build_triplets(tiny_model, _always(lambda r: 100.0), tmp_path / "x", CONFIG, coherence=COHERENCE,
                           progress=False)
    assert first.table["attr_score"].tolist() == [100.0] * 4
    with caplog.at_level(logging.WARNING):
        second = build_triplets(tiny_model, _always(lambda r: 0.0), tmp_path / "x", CONFIG, coherence=COHERENCE,
                                progress=False)
    assert second.table["attr_score"].tolist() == [0.0] * 4
    assert not second.table["kept"].any() and second.table["soft_label"].tolist() == [0.0] * 4
    assert second.table["response"].tolist() == first.table["response"].tolist()  # the samples are kept
    assert "the attribute judge changed since these 4 triplets were judged" in caplog.text
    assert "coherence judge" not in caplog.text
    reread = build_triplets(tiny_model, _always(lambda r: 0.0), tmp_path / "x", CONFIG, coherence=COHERENCE,
                            progress=False)
    assert reread.table["attr_score"].tolist() == [0.0] * 4


def test_an_unchanged_scorer_is_read_back_without_scoring(tiny_model, tmp_path):
    build_triplets(tiny_model, _always(counting_scorer), tmp_path / "x", CONFIG, coherence=COHERENCE, progress=False)
    calls = CALLS["n"]
    again = build_triplets(tiny_model, _always(counting_scorer), tmp_path / "x", CONFIG, coherence=COHERENCE,
                           progress=False)
    assert CALLS["n"] == calls and again.table["attr_score"].tolist() == [100.0] * 4


def test_a_changed_coherence_judge_scores_again(tiny_model, tmp_path, caplog):
    build_triplets(tiny_model, _always(lambda r: 100.0), tmp_path / "x", CONFIG, coherence=COHERENCE, progress=False)
    with caplog.at_level(logging.WARNING):
        build_triplets(tiny_model, _always(lambda r: 100.0), tmp_path / "x", CONFIG,
                       coherence=CoherenceJudge(logprob_weight=0.3), progress=False)
    assert "the coherence judge changed" in caplog.text and "attribute judge" not in caplog.text


def test_a_changed_scorer_is_not_served_from_the_evaluation_cache(tiny_model, tmp_path):
    config = EvalConfig(n_validation=2, n_test=2, max_new_tokens=4)
    method = Method("prompt", prompt=True)
    one = Evaluator(tiny_model, _always(lambda r: 100.0), config, coherence_judge=COHERENCE, cache_dir=tmp_path)
    assert one.evaluate(method, 0.0, "test")["attribute"].tolist() == [100.0, 100.0]
    two = Evaluator(tiny_model, _always(lambda r: 0.0), config, coherence_judge=COHERENCE, cache_dir=tmp_path)
    assert two.evaluate(method, 0.0, "test")["attribute"].tolist() == [0.0, 0.0]
    three = Evaluator(tiny_model, _always(lambda r: 0.0), config, coherence_judge=COHERENCE, cache_dir=tmp_path)
    assert three._disk_path(method, 0.0, "test") == two._disk_path(method, 0.0, "test")  # unchanged: read back


def test_what_a_judge_fingerprint_sees():
    def scorer_at(threshold):
        return lambda r: 100.0 * (len(r) > threshold)

    fp = lambda fn, **kw: judge_fingerprint(FunctionJudge(fn, name="s", **kw))  # noqa: E731
    assert fp(scorer_at(3)) != fp(scorer_at(4))  # the closure's value
    assert fp(scorer_at(3)) == fp(scorer_at(3))
    assert fp(counting_scorer) != fp(counting_scorer, version=2)  # the user's version
    assert fp(counting_scorer).startswith("s@")
    assert judge_fingerprint(COHERENCE) == judge_fingerprint(CoherenceJudge())
    assert judge_fingerprint(COHERENCE) != judge_fingerprint(CoherenceJudge(lp_mid=-3.0))
