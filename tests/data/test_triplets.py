import pandas as pd
import pytest

from workbench.data.attributes import make_attribute
from workbench.data.triplets import TripletConfig, TripletSet, build_triplets
from workbench.judges.base import Score


class ConstantJudge:
    name = "constant"

    def __init__(self, value):
        self.value = value

    def score(self, question, response):
        return Score(self.value)

    def score_batch(self, questions, responses):
        return [Score(self.value if r.strip() else None, "" if r.strip() else "empty") for r in responses]


QUESTIONS = [f"Question number {i}?" for i in range(10)]


def _attribute(scorer=lambda r: 100.0 * ("a" in r)):
    return make_attribute("has-a", "contains the letter a", ["Use the letter a.", "Say aaa."], QUESTIONS, scorer)


CONFIG = TripletConfig(split="train", n_questions=4, max_new_tokens=8, batch_size=3, seed=1)


def test_triplets_are_seeded_and_complete(tiny_model, tmp_path):
    one = build_triplets(tiny_model, _attribute(), tmp_path / "a", CONFIG, coherence=ConstantJudge(90), progress=False)
    two = build_triplets(tiny_model, _attribute(), tmp_path / "b", CONFIG, coherence=ConstantJudge(90), progress=False)
    assert len(one.table) == 4
    assert one.table["response"].tolist() == two.table["response"].tolist()
    assert one.table["instruction"].tolist() == ["Use the letter a.", "Say aaa.", "Use the letter a.", "Say aaa."]
    other = build_triplets(tiny_model, _attribute(), tmp_path / "c", TripletConfig(**{**CONFIG.__dict__, "seed": 2}),
                           coherence=ConstantJudge(90), progress=False)
    assert other.table["response_ids"].map(tuple).tolist() != one.table["response_ids"].map(tuple).tolist()


def test_kept_rows_follow_both_judges(tiny_model, tmp_path):
    good = build_triplets(tiny_model, _attribute(lambda r: 100.0), tmp_path / "g", CONFIG, coherence=ConstantJudge(90), progress=False)
    assert good.table["kept"].all() and good.success_rate == 1.0
    assert (good.table["soft_label"] == 1.0).all()
    incoherent = build_triplets(tiny_model, _attribute(lambda r: 100.0), tmp_path / "i", CONFIG, coherence=ConstantJudge(20), progress=False)
    assert not incoherent.table["kept"].any()
    off = build_triplets(tiny_model, _attribute(lambda r: 10.0), tmp_path / "o", CONFIG, coherence=ConstantJudge(90), progress=False)
    assert not off.table["kept"].any()


def test_stored_rows_rebuild_aligned_pairs(tiny_model, tmp_path):
    triplets = build_triplets(tiny_model, _attribute(lambda r: 100.0), tmp_path / "t", CONFIG, coherence=ConstantJudge(90), progress=False)
    loaded = TripletSet.load(tmp_path / "t")
    assert loaded.meta["model_id"] == tiny_model.model_id
    pairs = loaded.pairs(tiny_model.tokenizer)
    assert len(pairs) == 4
    for pair, row in zip(pairs, loaded.table.itertuples()):
        assert list(pair.steered_ids[: pair.steered_start + pair.header_len]) == list(row.steered_prompt_ids)
        assert list(pair.span_ids[pair.header_len:]) == list(row.response_ids)
    assert loaded.to_dataset().num_rows == 4


def test_an_interrupted_run_resumes_with_the_same_samples(tiny_model, tmp_path):
    directory = tmp_path / "t"
    full = build_triplets(tiny_model, _attribute(), directory, CONFIG, coherence=ConstantJudge(90), progress=False)
    partial = full.table.iloc[:1]
    partial.to_parquet(directory / "triplets.parquet", index=False)  # as if stopped after one batch
    resumed = build_triplets(tiny_model, _attribute(), directory, CONFIG, coherence=ConstantJudge(90), progress=False)
    pd.testing.assert_frame_equal(resumed.table, full.table)


def test_another_run_in_the_same_directory_is_refused(tiny_model, tmp_path):
    build_triplets(tiny_model, _attribute(), tmp_path / "t", CONFIG, coherence=ConstantJudge(90), progress=False)
    with pytest.raises(ValueError, match="holds triplets of another run"):
        build_triplets(tiny_model, _attribute(), tmp_path / "t", TripletConfig(n_questions=2, max_new_tokens=8),
                       coherence=ConstantJudge(90), progress=False)


def test_triplets_of_another_sampler_version_are_refused(tiny_model, tmp_path, monkeypatch):
    from workbench.core.generation import GENERATION_VERSION
    from workbench.data import triplets

    build_triplets(tiny_model, _attribute(), tmp_path / "t", CONFIG, coherence=ConstantJudge(90), progress=False)
    monkeypatch.setattr(triplets, "GENERATION_VERSION", GENERATION_VERSION + 1)
    with pytest.raises(ValueError, match=f"generation: {GENERATION_VERSION} there, {GENERATION_VERSION + 1} here"):
        build_triplets(tiny_model, _attribute(), tmp_path / "t", CONFIG, coherence=ConstantJudge(90), progress=False)


def test_config_validation():
    with pytest.raises(ValueError, match="unknown instruction placement 'footer'"):
        TripletConfig(placement="footer")
    with pytest.raises(ValueError, match="threshold"):
        TripletConfig(threshold=120)
    with pytest.raises(ValueError, match="temperature"):
        TripletConfig(temperature=-1)


def test_unknown_attribute_is_named(tiny_model, tmp_path):
    with pytest.raises(KeyError, match="unknown attribute 'nope'"):
        build_triplets(tiny_model, "nope", tmp_path / "t", CONFIG, progress=False)
