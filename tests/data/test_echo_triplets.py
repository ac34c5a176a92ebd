"""Triplet runs reject responses that echo the instruction, say so per sample, count them, and judge
stored samples again (runs stored before the filter included)."""

import pandas as pd
import pytest

from workbench.data import triplets as triplets_module
from workbench.data.attributes import make_attribute
from workbench.data.triplets import TABLE_NAME, TripletConfig, TripletSet, build_triplets, summarize
from workbench.judges.base import Score

INSTRUCTIONS = ["You are a pirate. Speak like a pirate: say Arr and matey.",
                "You are Captain Jack, a pirate. Every sentence you say has pirate words: Arr! Ahoy, matey!"]
QUESTIONS = [f"Question number {i}?" for i in range(6)]
#: What the "model" answers question i with: an echo of its instruction, or a pirate answer.
ANSWERS = {0: "You are a pirate. Speak like a pirate: say Arr and matey. What is",
           1: "Arr, matey! The answer be forty-two, aye.",
           2: "Arr and matey to ye! The sea be wide.",
           3: "You are Captain Jack, a pirate. Every sentence you say has pirate",
           4: "",
           5: "Ahoy! Ye ask a fine question, matey."}


class Constant:
    name = "constant"

    def __init__(self, value):
        self.value = value

    def score_batch(self, questions, responses):
        return [Score(self.value if r.strip() else None) for r in responses]


@pytest.fixture
def scripted(tiny_model, monkeypatch):
    """``generate`` answers each question with its scripted text (tokenized as the model would)."""

    def fake_generate(model, prompts, config, row_seeds=None, batch_size=16, progress=True):
        out = []
        for prompt in prompts:
            text = model.tokenizer.decode(prompt)
            index = next(i for i, q in enumerate(QUESTIONS) if q in text)
            out.append(model.tokenizer(ANSWERS[index], add_special_tokens=False)["input_ids"])
        return out

    monkeypatch.setattr(triplets_module, "generate", fake_generate)
    return make_attribute("pirate-ish", "talks like a pirate", INSTRUCTIONS,
                          {"train": QUESTIONS, "validation": ["Another question?"],
                                                         "test": ["A test question?"]}, lambda r: 100.0)


CONFIG = TripletConfig(split="train", n_questions=6, max_new_tokens=24, batch_size=4)


def test_echoes_are_rejected_and_counted(tiny_model, scripted, tmp_path):
    run = build_triplets(tiny_model, scripted, tmp_path / "run", CONFIG, coherence=Constant(90), progress=False)
    table = run.table
    assert table["echo"].tolist() == [True, False, False, True, False, False]
    assert table["rejected"].tolist() == ["echo", "", "", "echo", "empty", ""]
    assert table["kept"].tolist() == [False, True, True, False, False, True]
    assert summarize(run)["rejected"] == {"empty": 1, "attribute": 0, "coherence": 0, "echo": 2}
    loaded = TripletSet.load(tmp_path / "run")
    assert loaded.table["rejected"].tolist() == table["rejected"].tolist()
    # an incoherent echo is rejected for coherence, the first reason that applies
    again = build_triplets(tiny_model, scripted, tmp_path / "incoherent", CONFIG, coherence=Constant(20), progress=False)
    assert set(again.table["rejected"]) == {"coherence", "empty"} and again.table["echo"].sum() == 2


def test_stored_samples_are_judged_again_by_the_filter_of_the_call(tiny_model, scripted, tmp_path):
    off = build_triplets(tiny_model, scripted, tmp_path / "run", CONFIG, coherence=Constant(90), echoes=None,
                         progress=False)
    assert off.table["kept"].sum() == 5 and not off.table["echo"].any()
    on = build_triplets(tiny_model, scripted, tmp_path / "run", CONFIG, coherence=Constant(90), progress=False)
    assert on.table["kept"].sum() == 3
    assert TripletSet.load(tmp_path / "run").table["kept"].sum() == 3  # and what is stored says so


def test_a_run_stored_before_the_filter_is_filtered_when_read(tiny_model, scripted, tmp_path):
    build_triplets(tiny_model, scripted, tmp_path / "run", CONFIG, coherence=Constant(90), echoes=None, progress=False)
    path = tmp_path / "run" / TABLE_NAME
    old = pd.read_parquet(path).drop(columns=["echo", "rejected"])
    old["kept"] = old["response"] != ""  # as the run before the filter stored it: the echoes kept
    old.to_parquet(path, index=False)
    loaded = TripletSet.load(tmp_path / "run")
    assert loaded.table["rejected"].tolist() == ["echo", "", "", "echo", "empty", ""]
    assert len(loaded.kept) == 3
