"""The one-call experiment: method names, configs, and a whole (tiny) run that resumes."""

from dataclasses import replace

import pandas as pd
import pytest

from workbench.app import experiment
from workbench.app.experiment import ExperimentConfig, run_experiment
from workbench.data.attributes import make_attribute
from workbench.evaluation.comparison import EvalConfig
from workbench.evaluation.data_efficiency import differences_pivot
from workbench.judges.offline import FunctionJudge
from workbench.steering.names import MethodSpec, parse_method

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name, spec", [
    ("Const-DiM", MethodSpec("Const-DiM", "const-dim", "single")),
    ("A-Const-MSE", MethodSpec("A-Const-MSE", "const-mse", "all")),
    ("S-PSR", MethodSpec("S-PSR", "psr-mse", "single")),
    ("A-PSR r4", MethodSpec("A-PSR r4", "psr-mse", "all", rank=4)),
    ("A-PSR (joint)", MethodSpec("A-PSR (joint)", "psr-mse", "all", training="joint")),
    ("S-PSR-LL", MethodSpec("S-PSR-LL", "psr-ll", "single", training="joint")),
    ("LoRA r8", MethodSpec("LoRA r8", "lora", "all", rank=8, training="joint")),
    ("LoRA r16", MethodSpec("LoRA r16", "lora", "all", rank=16, training="joint")),
    ("Fine-tune", MethodSpec("Fine-tune", "finetune", "all", training="joint")),
])
def test_method_names(name, spec):
    assert parse_method(name) == spec


@pytest.mark.parametrize("name, match", [
    ("PSR", "say where PSR acts"), ("Const-DiM r2", "rank 1"), ("Const-DiM (joint)", "closed-form"),
    ("ReFT", "unknown method name 'ReFT'"), ("LoRA", "say the LoRA's rank"), ("LoRA r0", "rank must be >= 1"),
])
def test_bad_method_names(name, match):
    with pytest.raises(ValueError, match=match):
        parse_method(name)


def test_config_validation():
    with pytest.raises(ValueError, match="plus_prompt 'A-PSR'"):
        ExperimentConfig(methods=("S-PSR",))
    with pytest.raises(ValueError, match="repeat"):
        ExperimentConfig(methods=("S-PSR", "S-PSR"), plus_prompt=None)
    with pytest.raises(ValueError, match="n_train"):
        ExperimentConfig(n_train=0)
    full = ExperimentConfig.full(seed=3)
    assert full.seed == 3 and full.n_train is None and "A-PSR (joint)" in full.methods
    assert ExperimentConfig.quick().to_dict()["evaluation"]["targets"] == [80.0, "prompt"]


QUESTIONS = [f"Tell me about thing number {i}, please?" for i in range(40)]
ALWAYS = FunctionJudge(lambda r: 100.0, name="always")
LENGTH = FunctionJudge(lambda r: min(100.0, 3.0 * len(r)), name="length")


@pytest.fixture
def planted_attribute():
    return make_attribute("talky", "Says anything at all.", ["You talk a lot.", "Talk, talk, talk."], QUESTIONS,
                          lambda r: 60.0 + min(40.0, len(r)), paraphrases=["Be very talkative."])


def test_a_tiny_experiment_end_to_end_and_resumed(tiny_model, planted_attribute, tmp_path, monkeypatch):
    config = ExperimentConfig(n_train=6, n_heldout=3, max_new_tokens=6, steps=10, batch_size=8,
                              methods=("Const-DiM", "S-PSR", "A-PSR"),
                              evaluation=EvalConfig(n_validation=2, n_test=3, max_new_tokens=6, max_steps=3,
                                                    targets=(50.0,)))
    kwargs = dict(attribute=planted_attribute, coherence_judge=LENGTH, triplet_coherence=ALWAYS, progress=False)
    result = run_experiment(tiny_model, config, tmp_path, **kwargs)

    assert set(result.results["method"]) == {"no steering", "prompt", "Const-DiM", "S-PSR", "A-PSR", "PSR + prompt"}
    assert result.meta["single_layer"] == 1 and result.meta["n_train_kept"] == 6
    faith = result.faithfulness.set_index(["method", "layer"])["rel_rmse"]
    assert set(result.faithfulness["method"]) == {"no steering", "Const-DiM", "S-PSR", "A-PSR", "paraphrase",
                                                  "Const-DiM @C50", "S-PSR @C50", "A-PSR @C50"}
    # single-layer methods act at layer 1: layer 0 is untouched (exactly "no steering")
    assert faith[("S-PSR", 0)] == pytest.approx(1.0, abs=1e-6) and faith[("Const-DiM", 0)] == pytest.approx(1.0, abs=1e-6)
    # the all-layer fit moves layer 0 towards the prompt (its local delta there is the accumulated one)
    assert faith[("A-PSR", 0)] < 1.0
    for name in ("results.csv", "faithfulness.csv", "sweep.csv", "samples.csv", "experiment.json"):
        assert (tmp_path / name).is_file()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "faithfulness.csv"), result.faithfulness, rtol=1e-5,
                                  check_dtype=False)
    assert len(list((tmp_path / "steerers").glob("*.safetensors"))) == 3

    # a second call trains nothing, generates nothing and measures nothing: all of it comes from disk
    def refuse(*args, **kwargs):
        raise AssertionError("recomputed something that was stored")

    monkeypatch.setattr(experiment, "train_steerer", refuse)
    monkeypatch.setattr("workbench.evaluation.comparison.generate_answers", refuse)
    monkeypatch.setattr(experiment, "faithfulness", refuse)
    again = run_experiment(tiny_model, config, tmp_path, **kwargs)
    pd.testing.assert_frame_equal(again.results, result.results)
    pd.testing.assert_frame_equal(again.faithfulness, result.faithfulness)


def test_too_few_kept_triplets_is_a_clear_error(tiny_model, planted_attribute, tmp_path):
    never = FunctionJudge(lambda r: 0.0, name="never")
    config = ExperimentConfig(n_train=3, n_heldout=2, max_new_tokens=4, methods=("S-PSR",), plus_prompt=None)
    with pytest.raises(RuntimeError, match="only 0 of 3 prompt-steered samples of 'talky' were kept"):
        run_experiment(tiny_model, config, tmp_path, attribute=planted_attribute, triplet_coherence=never,
                       progress=False)


def test_the_same_call_runs_with_an_llm_judge_endpoint(tiny_model, planted_attribute, tmp_path):
    """The TA@C comparison scored by an OpenAI-compatible judge (a scripted server on 127.0.0.1):
    coherence falls with the answer's length, so the strength search has something to find."""
    from judges.fake_judge_server import FakeServer, Reply, completion

    from workbench.judges.llm_client import LLMJudgeConfig
    from workbench.judges.llm_judges import make_llm_judges

    server = FakeServer()

    def reply(body):
        prompt = body["messages"][0]["content"]
        answer = prompt.split("[Reply]\n")[1].split("\n[End of reply]")[0]
        value = str(max(0, 100 - 4 * len(answer.split()))) if "for coherence only" in prompt else "70"
        return Reply(body=completion(value, top={value: 0.9, "x": 0.1}))

    server.default = reply
    try:
        judge_config = LLMJudgeConfig(base_url=server.url, model="judge-model", api_key="sk-SECRET",
                                      cache_dir=tmp_path / "judge-cache", timeout_s=5, max_total_s=10)
        attribute_judge, coherence_judge = make_llm_judges(judge_config, planted_attribute.description)
        config = ExperimentConfig(n_train=4, n_heldout=2, max_new_tokens=6, steps=5, methods=("S-PSR",),
                                  plus_prompt=None,
                                  evaluation=EvalConfig(n_validation=2, n_test=2, max_new_tokens=6, max_steps=3,
                                                        targets=(80.0,)))
        result = run_experiment(tiny_model, config, tmp_path / "run", attribute=planted_attribute,
                                attribute_judge=attribute_judge, coherence_judge=coherence_judge,
                                triplet_coherence=ALWAYS, progress=False)
    finally:
        server.close()
    assert server.n > 0
    rows = result.results.set_index("method")
    assert (rows["attribute"] == 70.0).all() and (rows["n_missing"] == 0).all()
    assert result.meta["comparison"]["attribute_judge"] == f"llm_attribute@{server.url}/judge-model"
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".csv"):
            assert "sk-SECRET" not in path.read_text()
    assert not any("sk-SECRET" in p.read_text() for p in (tmp_path / "judge-cache").rglob("*") if p.is_file())


def test_config_round_trips_through_its_dict():
    for config in (ExperimentConfig.quick(layer=7), ExperimentConfig.full()):
        assert ExperimentConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown experiment setting"):
        ExperimentConfig.from_dict({**ExperimentConfig().to_dict(), "lr": 1.0})


def test_a_fresh_run_is_reproduced_from_its_seed(tiny_model, planted_attribute, tmp_path):
    config = ExperimentConfig(n_train=5, n_heldout=2, max_new_tokens=6, steps=8, methods=("Const-DiM", "A-PSR"),
                              evaluation=EvalConfig(n_validation=2, n_test=2, max_new_tokens=5, max_steps=3))
    kwargs = dict(attribute=planted_attribute, coherence_judge=LENGTH, triplet_coherence=ALWAYS, progress=False)
    first = run_experiment(tiny_model, config, tmp_path / "a", **kwargs)
    second = run_experiment(tiny_model, config, tmp_path / "b", **kwargs)
    pd.testing.assert_frame_equal(first.results, second.results)
    pd.testing.assert_frame_equal(first.faithfulness, second.faithfulness)
    other = run_experiment(tiny_model, replace(config, seed=1), tmp_path / "c", **kwargs)
    assert not other.data.triplets.table["response"].equals(first.data.triplets.table["response"])


def test_prepared_data_is_not_prepared_twice(tiny_model, planted_attribute, tmp_path, monkeypatch):
    config = ExperimentConfig(n_train=4, n_heldout=2, max_new_tokens=5, steps=3, methods=("Const-DiM",),
                              plus_prompt=None,
                              evaluation=EvalConfig(n_validation=2, n_test=2, max_new_tokens=4, max_steps=3))
    kwargs = dict(attribute=planted_attribute, coherence_judge=LENGTH, progress=False)
    data = experiment.prepare_data(tiny_model, planted_attribute, tmp_path, config, triplet_coherence=ALWAYS,
                                   progress=False)

    def refuse(*args, **kwargs):
        raise AssertionError("prepared the data again")

    monkeypatch.setattr(experiment, "prepare_data", refuse)
    result = run_experiment(tiny_model, config, tmp_path, data=data, **kwargs)
    assert result.data is data
    other = make_attribute("other", "x", ["Be other."], QUESTIONS, lambda r: 50.0)
    with pytest.raises(ValueError, match="prepared data is of 'talky'"):
        run_experiment(tiny_model, config, tmp_path, data=data, **{**kwargs, "attribute": other})


def test_weight_space_methods_train_compare_and_resume(tiny_model, planted_attribute, tmp_path, monkeypatch):
    """LoRA and Fine-tune go through the same run as the steerers: trained on the kept triplets,
    searched at equal coherence, measured for faithfulness, stored, reloaded; an interrupted
    training is refused when resumed with other settings."""
    config = ExperimentConfig(n_train=6, n_heldout=3, max_new_tokens=6, steps=10, batch_size=8, weight_steps=2,
                              weight_lr=1e-3, methods=("Const-DiM", "LoRA r2", "Fine-tune"), plus_prompt=None,
                              evaluation=EvalConfig(n_validation=2, n_test=3, max_new_tokens=6, max_steps=2,
                                                    targets=(50.0,)))
    kwargs = dict(attribute=planted_attribute, coherence_judge=LENGTH, triplet_coherence=ALWAYS, progress=False)
    result = run_experiment(tiny_model, config, tmp_path, **kwargs)
    assert {"LoRA r2", "Fine-tune"} <= set(result.results["method"])
    assert {"LoRA r2", "Fine-tune", "LoRA r2 @C50"} <= set(result.faithfulness["method"])
    lora = result.meta["steerers"]["LoRA r2"]
    assert lora["training"]["seconds"] > 0 and lora["trained_params"] > 0 and lora["rank"] == 2
    assert result.steerers["LoRA r2"].info.n_train == 6 and result.steerers["LoRA r2"].info.history["steps"] == 2
    assert len(list((tmp_path / "steerers").glob("lora-r2-*.safetensors"))) == 1
    assert not list((tmp_path / "steerers").glob("*.partial.safetensors"))  # removed once trained

    monkeypatch.setattr(experiment, "train_weights", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again = run_experiment(tiny_model, config, tmp_path, **kwargs)
    pd.testing.assert_frame_equal(again.results, result.results)
    assert again.meta["steerers"]["LoRA r2"]["training"] == lora["training"]
    monkeypatch.undo()

    # an interrupted training (its checkpoint left behind) resumed with another learning rate
    from workbench.steering.weights_train import WeightTrainConfig, train_weights

    partial = tmp_path / "other" / "steerers" / "lora-r2.partial.safetensors"
    data = experiment.prepare_data(tiny_model, planted_attribute, tmp_path, config, triplet_coherence=ALWAYS,
                                   progress=False)
    import workbench.steering.weights_train as wt

    def stop(*args):
        original(*args)
        raise KeyboardInterrupt

    original, wt._write_checkpoint = wt._write_checkpoint, stop
    try:
        with pytest.raises(KeyboardInterrupt):
            train_weights(tiny_model, data.pairs, "lora", rank=2, checkpoint=partial, progress=False,
                          config=WeightTrainConfig(steps=4, eval_every=1, lr=1e-3, seed=config.seed))
    finally:
        wt._write_checkpoint = original
    with pytest.raises(ValueError, match="interrupted training made with other settings"):
        experiment.train_methods(tiny_model, data, replace(config, methods=("LoRA r2",)), tmp_path / "other" / "steerers",
                                 progress=False)


def test_subsets_are_nested_and_keep_their_labels(tiny_model, planted_attribute, tmp_path):
    config = ExperimentConfig(n_train=6, n_heldout=2, max_new_tokens=6, methods=("Const-DiM",), plus_prompt=None)
    data = experiment.prepare_data(tiny_model, planted_attribute, tmp_path, config, triplet_coherence=ALWAYS,
                                   progress=False)
    small = experiment.subset_data(tiny_model, data, 2, tmp_path / "n2", seed=0, progress=False)
    large = experiment.subset_data(tiny_model, data, 4, tmp_path / "n4", seed=0, progress=False)
    assert set(small.subset) <= set(large.subset) and len(large.pairs) == 4 and len(large.store.sample_ids) == 4
    assert small.soft_labels == [data.soft_labels[i] for i in small.subset]
    assert small.pairs == [data.pairs[i] for i in small.subset]
    with pytest.raises(ValueError, match="1 <= n <= 6"):
        experiment.subset_data(tiny_model, data, 7, tmp_path / "n7", progress=False)


def test_data_efficiency_trains_every_method_on_nested_subsets(tiny_model, planted_attribute, tmp_path):
    config = ExperimentConfig(n_train=6, n_heldout=2, max_new_tokens=6, steps=5, weight_steps=1,
                              methods=("Const-DiM",), plus_prompt=None,
                              evaluation=EvalConfig(n_validation=2, n_test=3, max_new_tokens=6, max_steps=2))
    data = experiment.prepare_data(tiny_model, planted_attribute, tmp_path, config, triplet_coherence=ALWAYS,
                                   progress=False)
    table = experiment.run_data_efficiency(tiny_model, data, config, tmp_path / "eff", sizes=(2, 4, 99, None),
                                           methods=("Const-DiM", "LoRA r2"), target=50.0, coherence_judge=LENGTH,
                                           progress=False)
    assert sorted(set(table["n_train"])) == [2, 4, 6]
    assert set(table["method"]) == {"no steering", "prompt", "Const-DiM", "LoRA r2"}
    assert set(table["target"]) == {"C50"} and table["n"].eq(3).all()
    prompt = table[table["method"] == "prompt"]["attribute"]
    assert prompt.nunique() == 1  # the prompt uses no triplets: the same answers at every size
    assert set(table.attrs["training"]) == {2, 4, 6} and table.attrs["training"][2]["LoRA r2"]["seconds"] > 0
    assert (tmp_path / "eff" / "efficiency.csv").is_file()
    assert len(list((tmp_path / "eff" / "n2" / "steerers").glob("lora-r2-*.safetensors"))) == 1


def test_data_efficiency_reads_what_the_experiment_measured(tiny_model, planted_attribute, tmp_path):
    """With ``shared_run``, the all-triplets size uses the experiment's steerers and evaluations:
    nothing new is trained or generated for it, and its numbers are the experiment's."""
    config = ExperimentConfig(n_train=6, n_heldout=2, max_new_tokens=6, steps=5, methods=("Const-DiM",),
                              plus_prompt=None,
                              evaluation=EvalConfig(n_validation=2, n_test=3, max_new_tokens=6, max_steps=2,
                                                    targets=(50.0,)))
    kwargs = dict(attribute=planted_attribute, triplet_coherence=ALWAYS, coherence_judge=LENGTH, progress=False)
    result = run_experiment(tiny_model, config, tmp_path, **kwargs)
    steerers = sorted((tmp_path / "steerers").glob("*.safetensors"))
    evaluations = sorted((tmp_path / "evaluations").glob("*"))
    data = experiment.prepare_data(tiny_model, planted_attribute, tmp_path, config, triplet_coherence=ALWAYS,
                                   progress=False)
    table = experiment.run_data_efficiency(tiny_model, data, config, tmp_path / "eff", sizes=(None,),
                                           methods=("Const-DiM",), target=50.0, coherence_judge=LENGTH,
                                           progress=False, shared_run=tmp_path)
    assert sorted((tmp_path / "steerers").glob("*.safetensors")) == steerers
    assert sorted((tmp_path / "evaluations").glob("*")) == evaluations  # every answer was read, none made
    assert not (tmp_path / "eff" / "evaluations").exists() and not list((tmp_path / "eff").glob("n*"))
    measured = result.results.set_index("method")
    for method in ("prompt", "Const-DiM"):
        row = table[table["method"] == method].iloc[0]
        assert row["attribute"] == pytest.approx(measured.loc[method, "attribute"])
    # the paired differences at that size are the experiment's own, written beside the table
    paired = pd.read_csv(tmp_path / "eff" / "differences.csv")
    assert list(paired[["a", "b"]].itertuples(index=False, name=None)) == \
        list(table.attrs["differences"][["a", "b"]].itertuples(index=False, name=None))
    ours = paired.set_index(["a", "b"]).loc[("Const-DiM", "prompt")]
    theirs = pd.read_csv(tmp_path / "differences.csv").set_index(["a", "b"]).loc[("Const-DiM", "prompt")]
    assert ours["difference"] == pytest.approx(theirs["difference"]) and ours["lo"] == pytest.approx(theirs["lo"])
    assert ours["n_train"] == len(data.pairs)


def test_differences_pivot_marks_only_called_differences():
    paired = pd.DataFrame({"a": ["A-PSR", "A-PSR"], "b": ["prompt", "LoRA r8"], "difference": [5.0, 30.0],
                           "lo": [-2.0, 10.0], "hi": [12.0, 50.0], "n_train": [8, 8],
                           "verdict": ["not separable at this n", "A-PSR beats LoRA r8"]})
    pivot = differences_pivot(paired)
    assert list(pivot.index) == ["A-PSR - prompt", "A-PSR - LoRA r8"]
    assert pivot.loc["A-PSR - prompt", 8] == "+5.0 [-2.0, +12.0]"
    assert pivot.loc["A-PSR - LoRA r8", 8] == "+30.0 [+10.0, +50.0] *"
