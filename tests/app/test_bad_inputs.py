"""Every public input is checked at the door: a bad value is a clear error naming the argument and
the value, before any sampling or extraction; the good values users pass (numpy scalars, numpy
integer layers, one int for one layer) work.

``REFUSED`` and ``ACCEPTED`` are the inventory: each entry is one input tried on the tiny model.
"""

import json
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import workbench.app.experiment as experiment
from workbench.activations.deltas import extract_deltas
from workbench.activations.plan import plan_extraction
from workbench.app.experiment import ExperimentConfig, run_experiment
from workbench.core.generation import SamplingConfig, generate, generate_answers
from workbench.data.attributes import make_attribute
from workbench.data.triplets import TripletConfig, build_triplets
from workbench.evaluation.attribute_check import check_attributes
from workbench.evaluation.comparison import EvalConfig, Evaluator, compare_methods
from workbench.evaluation.faithfulness import faithfulness
from workbench.steering import ConstSteerer, SteererInfo, TrainConfig, check_alpha, train_steerer

NAN, INF = float("nan"), float("inf")
QUESTIONS = ["a?", "b?", "c?", "d?", "e?"]
SCORER = lambda r: 100.0  # noqa: E731


@pytest.fixture(scope="module")
def ctx(tiny_model, tmp_path_factory):
    """The tiny model, its aligned pairs, a constant steerer on it, and a scratch directory."""
    from tiny_triplets import make_tiny_pairs

    info = SteererInfo("const-dim", "single", "layerwise", (1,), 1, tiny_model.model_id, tiny_model.d_model,
                       tiny_model.n_layers)
    steerer = ConstSteerer(info, torch.full((1, 1, tiny_model.d_model), 0.05))
    return SimpleNamespace(model=tiny_model, pairs=make_tiny_pairs(tiny_model), steerer=steerer,
                           tmp=tmp_path_factory.mktemp("bad-inputs"))


def _answers(c, questions=("Why?",), **kwargs):
    return generate_answers(c.model, questions, config=SamplingConfig(max_new_tokens=3, temperature=0), progress=False,
                            **kwargs)


#: name -> (call on ctx, error type, fragments the message must hold: the argument and the value)
REFUSED = {
    # TripletConfig
    "TripletConfig batch_size=-1 (was 0 triplets, no error)": (
        lambda c: TripletConfig(batch_size=-1), ValueError, ["TripletConfig: batch_size", ">= 1", "got -1"]),
    "TripletConfig batch_size=0 (was range() arg 3 must not be zero)": (
        lambda c: TripletConfig(batch_size=0), ValueError, ["TripletConfig: batch_size", "got 0"]),
    "TripletConfig n_questions=2.5": (lambda c: TripletConfig(n_questions=2.5), TypeError, ["n_questions", "2.5"]),
    "TripletConfig samples_per_question=2.5": (
        lambda c: TripletConfig(samples_per_question=2.5), TypeError, ["samples_per_question", "2.5"]),
    "TripletConfig n_questions=0": (lambda c: TripletConfig(n_questions=0), ValueError, ["n_questions", "got 0"]),
    "TripletConfig n_questions=2.0": (lambda c: TripletConfig(n_questions=2.0), TypeError, ["n_questions", "2.0"]),
    "TripletConfig threshold=nan": (lambda c: TripletConfig(threshold=NAN), ValueError, ["threshold", "nan"]),
    "TripletConfig threshold=120": (lambda c: TripletConfig(threshold=120), ValueError, ["threshold", "120"]),
    "TripletConfig temperature=inf": (
        lambda c: TripletConfig(temperature=INF), ValueError, ["TripletConfig: temperature", "inf"]),
    "TripletConfig max_new_tokens=True": (
        lambda c: TripletConfig(max_new_tokens=True), TypeError, ["max_new_tokens", "True"]),
    "TripletConfig split='dev'": (lambda c: TripletConfig(split="dev"), ValueError, ["split", "'dev'"]),
    "TripletConfig seed=1.5": (lambda c: TripletConfig(seed=1.5), TypeError, ["seed", "1.5"]),
    "TripletConfig base_system=0": (lambda c: TripletConfig(base_system=0), TypeError, ["base_system", "int"]),
    # SamplingConfig
    "SamplingConfig max_new_tokens=2.5 (was deep in generation)": (
        lambda c: SamplingConfig(max_new_tokens=2.5), TypeError, ["SamplingConfig: max_new_tokens", "2.5"]),
    "SamplingConfig temperature=nan (was accepted)": (
        lambda c: SamplingConfig(temperature=NAN), ValueError, ["temperature", "nan"]),
    "SamplingConfig temperature=inf (was accepted)": (
        lambda c: SamplingConfig(temperature=INF), ValueError, ["temperature", "inf"]),
    "SamplingConfig temperature=-0.1": (
        lambda c: SamplingConfig(temperature=-0.1), ValueError, ["temperature", "-0.1"]),
    "SamplingConfig temperature='0.7'": (
        lambda c: SamplingConfig(temperature="0.7"), TypeError, ["temperature", "'0.7'"]),
    "SamplingConfig top_p=0": (lambda c: SamplingConfig(top_p=0), ValueError, ["top_p", "(0, 1]", "got 0"]),
    "SamplingConfig top_p=1.5": (lambda c: SamplingConfig(top_p=1.5), ValueError, ["top_p", "1.5"]),
    "SamplingConfig top_p=nan": (lambda c: SamplingConfig(top_p=NAN), ValueError, ["top_p", "nan"]),
    # EvalConfig
    "EvalConfig tol=-1 (was accepted)": (lambda c: EvalConfig(tol=-1), ValueError, ["EvalConfig: tol", "> 0", "-1"]),
    "EvalConfig tol=0": (lambda c: EvalConfig(tol=0), ValueError, ["tol", "got 0"]),
    "EvalConfig tol=nan": (lambda c: EvalConfig(tol=NAN), ValueError, ["tol", "nan"]),
    "EvalConfig max_steps=0 (was accepted)": (lambda c: EvalConfig(max_steps=0), ValueError, ["max_steps", "got 0"]),
    "EvalConfig max_steps=1 (the search needs 2)": (
        lambda c: EvalConfig(max_steps=1), ValueError, ["max_steps", ">= 2"]),
    "EvalConfig max_steps=2.5": (lambda c: EvalConfig(max_steps=2.5), TypeError, ["max_steps", "2.5"]),
    "EvalConfig n_test=0": (lambda c: EvalConfig(n_test=0), ValueError, ["n_test", "got 0"]),
    "EvalConfig n_validation=1.5": (lambda c: EvalConfig(n_validation=1.5), TypeError, ["n_validation", "1.5"]),
    "EvalConfig samples_per_question=1.5": (
        lambda c: EvalConfig(samples_per_question=1.5), TypeError, ["samples_per_question", "1.5"]),
    "EvalConfig seed=-1 (numpy's bootstrap would fail last)": (
        lambda c: EvalConfig(seed=-1), ValueError, ["seed", "-1"]),
    "EvalConfig targets='prompt'": (lambda c: EvalConfig(targets="prompt"), TypeError, ["targets", "'prompt'"]),
    "EvalConfig targets=(120,)": (lambda c: EvalConfig(targets=(120.0,)), ValueError, ["targets[0]", "120.0"]),
    "EvalConfig targets=(nan,)": (lambda c: EvalConfig(targets=(NAN,)), ValueError, ["targets[0]", "nan"]),
    "EvalConfig targets=('C80',)": (lambda c: EvalConfig(targets=("C80",)), ValueError, ["targets[0]", "'C80'"]),
    "EvalConfig targets=(True,)": (lambda c: EvalConfig(targets=(True,)), TypeError, ["targets[0]", "True"]),
    "EvalConfig targets=()": (lambda c: EvalConfig(targets=()), ValueError, ["at least one coherence target"]),
    "EvalConfig alpha_max=200 (hooks refuse |alpha| > 100)": (
        lambda c: EvalConfig(alpha_max=200), ValueError, ["alpha_max", "200"]),
    "EvalConfig alpha_max below alpha_start": (lambda c: EvalConfig(alpha_max=0.5), ValueError, ["alpha_max", "0.5"]),
    "EvalConfig alpha_start=0": (lambda c: EvalConfig(alpha_start=0), ValueError, ["alpha_start", "got 0"]),
    "EvalConfig n_boot=0": (lambda c: EvalConfig(n_boot=0), ValueError, ["n_boot", "got 0"]),
    "EvalConfig batch_size=0": (lambda c: EvalConfig(batch_size=0), ValueError, ["batch_size", "got 0"]),
    "EvalConfig instruction=-1": (lambda c: EvalConfig(instruction=-1), ValueError, ["instruction", "-1"]),
    # TrainConfig
    "TrainConfig lr=inf": (lambda c: TrainConfig(lr=INF), ValueError, ["TrainConfig: lr", "inf"]),
    "TrainConfig lr=0": (lambda c: TrainConfig(lr=0), ValueError, ["lr", "got 0"]),
    "TrainConfig steps=2.5": (lambda c: TrainConfig(steps=2.5), TypeError, ["steps", "2.5"]),
    "TrainConfig val_fraction=1.0": (lambda c: TrainConfig(val_fraction=1.0), ValueError, ["val_fraction", "[0, 1)"]),
    "TrainConfig patience=-1": (lambda c: TrainConfig(patience=-1), ValueError, ["patience", "-1"]),
    "TrainConfig eval_every=0": (lambda c: TrainConfig(eval_every=0), ValueError, ["eval_every", "got 0"]),
    "TrainConfig reg_weight=nan": (lambda c: TrainConfig(reg_weight=NAN), ValueError, ["reg_weight", "nan"]),
    "TrainConfig batch_size=0": (lambda c: TrainConfig(batch_size=0), ValueError, ["batch_size", "got 0"]),
    # ExperimentConfig
    "ExperimentConfig layer=-1": (lambda c: ExperimentConfig(layer=-1), ValueError, ["ExperimentConfig: layer", "-1"]),
    "ExperimentConfig layer=1.5": (lambda c: ExperimentConfig(layer=1.5), TypeError, ["layer", "1.5"]),
    "ExperimentConfig n_train=0": (lambda c: ExperimentConfig(n_train=0), ValueError, ["n_train", "got 0"]),
    "ExperimentConfig methods='A-PSR'": (
        lambda c: ExperimentConfig(methods="A-PSR", plus_prompt=None), TypeError, ["methods", "'A-PSR'"]),
    "ExperimentConfig steps=-1": (lambda c: ExperimentConfig(steps=-1), ValueError, ["steps", "-1"]),
    "ExperimentConfig max_new_tokens=0": (lambda c: ExperimentConfig(max_new_tokens=0), ValueError, ["max_new_tokens"]),
    "ExperimentConfig weight_lr=0": (lambda c: ExperimentConfig(weight_lr=0), ValueError, ["weight_lr", "got 0"]),
    "ExperimentConfig samples_per_question=0": (
        lambda c: ExperimentConfig(samples_per_question=0), ValueError, ["samples_per_question", "got 0"]),
    "ExperimentConfig evaluation={}": (lambda c: ExperimentConfig(evaluation={}), TypeError, ["evaluation", "dict"]),
    # layers
    "extract_deltas layers=[0.9] (was layer 0)": (
        lambda c: extract_deltas(c.model, c.pairs, c.tmp / "x", layers=[0.9], progress=False), TypeError,
        ["layers[0]", "0.9"]),
    "extract_deltas layers='0,2'": (
        lambda c: extract_deltas(c.model, c.pairs, c.tmp / "x", layers="0,2", progress=False), TypeError,
        ["layers", "'0,2'"]),
    "extract_deltas layers=[True]": (
        lambda c: extract_deltas(c.model, c.pairs, c.tmp / "x", layers=[True], progress=False), TypeError,
        ["layers[0]", "True"]),
    "extract_deltas layers=[5]": (
        lambda c: extract_deltas(c.model, c.pairs, c.tmp / "x", layers=[5], progress=False), IndexError,
        ["layer index 5", "0..2"]),
    "extract_deltas layers=[]": (
        lambda c: extract_deltas(c.model, c.pairs, c.tmp / "x", layers=[], progress=False), ValueError,
        ["layers is empty"]),
    "extract_deltas batch_size=0": (
        lambda c: extract_deltas(c.model, c.pairs, c.tmp / "x", batch_size=0, progress=False), ValueError,
        ["batch_size", "got 0"]),
    "extract_deltas batch_size=2.5": (
        lambda c: extract_deltas(c.model, c.pairs, c.tmp / "x", batch_size=2.5, progress=False), TypeError,
        ["batch_size", "2.5"]),
    "extract_deltas sample_ids=[0.5, ...]": (
        lambda c: extract_deltas(c.model, c.pairs, c.tmp / "x", sample_ids=[0.5, 1, 2], progress=False), TypeError,
        ["sample_ids[0]", "0.5"]),
    "train_steerer layers=1.7 (was 'float' object is not iterable)": (
        lambda c: train_steerer("const-dim", c.model, 1.0, layers=1.7, pairs=c.pairs, progress=False), TypeError,
        ["layers", "1.7"]),
    "train_steerer layers=True": (
        lambda c: train_steerer("const-dim", c.model, 1.0, layers=True, pairs=c.pairs, progress=False), TypeError,
        ["layers", "True"]),
    "train_steerer layers=[1.0]": (
        lambda c: train_steerer("const-dim", c.model, 1.0, layers=[1.0], pairs=c.pairs, progress=False), TypeError,
        ["layers[0]", "1.0"]),
    "train_steerer layers=-1": (
        lambda c: train_steerer("const-dim", c.model, 1.0, layers=-1, pairs=c.pairs, progress=False), IndexError,
        ["layer index -1"]),
    "train_steerer rank=1.5": (
        lambda c: train_steerer("psr-mse", c.model, 1.0, layers=1, rank=1.5, pairs=c.pairs, progress=False),
        TypeError, ["rank", "1.5"]),
    "train_steerer config={'steps': 3}": (
        lambda c: train_steerer("psr-mse", c.model, 1.0, layers=1, config={"steps": 3}, pairs=c.pairs,
                                progress=False), TypeError, ["config", "TrainConfig", "dict"]),
    "LoadedModel.check_layers([0.9])": (lambda c: c.model.check_layers([0.9]), TypeError, ["layers[0]", "0.9"]),
    # strengths
    "steerer.at(nan)": (lambda c: c.steerer.at(NAN), ValueError, ["alpha must be finite", "nan"]),
    "steerer.at(inf)": (lambda c: c.steerer.at(INF), ValueError, ["alpha", "inf"]),
    "steerer.at(np.float32(nan))": (lambda c: c.steerer.at(np.float32("nan")), ValueError, ["alpha", "nan"]),
    "steerer.at('1.5')": (lambda c: c.steerer.at("1.5"), TypeError, ["alpha must be a number", "'1.5'"]),
    "steerer.at(True)": (lambda c: c.steerer.at(True), TypeError, ["alpha", "True"]),
    "steerer.at(1000)": (lambda c: c.steerer.at(1000), ValueError, ["alpha 1000", "sane range"]),
    # questions and steerers
    "generate_answers(m, 'Why?') (was four one-character questions)": (
        lambda c: _answers(c, "Why?"), TypeError, ["questions", "'Why?'", "pass a list"]),
    "generate_answers questions with a number": (
        lambda c: _answers(c, ["Why?", 3]), TypeError, ["questions[1]", "3"]),
    "generate_answers steerers=[steerer] (was cannot unpack)": (
        lambda c: _answers(c, steerers=[c.steerer]), TypeError,
        ["steerers[0]", "ConstSteerer without a strength", "steerer.at(1.5)", "(steerer, 1.5)"]),
    "generate_answers steerers=steerer.at(1.5), not in a list": (
        lambda c: _answers(c, steerers=c.steerer.at(1.5)), TypeError, ["steerers must be a list", "SteererAt"]),
    "generate_answers steerers=(steerer, 1.5), not in a list": (
        lambda c: _answers(c, steerers=(c.steerer, 1.5)), TypeError, ["steerers[0]", "without a strength"]),
    "generate_answers steerers=[(1.5, steerer)]": (
        lambda c: _answers(c, steerers=[(1.5, c.steerer)]), TypeError,
        ["steerers[0]", "holds a float", "(steerer, alpha)"]),
    "generate_answers steerers=[(steerer, nan)]": (
        lambda c: _answers(c, steerers=[(c.steerer, NAN)]), ValueError, ["alpha", "nan"]),
    "generate_answers batch_size=0": (lambda c: _answers(c, batch_size=0), ValueError, ["batch_size", "got 0"]),
    "generate_answers seed=1.5": (lambda c: _answers(c, seed=1.5), TypeError, ["seed", "1.5"]),
    "generate_answers config={...}": (
        lambda c: generate_answers(c.model, ["Why?"], config={"max_new_tokens": 3}, progress=False), TypeError,
        ["config", "SamplingConfig", "dict"]),
    "generate with a flat list of ids": (
        lambda c: generate(c.model, [1, 2, 3], SamplingConfig(temperature=0), progress=False), TypeError,
        ["prompts", "token id lists", "[ids]"]),
    "generate row_seeds=[0.5]": (
        lambda c: generate(c.model, [[1, 2]], SamplingConfig(max_new_tokens=2), row_seeds=[0.5], progress=False),
        TypeError, ["row_seeds[0]", "0.5"]),
    # the other entry points
    "build_triplets config={...}": (
        lambda c: build_triplets(c.model, "pirate", c.tmp / "t", {"n_questions": 2}, progress=False), TypeError,
        ["config", "TripletConfig", "dict"]),
    "compare_methods methods=[steerer]": (
        lambda c: compare_methods(c.model, "pirate", [c.steerer], progress=False), TypeError,
        ["methods[0]", "Method", "ConstSteerer"]),
    "Evaluator config={...}": (
        lambda c: Evaluator(c.model, "pirate", {"n_test": 2}), TypeError, ["config", "EvalConfig", "dict"]),
    "make_attribute instructions='Shout!' (was six one-letter instructions)": (
        lambda c: make_attribute("loud", "d", "Shout!", QUESTIONS, SCORER), TypeError, ["instructions", "'Shout!'"]),
    "make_attribute questions='a? b? c?'": (
        lambda c: make_attribute("loud", "d", ["Shout!"], "a? b? c?", SCORER), TypeError, ["questions", "'a? b? c?'"]),
    "make_attribute paraphrases='Yell!'": (
        lambda c: make_attribute("loud", "d", ["Shout!"], QUESTIONS, SCORER, paraphrases="Yell!"), TypeError,
        ["paraphrases", "'Yell!'"]),
    "make_attribute questions={'train': 'a?'}": (
        lambda c: make_attribute("loud", "d", ["Shout!"], {"train": "a?", "validation": ["b?"], "test": ["c?"]},
                                 SCORER), TypeError, ["questions['train']", "'a?'"]),
    "make_attribute split with nan": (
        lambda c: make_attribute("loud", "d", ["Shout!"], QUESTIONS, SCORER, split=(0.6, 0.2, NAN)), ValueError,
        ["split[2]", "nan"]),
    "make_attribute seed=0.5": (
        lambda c: make_attribute("loud", "d", ["Shout!"], QUESTIONS, SCORER, seed=0.5), TypeError, ["seed", "0.5"]),
    "faithfulness methods={'s': steerer}": (
        lambda c: faithfulness(c.model, c.pairs, {"s": c.steerer}), TypeError, ["methods['s']", "without a strength"]),
    "faithfulness batch_size=0 (was range() arg 3 must not be zero)": (
        lambda c: faithfulness(c.model, c.pairs, batch_size=0), ValueError, ["batch_size", "got 0"]),
    "faithfulness alpha=nan": (
        lambda c: faithfulness(c.model, c.pairs, {"s": (c.steerer, NAN)}), ValueError, ["alpha", "nan"]),
    "check_attributes n_questions=2.5": (
        lambda c: check_attributes(c.model, ["pirate"], 2.5, progress=False), TypeError, ["n_questions", "2.5"]),
    "plan_extraction n_triplets=-3": (lambda c: plan_extraction(c.model, -3), ValueError, ["n_triplets", "-3"]),
    "plan_extraction response_tokens=2.5": (
        lambda c: plan_extraction(c.model, 4, response_tokens=2.5), TypeError, ["response_tokens", "2.5"]),
}


def _same_answers(c, alpha):
    """Steered greedy answers at ``alpha`` equal those at the float it stands for."""
    given = _answers(c, ["Why?", "How?"], steerers=[(c.steerer, alpha)])
    plain = _answers(c, ["Why?", "How?"], steerers=[c.steerer.at(float(alpha))])
    return [a.ids for a in given] == [a.ids for a in plain]


def _serialisable(config) -> bool:
    json.dumps(asdict(config))
    return True


#: name -> call on ctx returning True when the input worked as it should
ACCEPTED = {
    "steerer.at(np.float32(1.5)) (was refused)": lambda c: c.steerer.at(np.float32(1.5)).alpha == 1.5,
    "np.float32(1.5) * steerer": lambda c: (np.float32(1.5) * c.steerer).alpha == 1.5,
    "check_alpha(np.float64(2))": lambda c: check_alpha(np.float64(2)) == 2.0,
    "check_alpha(one-element tensor)": lambda c: check_alpha(torch.tensor([0.5])) == 0.5,
    "generate_answers steerers=[(steerer, np.float32(1.5))]": lambda c: _same_answers(c, np.float32(1.5)),
    "generate_answers questions as a tuple": lambda c: len(_answers(c, ("Why?", "How?"))) == 2,
    "generate_answers seed=np.int64(3)": lambda c: _answers(c, seed=np.int64(3))[0].question == "Why?",
    "extract_deltas layers=np.array([0, 2])": lambda c: extract_deltas(
        c.model, c.pairs, c.tmp / "np-layers", layers=np.array([0, 2]), progress=False).layers == [0, 2],
    "extract_deltas layers=[np.int64(1)], batch_size=np.int64(2)": lambda c: extract_deltas(
        c.model, c.pairs, c.tmp / "np-layer", layers=[np.int64(1)], batch_size=np.int64(2),
        progress=False).layers == [1],
    "train_steerer layers=np.int64(1) is a single-layer steerer": lambda c: train_steerer(
        "const-dim", c.model, 1.0, layers=np.int64(1), pairs=c.pairs, progress=False).name == "Const-DiM",
    "LoadedModel.check_layers(1): one int is that layer": lambda c: c.model.check_layers(1) == [1],
    "TripletConfig numpy counts stay JSON-serialisable": lambda c: _serialisable(
        TripletConfig(n_questions=np.int64(2), batch_size=np.int32(4), seed=np.int64(1), temperature=np.float32(0.5))),
    "SamplingConfig temperature=np.float32(0.5) generates": lambda c: len(generate_answers(
        c.model, ["Why?"], config=SamplingConfig(max_new_tokens=3, temperature=np.float32(0.5)), progress=False)) == 1,
    "SamplingConfig temperature=1 stays the int 1 (cache keys unchanged)": lambda c: type(
        SamplingConfig(temperature=1).temperature) is int,
    "EvalConfig targets=(np.float32(80), 'prompt')": lambda c: EvalConfig(
        targets=(np.float32(80), "prompt")).targets == (80.0, "prompt"),
    "EvalConfig targets as a list": lambda c: EvalConfig(targets=[80.0]).targets == (80.0,),
    "TrainConfig steps=np.int64(3), lr=np.float32(0.01)": lambda c: _serialisable(
        TrainConfig(steps=np.int64(3), lr=np.float32(0.01))),
    "ExperimentConfig layer=np.int64(1), methods as a list": lambda c: ExperimentConfig(
        layer=np.int64(1), methods=["S-PSR"], plus_prompt=None).layer == 1,
    "faithfulness alpha=np.float32(0.5) (was 'iteration over a 0-d array')": lambda c: faithfulness(
        c.model, c.pairs, {"s": (c.steerer, np.float32(0.5))}).equals(
        faithfulness(c.model, c.pairs, {"s": (c.steerer, 0.5)})),
    "train_steerer soft labels np.float32(1.0)": lambda c: torch.equal(train_steerer(
        "const-dim", c.model, np.float32(1.0), layers=1, pairs=c.pairs, progress=False).z, train_steerer(
        "const-dim", c.model, 1.0, layers=1, pairs=c.pairs, progress=False).z),
    "make_attribute questions as a numpy array": lambda c: len(make_attribute(
        "loud", "d", ("Shout!",), np.array(QUESTIONS), SCORER, split=(np.float32(0.6), 0.2, 0.2)).all_questions) == 5,
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_input_is_a_clear_error(ctx, case):
    call, error, fragments = REFUSED[case]
    with pytest.raises(error) as caught:
        call(ctx)
    message = str(caught.value)
    missing = [f for f in fragments if f not in message]
    assert not missing, f"{message!r} does not say {missing}"


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_good_input_works(ctx, case):
    assert ACCEPTED[case](ctx) is True


def test_a_layer_past_the_depth_is_refused_before_any_sampling(ctx, monkeypatch):
    def sampled(*args, **kwargs):
        raise AssertionError("prepare_data ran: the layer was checked too late")

    monkeypatch.setattr(experiment, "prepare_data", sampled)
    with pytest.raises(IndexError, match="layer index 7 is out of range"):
        run_experiment(ctx.model, ExperimentConfig(layer=7), ctx.tmp / "late")
    assert not (ctx.tmp / "late").exists()

