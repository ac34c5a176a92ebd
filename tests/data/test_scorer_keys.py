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


_BUILD = """
import os, sys, torch
torch.set_num_threads(1)
import workbench.data.triplets as triplets
from workbench.core.models import load_model
from workbench.data.attributes import make_attribute
from workbench.judges.offline import CoherenceJudge
sampled = triplets.generate
def logged(*args, **kwargs):  # who sampled, so the test can tell whether both processes did
    with open(sys.argv[2], "a") as log:
        log.write(f"{os.getpid()}\\n")
    return sampled(*args, **kwargs)
triplets.generate = logged
model = load_model("tiny-random-llama", n_layers=3, seed=0)
attribute = make_attribute("always", "Always the same.", ["Be anything."], [f"Question number {i}?" for i in range(10)],
                           lambda r: 100.0)
open(sys.argv[3], "w").close()  # loaded: the test starts the clock here
while not os.path.exists(sys.argv[4]):
    pass
triplets.build_triplets(model, attribute, sys.argv[1], triplets.TripletConfig(n_questions=6, max_new_tokens=8, batch_size=1),
                        coherence=CoherenceJudge(), progress=False)
"""


def test_two_processes_building_one_run_take_turns(tmp_path):
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from workbench.core.checked_files import read_frame

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    go = tmp_path / "go"

    def start(directory, name):
        args = [str(directory), str(tmp_path / f"{name}.log"), str(tmp_path / f"{name}.ready"), str(go)]
        return subprocess.Popen([sys.executable, "-c", _BUILD, *args], env=env, stderr=subprocess.PIPE, text=True)

    alone = start(tmp_path / "alone", "alone")
    go.touch()
    assert alone.wait(timeout=600) == 0, alone.stderr.read()
    go.unlink()
    both = [start(tmp_path / "shared", "both"), start(tmp_path / "shared", "both")]
    deadline = time.monotonic() + 600
    while not (tmp_path / "both.ready").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(2)  # both loaded (the second is no slower than the first to load)
    go.touch()
    errors = [p.communicate(timeout=600)[1] for p in both]
    assert [p.returncode for p in both] == [0, 0], errors
    samplers = set((tmp_path / "both.log").read_text().split())
    assert len(samplers) == 1, "both processes sampled: the second did not wait for the first"
    want, got = read_frame(tmp_path / "alone" / "triplets.parquet"), read_frame(tmp_path / "shared" / "triplets.parquet")
    assert len(got) == 6 and got.equals(want)
