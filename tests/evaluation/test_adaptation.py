import math
from contextlib import contextmanager

import pytest
import torch

from workbench.core.chat import prompt_ids
from workbench.core.generation import SamplingConfig, generate_answers
from workbench.evaluation.adaptation import (
    BASELINE,
    COLUMNS,
    Adaptation,
    compare_adaptations,
    kv_bytes_per_token,
    radar_axes,
    timed_generation,
)
from workbench.steering import ConstSteerer, Span, SteererInfo, TrainConfig, train_steerer
from workbench.steering.weights_train import WeightTrainConfig, train_weights

pytestmark = pytest.mark.usefixtures("one_thread")

INSTRUCTION = "You are a pirate. Speak like a pirate: say Arr and matey, ahoy ye landlubbers!"
QUESTIONS = ["What is the capital of France?", "Why is the sky blue?", "Hi"]
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def steerers(tiny_model, one_thread):
    from tiny_triplets import make_tiny_pairs

    pairs = make_tiny_pairs(tiny_model)
    config = TrainConfig(steps=20, seed=0)
    return {
        "Const-DiM": train_steerer("const-dim", tiny_model, 1.0, layers=1, pairs=pairs, progress=False),
        "S-PSR r2": train_steerer("psr-mse", tiny_model, 1.0, layers=1, pairs=pairs, rank=2, config=config,
                                  progress=False),
        "A-PSR": train_steerer("psr-mse", tiny_model, 1.0, layers=None, pairs=pairs, config=config, progress=False),
        "LoRA r2": train_weights(tiny_model, pairs, "lora", rank=2, progress=False,
                                 config=WeightTrainConfig(steps=3, lr=1e-2, batch_size=3, eval_every=3, patience=0,
                                                          val_fraction=0.0)),
        "Fine-tune": train_weights(tiny_model, pairs, "finetune", progress=False,
                                   config=WeightTrainConfig(steps=3, lr=1e-3, batch_size=3, eval_every=3, patience=0,
                                                          val_fraction=0.0)),
    }


@pytest.fixture(scope="module")
def adaptations(steerers):
    return [
        Adaptation("prompt", INSTRUCTION),
        Adaptation("Const-DiM", steerer=steerers["Const-DiM"], n_train=3),
        Adaptation("S-PSR r2", steerer=steerers["S-PSR r2"], alpha=2.0, n_train=3),
        Adaptation("A-PSR", steerer=steerers["A-PSR"], n_train=30),
        Adaptation("A-PSR + prompt", INSTRUCTION, steerers["A-PSR"], alpha=0.5, n_train=30),
        Adaptation("LoRA r2", steerer=steerers["LoRA r2"]),  # n_train and training cost from the adapter
        Adaptation("Fine-tune", steerer=steerers["Fine-tune"], alpha=0.5, train_seconds=1.5, train_peak_bytes=7.0),
    ]


@pytest.fixture(scope="module")
def table(tiny_model, adaptations):
    return compare_adaptations(tiny_model, adaptations, QUESTIONS, new_tokens=NEW_TOKENS, repeats=2, progress=False)


def _row(table, method):
    return table.set_index("method").loc[method]


def test_kv_bytes_per_token_follows_the_config(tiny_model):
    config = tiny_model.bridge.original_model.config
    # 2 (K, V) * 3 layers * 2 KV heads * head_dim 16 * 4 bytes (float32)
    assert (config.num_hidden_layers, config.num_key_value_heads, config.head_dim) == (3, 2, 16)
    assert kv_bytes_per_token(tiny_model) == 2 * 3 * 2 * 16 * 4 == 768


def test_one_row_per_way_baseline_first(table, adaptations):
    assert list(table.columns) == COLUMNS
    assert list(table["method"]) == [BASELINE] + [a.name for a in adaptations]
    assert table.attrs["new_tokens"] == NEW_TOKENS
    timings = table.attrs["timings"]
    assert len(timings) == 2 * (len(adaptations) + 1) and set(timings["round"]) == {0, 1}


def test_extra_prompt_tokens_and_kv_bytes_are_measured_on_the_prompts(tiny_model, table):
    tok = tiny_model.tokenizer
    diffs = [len(prompt_ids(tok, q, INSTRUCTION)[0]) - len(prompt_ids(tok, q)[0]) for q in QUESTIONS]
    expected = sum(diffs) / len(diffs)
    assert expected > 0
    per_token = 2 * 3 * 2 * 16 * 4
    for method in ("prompt", "A-PSR + prompt"):
        row = _row(table, method)
        assert row["extra_prompt_tokens"] == pytest.approx(expected)
        assert row["extra_kv_bytes"] == pytest.approx(expected * per_token)
        assert row["extra_memory_bytes"] == pytest.approx(row["adaptation_bytes"] + expected * per_token)
    for method in (BASELINE, "Const-DiM", "S-PSR r2", "A-PSR"):
        assert _row(table, method)["extra_prompt_tokens"] == 0 and _row(table, method)["extra_kv_bytes"] == 0


def test_trained_params_count_the_steerer_tensors(table, steerers, tiny_model):
    d, n_layers = tiny_model.d_model, tiny_model.n_layers
    for name, steerer in steerers.items():
        numel = sum(t.numel() for t in steerer.params().values())
        assert _row(table, name)["trained_params"] == numel
        assert _row(table, name)["adaptation_bytes"] == 4 * numel  # float32
    assert _row(table, "Const-DiM")["trained_params"] == d                    # z only
    assert _row(table, "S-PSR r2")["trained_params"] == 2 * (2 * d + 1)       # z, w, b for 2 components
    assert _row(table, "A-PSR")["trained_params"] == n_layers * (2 * d + 1)
    assert _row(table, "A-PSR + prompt")["trained_params"] == n_layers * (2 * d + 1)
    for method in (BASELINE, "prompt"):
        row = _row(table, method)
        assert row["trained_params"] == 0 and row["adaptation_bytes"] == 0 and row["train_triplets"] == 0
    assert list(table["train_triplets"]) == [0, 0, 3, 3, 30, 30, 3, 3]


def test_weight_space_rows(table, steerers, tiny_model):
    lora, ft = steerers["LoRA r2"], steerers["Fine-tune"]
    # LoRA: A [2, in] and B [out, 2] for the 7 projections of each of the 3 blocks (d 64, MLP 128, KV 32)
    per_block = 2 * ((64 + 64) * 2 + (64 + 32) * 2 + (64 + 128) * 3)
    assert _row(table, "LoRA r2")["trained_params"] == lora.n_params == 3 * per_block
    block_params = sum(p.numel() for n, p in tiny_model.bridge.original_model.named_parameters() if ".layers." in n)
    assert _row(table, "Fine-tune")["trained_params"] == ft.n_params == block_params
    assert _row(table, "Fine-tune")["adaptation_bytes"] == 4 * block_params
    assert list(table["weight_space"]) == [False] * 6 + [True, True]
    assert _row(table, "LoRA r2")["train_seconds"] == lora.info.history["seconds"] > 0
    assert _row(table, "LoRA r2")["train_peak_bytes"] == lora.info.history["peak_memory_bytes"]
    assert _row(table, "Fine-tune")["train_seconds"] == 1.5 and _row(table, "Fine-tune")["train_peak_bytes"] == 7.0
    assert _row(table, "prompt")["train_seconds"] == 0
    assert _row(table, "Fine-tune")["alpha"] == 0.5


def test_knob_and_alpha(table):
    assert list(table["continuous_strength"]) == [False, False, True, True, True, True, True, True]
    assert math.isnan(_row(table, "prompt")["alpha"]) and math.isnan(_row(table, BASELINE)["alpha"])
    assert _row(table, "S-PSR r2")["alpha"] == 2.0 and _row(table, "A-PSR + prompt")["alpha"] == 0.5


def test_timings_are_positive_and_the_baseline_is_the_reference(table):
    assert _row(table, BASELINE)["relative_latency"] == 1.0
    for column in ("seconds_per_answer", "relative_latency", "ms_per_token", "prefill_ms"):
        assert all(math.isfinite(v) and v > 0 for v in table[column]), column
    assert list(table["ms_per_token"]) == pytest.approx(list(1000 * table["seconds_per_answer"] / NEW_TOKENS))
    seconds = table["seconds_per_answer"]
    assert list(table["relative_latency"]) == pytest.approx(list(seconds / seconds[0]))
    assert table["cuda_peak_bytes"].isna().all()  # CPU: no reliable per-pass measure


def test_every_way_generated_exactly_new_tokens(table, tiny_model, adaptations):
    assert list(table["tokens_per_answer"]) == [NEW_TOKENS] * len(table)
    run = timed_generation(tiny_model, QUESTIONS, adaptations[-1], new_tokens=9, batch_size=2)
    assert [len(ids) for ids in run.ids] == [9] * len(QUESTIONS)
    assert 0 < run.prefill_seconds <= run.seconds


def test_fixed_length_generation_is_the_greedy_answer_continued_past_end_of_turn(tiny_model, adaptations):
    """The timing loop steers like generate_answers does: same greedy tokens up to end of turn."""
    config = SamplingConfig(max_new_tokens=10, temperature=0)
    for way in [None, *adaptations]:
        run = timed_generation(tiny_model, QUESTIONS, way, new_tokens=10)
        kwargs = {} if way is None else dict(instruction=way.instruction,
                                             steerers=[(way.steerer, way.alpha)] if way.steerer else [])
        answers = generate_answers(tiny_model, QUESTIONS, config=config, batch_size=1, record_lambdas=False,
                                   progress=False, **kwargs)
        for ids, answer in zip(run.ids, answers):
            assert ids[: len(answer.ids)] == answer.ids
    plain = timed_generation(tiny_model, QUESTIONS, None, new_tokens=10).ids
    assert timed_generation(tiny_model, QUESTIONS, adaptations[3], new_tokens=10).ids != plain  # A-PSR steers


def test_removal_is_exact_and_the_adaptations_did_change_the_logits(table):
    assert table["exact_removal"].all() and (table["removal_max_abs_diff"] == 0).all()
    assert table.attrs["restored_after_timing"] is True
    assert _row(table, BASELINE)["logit_effect"] == 0
    assert (table["logit_effect"][1:] > 0).all()


class _Leaky(ConstSteerer):
    """A steerer whose hook stays on the model after its context is left."""

    @contextmanager
    def apply(self, model, alpha=1.0, span=None):
        model.bridge.add_hook(model.resid_hook(self.layers[0]), lambda resid, hook=None: resid + 1.0)
        yield Span()


def _info(model_id, d_model=64, n_layers=3):
    return SteererInfo(method="const-dim", scope="single", training="layerwise", layers=(1,), rank=1,
                       model_id=model_id, d_model=d_model, n_layers=n_layers)


def test_the_removal_check_catches_a_hook_left_behind(tiny_model):
    ids = torch.tensor([prompt_ids(tiny_model.tokenizer, QUESTIONS[0])[0]])
    clean = tiny_model.bridge(ids, return_type="logits")
    leaky = _Leaky(_info(tiny_model.model_id), torch.zeros(1, 1, tiny_model.d_model))
    ways = [Adaptation("leaky", steerer=leaky, n_train=1), Adaptation("prompt", INSTRUCTION)]
    try:
        with pytest.warns(UserWarning, match="not restored after the timing rounds"):
            table = compare_adaptations(tiny_model, ways, QUESTIONS[:1], new_tokens=2, repeats=1, progress=False)
    finally:
        tiny_model.bridge.reset_hooks()
    assert torch.equal(tiny_model.bridge(ids, return_type="logits"), clean)  # the shared model is clean again
    assert list(table["exact_removal"]) == [True, False, False]  # the leak shows on its row and every later one
    assert (table["removal_max_abs_diff"][1:] > 0).all()
    assert table.attrs["restored_after_timing"] is False


def test_radar_axes_feed_radar_chart(table):
    from workbench.viz.curves import radar_chart

    kwargs = radar_axes(table)
    assert BASELINE not in list(kwargs["table"]["method"]) and len(kwargs["table"]) == len(table) - 1
    assert set(kwargs["log_axes"]) >= {"extra_memory_bytes", "trained_params", "train_triplets"}
    assert ("train_seconds" in kwargs["axes"]) == bool(table["train_seconds"].notna().all())
    assert kwargs["higher_is_better"]["relative_latency"] is False and kwargs["higher_is_better"]["exact_removal"]
    assert kwargs["table"]["exact_removal"].tolist() == [1] * (len(table) - 1)
    fig = radar_chart(**kwargs)
    assert [t.name for t in fig.data] == list(table["method"][1:])
    assert len(radar_axes(table, include_baseline=True)["table"]) == len(table)
    with pytest.raises(ValueError, match="lacks columns"):
        radar_axes(table.drop(columns=["trained_params"]))


def test_bad_inputs_are_refused_with_the_bad_value_named(tiny_model, adaptations):
    run = lambda ways, **kw: compare_adaptations(tiny_model, ways, QUESTIONS[:1], progress=False, **kw)  # noqa: E731
    with pytest.raises(ValueError, match="no adaptations"):
        run([])
    with pytest.raises(ValueError, match=r"distinct; \['prompt'\]"):
        run([Adaptation("prompt", INSTRUCTION), Adaptation("prompt", "Be brief.")])
    other = ConstSteerer(_info("another-model"), torch.zeros(1, 1, 64))
    with pytest.raises(ValueError, match="adaptation 'foreign'.*'another-model'.*tiny-random-llama"):
        run([Adaptation("foreign", steerer=other, n_train=1)])
    for name in ("new_tokens", "repeats", "batch_size"):
        with pytest.raises(ValueError, match=f"{name} must be an integer >= 1, got 0"):
            run(adaptations[:1], **{name: 0})
    with pytest.raises(ValueError, match="no questions"):
        compare_adaptations(tiny_model, adaptations[:1], [], progress=False)
    with pytest.raises(ValueError, match="exceeds the model's context length 512"):
        run(adaptations[:1], new_tokens=600)
    with pytest.raises(TypeError, match="Adaptation objects"):
        run(["prompt"])
    steerer = adaptations[1].steerer
    with pytest.raises(ValueError, match="reserved"):
        Adaptation(BASELINE, INSTRUCTION)
    with pytest.raises(ValueError, match="neither an instruction nor a steerer"):
        Adaptation("nothing")
    with pytest.raises(ValueError, match="alpha 2.0 is a steerer's strength"):
        Adaptation("prompt", INSTRUCTION, alpha=2.0)
    with pytest.raises(ValueError, match="give n_train"):
        Adaptation("S", steerer=steerer)
    with pytest.raises(ValueError, match="n_train must be an integer >= 0, got -1"):
        Adaptation("S", steerer=steerer, n_train=-1)
    with pytest.raises(ValueError, match="alpha nan must be finite|alpha must be finite, got nan"):
        Adaptation("S", steerer=steerer, alpha=float("nan"), n_train=1)
    with pytest.raises(ValueError, match="instruction must be a non-empty string"):
        Adaptation("prompt", "  ")
    with pytest.raises(ValueError, match="unknown placement 'middle'"):
        Adaptation("prompt", INSTRUCTION, placement="middle")
    with pytest.raises(TypeError, match="steerer must be a workbench.steering.Steerer"):
        Adaptation("S", steerer="const-dim", n_train=1)
