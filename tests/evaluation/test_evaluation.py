"""Steering at equal coherence: the wiring of searches, targets and tables on planted judges, and
a real (tiny) run through generation."""

import math
import re
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from workbench.core.generation import Generation
from workbench.data.attributes import make_attribute
from workbench.evaluation import comparison as evaluation
from workbench.evaluation.comparison import EvalConfig, Method, compare_methods, standard_methods
from workbench.judges.base import Score
from workbench.judges.offline import FunctionJudge

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTIONS = [f"Question number {i}?" for i in range(30)]


class FakeSteerer:
    """Stands in for a steerer: what the planted generation and the evaluation cache read."""

    name = "fake"

    def __init__(self, strength, layers=(1,)):
        self.strength, self.layers = strength, layers
        self.info = SimpleNamespace(method="psr-mse", scope="single")

    def check_model(self, model):
        pass

    def apply(self, model, alpha=1.0, span=None):
        raise AssertionError("the planted generation never applies it")

    def params(self):
        return {"z": torch.tensor([self.strength])}


def planted_answers(model, questions, *, instruction=None, steerers=(), **kwargs):
    """Answers that spell out how they were steered, for judges that read it back."""
    push = sum(s.strength * a for s, a in steerers)
    return [Generation(q, instruction, [1], f"push={push:.6f} prompt={instruction is not None}", 1) for q in questions]


def _read(text):
    push = float(re.search(r"push=([\d.]+)", text).group(1))
    return push, "prompt=True" in text


# coherence falls 10 points per unit of push from 95 (85 with the prompt); attribute rises with it
COHERENCE = FunctionJudge(lambda r: max(0.0, (85.0 if _read(r)[1] else 95.0) - 10 * _read(r)[0]), name="coh")
ATTRIBUTE = FunctionJudge(lambda r: min(100.0, 10 * _read(r)[0] + (50.0 if _read(r)[1] else 0.0)), name="attr")


@pytest.fixture
def attribute():
    return make_attribute("planted", "Says how it was steered.", ["Be planted."], QUESTIONS, ATTRIBUTE)


def test_planted_comparison_finds_the_right_strengths_and_scores(tiny_model, attribute, monkeypatch):
    monkeypatch.setattr(evaluation, "generate_answers", planted_answers)
    steerers = {"weak": FakeSteerer(0.5), "strong": FakeSteerer(2.0, layers=tuple(range(3)))}
    config = EvalConfig(n_validation=4, n_test=5, tol=0.5, max_steps=12)
    comparison = compare_methods(tiny_model, attribute, steerers, config, coherence_judge=COHERENCE,
                                 plus_prompt="weak", progress=False)
    results = comparison.results.set_index(["method", "target"])
    assert list(comparison.results.columns) == evaluation.RESULT_COLUMNS
    assert set(results.index.get_level_values(0)) == {"no steering", "prompt", "weak", "strong", "PSR + prompt"}
    # coherence 80 needs push 1.5: alpha 3 for the weak steerer, 0.75 for the strong one
    assert results.loc[("weak", "C80"), "alpha"] == pytest.approx(3.0, abs=0.5 / 5)
    assert results.loc[("strong", "C80"), "alpha"] == pytest.approx(0.75, abs=0.5 / 20)
    assert results.loc[("strong", "C80"), "attribute"] == pytest.approx(15.0, abs=0.5)
    assert results.loc[("strong", "C80"), "layers"] == "0-2" and results.loc[("weak", "C80"), "layers"] == "1"
    # the prompt's own coherence is 85: Cp needs push 1.0
    assert comparison.meta["targets"]["Cp"] == pytest.approx(85.0)
    assert results.loc[("weak", "Cp"), "alpha"] == pytest.approx(2.0, abs=0.5 / 5)
    # stacked on the prompt the start is already at Cp: the strongest alpha within tol, not 0
    assert results.loc[("PSR + prompt", "Cp"), "alpha"] > 0
    assert results.loc[("PSR + prompt", "Cp"), "coherence"] == pytest.approx(85.0, abs=0.5)
    # from the prompt's 85, coherence 80 is push 0.5 further: attribute 50 + 5
    assert results.loc[("PSR + prompt", "C80"), "attribute"] == pytest.approx(55.0, abs=0.6)
    # knob-less methods: measured once, no alpha, same under both targets
    assert math.isnan(results.loc[("prompt", "C80"), "alpha"])
    assert results.loc[("prompt", "C80"), "attribute"] == results.loc[("prompt", "Cp"), "attribute"] == 50.0
    assert results.loc[("no steering", "C80"), "coherence"] == 95.0
    assert (comparison.results["n"] == 5).all() and (comparison.results["n_missing"] == 0).all()
    # every evaluation is kept, on both splits
    sweep = comparison.sweep
    assert {"validation", "test"} == set(sweep["split"])
    assert len(sweep[(sweep["method"] == "weak") & (sweep["split"] == "validation")]) >= 4
    assert len(comparison.searches) == 6


def test_unreachable_targets_are_reported(tiny_model, attribute, monkeypatch):
    monkeypatch.setattr(evaluation, "generate_answers", planted_answers)
    config = EvalConfig(n_validation=3, n_test=3, targets=(99.0,), max_steps=6)
    comparison = compare_methods(tiny_model, attribute, {"s": FakeSteerer(1.0)}, config,
                                 coherence_judge=COHERENCE, progress=False)
    row = comparison.results.set_index("method").loc["s"]
    assert not row["reached"] and "already at alpha=0" in row["note"]


def test_missing_scores_are_left_out_and_counted(tiny_model, attribute, monkeypatch):
    monkeypatch.setattr(evaluation, "generate_answers", planted_answers)
    class Flaky:
        name = "flaky"

        def score_batch(self, questions, responses):
            return [Score(None, "endpoint down") if i == 1 else Score(40.0) for i, _ in enumerate(questions)]

    flaky = Flaky()
    config = EvalConfig(n_validation=3, n_test=4, targets=(80.0,))
    comparison = compare_methods(tiny_model, attribute, [Method("no steering")], config, attribute_judge=flaky,
                                 coherence_judge=COHERENCE, progress=False)
    row = comparison.results.iloc[0]
    assert row["n"] == 4 and row["n_missing"] == 1 and row["attribute"] == 40.0


def test_comparison_saves_its_tables(tiny_model, attribute, monkeypatch, tmp_path):
    monkeypatch.setattr(evaluation, "generate_answers", planted_answers)
    config = EvalConfig(n_validation=3, n_test=3)
    comparison = compare_methods(tiny_model, attribute, {"s": FakeSteerer(1.0)}, config,
                                 coherence_judge=COHERENCE, progress=False)
    comparison.save(tmp_path)
    back = pd.read_csv(tmp_path / "results.csv")
    assert back["attribute"].tolist() == pytest.approx(comparison.results["attribute"].tolist(), rel=1e-5)
    assert (tmp_path / "sweep.csv").exists() and (tmp_path / "samples.csv").exists()
    assert "s @ C80" in (tmp_path / "comparison.json").read_text()


def test_bad_comparisons(tiny_model, attribute):
    with pytest.raises(ValueError, match="plus_prompt 'x'"):
        standard_methods({"s": FakeSteerer(1.0)}, plus_prompt="x")
    with pytest.raises(ValueError, match="distinct"):
        compare_methods(tiny_model, attribute, [Method("a"), Method("a")], progress=False)
    with pytest.raises(ValueError, match="coherence target"):
        EvalConfig(targets=(120.0,))
    with pytest.raises(ValueError, match="instruction index 3"):
        compare_methods(tiny_model, attribute, [Method("a")], EvalConfig(instruction=3), progress=False)
    with pytest.raises(ValueError, match="non-empty name"):
        Method(" ")


def test_a_tiny_real_comparison_is_reproducible(tiny_model, attribute):
    from tiny_triplets import make_tiny_pairs

    from workbench.steering import TrainConfig, train_steerer

    pairs = make_tiny_pairs(tiny_model)
    psr = train_steerer("psr-mse", tiny_model, 1.0, layers=1, pairs=pairs, config=TrainConfig(steps=20), progress=False)
    length = FunctionJudge(lambda r: min(100.0, 2.0 * len(r)), name="length")
    config = EvalConfig(n_validation=2, n_test=2, max_new_tokens=6, max_steps=3, targets=(50.0,))
    runs = [compare_methods(tiny_model, attribute, {"S-PSR": psr}, config, attribute_judge=length,
                            coherence_judge=length, progress=False)
            for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0].results, runs[1].results)
    assert len(runs[0].samples) == len(runs[0].sweep) * 2
    assert runs[0].samples["response"].map(len).gt(0).any()


def test_evaluations_are_kept_on_disk_and_reused(tiny_model, attribute, monkeypatch, tmp_path):
    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs.get("steerers"))
        return planted_answers(*args, **kwargs)

    monkeypatch.setattr(evaluation, "generate_answers", counting)
    config = EvalConfig(n_validation=3, n_test=3, targets=(80.0,), tol=0.5)
    first = compare_methods(tiny_model, attribute, {"s": FakeSteerer(1.0)}, config, coherence_judge=COHERENCE,
                            progress=False, cache_dir=tmp_path)
    n_first = len(calls)
    assert n_first > 2 and len(list(tmp_path.glob("*.parquet"))) == n_first
    again = compare_methods(tiny_model, attribute, {"s": FakeSteerer(1.0)}, config, coherence_judge=COHERENCE,
                            progress=False, cache_dir=tmp_path)
    assert len(calls) == n_first  # nothing generated twice
    pd.testing.assert_frame_equal(first.results, again.results)
    # another steerer (other parameters) is not served from the cache
    compare_methods(tiny_model, attribute, {"s": FakeSteerer(2.0)}, config, coherence_judge=COHERENCE,
                    progress=False, cache_dir=tmp_path)
    assert len(calls) > n_first


def test_alpha_zero_shares_the_unsteered_answers(tiny_model, attribute, monkeypatch):
    calls = []

    def counting(model, questions, *, instruction=None, steerers=(), **kwargs):
        calls.append((instruction is not None, tuple(a for _, a in steerers)))
        return planted_answers(model, questions, instruction=instruction, steerers=steerers, **kwargs)

    monkeypatch.setattr(evaluation, "generate_answers", counting)
    config = EvalConfig(n_validation=3, n_test=3, targets=(80.0, "prompt"), tol=0.5)
    comparison = compare_methods(tiny_model, attribute, {"a": FakeSteerer(1.0), "b": FakeSteerer(2.0)}, config,
                                 coherence_judge=COHERENCE, plus_prompt="a", progress=False)
    unsteered = [c for c in calls if c[1] == ()]
    # no steering and prompt, on validation and test: four runs, whatever the number of methods at alpha 0
    assert sorted(unsteered) == [(False, ()), (False, ()), (True, ()), (True, ())]
    sweep = comparison.sweep
    at_zero = sweep[(sweep["alpha"] == 0) & (sweep["split"] == "validation")].set_index("method")["coherence"]
    assert at_zero["a"] == at_zero["b"] == 95.0 and at_zero["PSR + prompt"] == at_zero["prompt"] == 85.0


def test_differences_are_paired_intervals_per_target(tiny_model, attribute, monkeypatch, tmp_path):
    monkeypatch.setattr(evaluation, "generate_answers", planted_answers)
    config = EvalConfig(n_validation=4, n_test=5, tol=0.5, max_steps=12)
    comparison = compare_methods(tiny_model, attribute, {"Const-DiM": FakeSteerer(0.5), "A-PSR": FakeSteerer(2.0)},
                                 config, coherence_judge=COHERENCE, progress=False)
    diffs = comparison.differences()
    assert list(diffs.columns) == evaluation.DIFFERENCE_COLUMNS
    pairs = set(zip(diffs["target"], diffs["a"], diffs["b"]))
    assert {("C80", "A-PSR", "prompt"), ("Cp", "A-PSR", "Const-DiM"), ("C80", "no steering", "prompt")} <= pairs
    row = diffs.set_index(["target", "a", "b"]).loc[("C80", "A-PSR", "prompt")]
    # every test question: A-PSR at coherence 80 scores 15, the prompt 50 (a planted -35 on each question)
    assert (row["difference"], row["lo"], row["hi"], row["n"]) == pytest.approx((-35.0, -35.0, -35.0, 5))
    assert row["verdict"] == "prompt beats A-PSR"
    # both reach coherence 80 at the same push: the same answers, a difference of exactly 0
    same = diffs.set_index(["target", "a", "b"]).loc[("C80", "A-PSR", "Const-DiM")]
    assert same["difference"] == 0 and same["verdict"] == "not separable at this n"
    assert comparison.test_scores("A-PSR", "C80").index.tolist() == list(attribute.questions("test")[:5])
    comparison.save(tmp_path)
    assert pd.read_csv(tmp_path / "differences.csv")["verdict"].tolist() == diffs["verdict"].tolist()
    with pytest.raises(ValueError, match="contrast"):
        comparison.differences([("A-PSR", "nobody")])


def seeded_answers(model, questions, *, instruction=None, steerers=(), seed=0, **kwargs):
    """Answers that carry their generation seed: an odd seed writes the attribute."""
    return [Generation(q, instruction, [1], f"push=0 seed={seed} {'arr' if seed % 2 else 'plain'}", 1) for q in questions]


def test_several_samples_per_question_resample_questions(tiny_model, attribute, monkeypatch, tmp_path):
    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs["seed"])
        return seeded_answers(*args, **kwargs)

    monkeypatch.setattr(evaluation, "generate_answers", counting)
    arr = FunctionJudge(lambda r: 100.0 if "arr" in r else 0.0, name="arr")
    flat = FunctionJudge(lambda r: 90.0, name="flat")
    methods = [Method("no steering"), Method("prompt", prompt=True)]
    one = compare_methods(tiny_model, attribute, methods, EvalConfig(n_validation=2, n_test=4, targets=(80.0,)),
                          attribute_judge=arr, coherence_judge=flat, progress=False, cache_dir=tmp_path)
    two = compare_methods(tiny_model, attribute, methods,
                          EvalConfig(n_validation=2, n_test=4, targets=(80.0,), samples_per_question=2),
                          attribute_judge=arr, coherence_judge=flat, progress=False, cache_dir=tmp_path)
    assert sorted(set(calls)) == [0, evaluation.SAMPLE_SEED_STRIDE]  # sample 0 keeps the seed of the 1-sample run
    assert (one.results["attribute"] == 0).all() and (two.results["attribute"] == 50).all()
    assert (two.results["n"] == 4).all()  # questions, not answers
    test = two.samples[(two.samples["split"] == "test") & (two.samples["method"] == "prompt")]
    assert len(test) == 8 and sorted(test["sample"].unique()) == [0, 1]
    assert two.test_scores("prompt", "C80").tolist() == [50.0] * 4
    assert len(list(tmp_path.glob("*.parquet"))) == 2 + 2  # two test runs each; the 2-sample ones stored apart


def test_one_sample_per_question_keeps_the_stored_cache_keys(tiny_model, attribute, monkeypatch):
    from workbench.core.fingerprint import fingerprint
    from workbench.core.generation import GENERATION_VERSION
    from workbench.judges.base import judge_fingerprint

    config = EvalConfig(n_validation=2, n_test=2)
    evaluator = evaluation.Evaluator(tiny_model, attribute, config, coherence_judge=COHERENCE, cache_dir="cache")
    method = Method("prompt", prompt=True)
    old_key = fingerprint(2, GENERATION_VERSION, tiny_model.model_id, attribute.name, "prompt", True, None, 0.0, "test",
                          list(attribute.questions("test")[:2]), attribute.instructions[0],
                          [config.max_new_tokens, config.temperature, config.top_p, config.seed],
                          judge_fingerprint(attribute.judge), judge_fingerprint(COHERENCE),
                          length=20)  # the key before samples_per_question existed
    assert evaluator._disk_path(method, 0.0, "test").name == f"{old_key}.parquet"
    two = evaluation.Evaluator(tiny_model, attribute, EvalConfig(n_validation=2, n_test=2, samples_per_question=2),
                               coherence_judge=COHERENCE, cache_dir="cache")
    assert two._disk_path(method, 0.0, "test").name != f"{old_key}.parquet"
    # answers generated by another version of the sampler are another evaluation
    monkeypatch.setattr(evaluation, "GENERATION_VERSION", GENERATION_VERSION + 1)
    assert evaluator._disk_path(method, 0.0, "test").name != f"{old_key}.parquet"
    with pytest.raises(ValueError, match="samples_per_question"):
        EvalConfig(samples_per_question=0)
