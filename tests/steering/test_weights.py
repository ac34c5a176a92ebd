"""Weight-space adapters (LoRA through peft, full fine-tune): a planted low-rank change is
recovered, alpha 0 and removal are exact, files round-trip, bad input fails clearly."""

from __future__ import annotations

import pytest
import torch

from workbench.core.chat import align, prompt_ids
from workbench.core.generation import SamplingConfig, generate_batch
from workbench.core.models import load_model
from workbench.core.span import Span
from workbench.steering.weights import (
    FineTuneAdapter,
    LoRAAdapter,
    WeightAdapter,
    hf_module,
    lora_target_paths,
)
from workbench.steering.weights_train import WeightTrainConfig, train_weights

pytestmark = pytest.mark.usefixtures("one_thread")
SHARP = 10.0  # sharpen both models' logits so that sampled answers say a lot about the weights


@pytest.fixture(scope="module")
def planted():
    """A student (the tiny model with sharp logits) and a teacher = student + a rank-2 change of
    layer 1's o_proj, with 96 answers sampled from the teacher as training pairs."""
    student = load_model("tiny-random-llama", n_layers=3, seed=0)
    teacher = load_model("tiny-random-llama", n_layers=3, seed=0)
    for m in (student, teacher):
        with torch.no_grad():
            hf_module(m).model.norm.weight.mul_(SHARP)
    path = next(p for p in lora_target_paths(teacher, ("o_proj",)) if ".layers.1." in p)
    weight = hf_module(teacher).get_submodule(path).weight
    g = torch.Generator().manual_seed(1)
    delta = torch.randn(weight.shape[0], 2, generator=g) @ torch.randn(2, weight.shape[1], generator=g)
    delta = delta * (4 * weight.detach().norm() / delta.norm())
    with torch.no_grad():
        weight.add_(delta)
    tok = teacher.tokenizer
    questions = [f"Question number {i}: what is {i} plus {i + 3}?" for i in range(96)]
    prompts = [prompt_ids(tok, q)[0] for q in questions]
    answers = generate_batch(teacher, prompts, SamplingConfig(max_new_tokens=24, temperature=1.0, top_p=1.0,
                                                              stop_at_end_of_turn=False), row_seeds=list(range(96)))
    pairs = [align(tok, q, "Answer as the teacher.", ids) for q, ids in zip(questions, answers)]
    lora = train_weights(student, pairs, "lora", rank=2, progress=False,
                         config=WeightTrainConfig(steps=200, lr=3e-2, batch_size=16, eval_every=20, patience=0,
                                                  targets=("o_proj",)))
    return student, teacher, path, delta, pairs, lora


def test_lora_recovers_a_planted_low_rank_change(planted):
    student, teacher, path, delta, pairs, lora = planted
    learned = lora.delta(path)
    cos = torch.nn.functional.cosine_similarity(learned.flatten(), delta.flatten(), dim=0)
    assert cos > 0.95
    assert 0.8 < float(learned.norm() / delta.norm()) < 1.2
    for other in lora.paths:  # the layers that were not changed stay nearly unchanged
        if other != path:
            assert float(lora.delta(other).norm() / delta.norm()) < 0.25
    ids = torch.tensor([p.base_ids for p in pairs[:4]])
    with torch.no_grad():
        want = teacher.bridge(ids, return_type="logits")
        base = student.bridge(ids, return_type="logits")
        with lora.apply(student, 1.0):  # the bridge's forward goes through peft's layers
            got = student.bridge(ids, return_type="logits")
    assert (got - want).abs().mean() < 0.25 * (base - want).abs().mean()
    history = lora.info.history
    assert history["best_val_loss"] < 0.2 * history["base_val_loss"]
    assert lora.name == "LoRA r2" and lora.info.n_train == 96


def test_alpha_scales_the_update_and_removal_is_exact(planted):
    student, _, _, _, pairs, lora = planted
    ids = torch.tensor([pairs[0].base_ids])
    with torch.no_grad():
        base = student.bridge(ids, return_type="logits")
        with lora.apply(student, 0.0):
            zero = student.bridge(ids, return_type="logits")
        with lora.apply(student, 0.5):
            half = student.bridge(ids, return_type="logits")
        with lora.apply(student, 1.0):
            full = student.bridge(ids, return_type="logits")
        after = student.bridge(ids, return_type="logits")
    assert torch.equal(zero, base) and torch.equal(after, base)
    assert 0 < (half - base).abs().max() < (full - base).abs().max()
    assert all(type(m).__name__ != "Linear" or "lora" not in n for n, m in hf_module(student).named_modules())
    assert not any("lora" in n for n, _ in hf_module(student).named_parameters())


def test_finetune_interpolates_and_restores(tiny_model, tiny_pairs):
    params_before = {n: p.data for n, p in hf_module(tiny_model).named_parameters()}
    values_before = {n: t.clone() for n, t in params_before.items()}
    flags = {n: p.requires_grad for n, p in hf_module(tiny_model).named_parameters()}
    ft = train_weights(tiny_model, tiny_pairs, "finetune", progress=False,
                       config=WeightTrainConfig(steps=4, lr=1e-3, batch_size=3, eval_every=2, patience=0,
                                                val_fraction=0.0))
    assert isinstance(ft, FineTuneAdapter) and ft.name == "Fine-tune"
    after = dict(hf_module(tiny_model).named_parameters())
    assert all(after[n].data.data_ptr() == t.data_ptr() for n, t in params_before.items())  # the same tensors
    assert all(torch.equal(after[n].data, t) for n, t in values_before.items())
    assert {n: p.requires_grad for n, p in after.items()} == flags
    assert all(p.grad is None for p in tiny_model.bridge.parameters())  # no gradients left behind
    assert all(".layers." in n for n in ft.tensors) and ft.n_params > 0
    assert ft.info.history["base_val_loss"] > ft.info.history["best_val_loss"]
    ids = torch.tensor([tiny_pairs[0].base_ids])
    name = next(iter(ft.tensors))
    with torch.no_grad():
        base = tiny_model.bridge(ids, return_type="logits")
        with ft.apply(tiny_model, 0.5):
            assert torch.allclose(after[name].data, params_before[name] + 0.5 * ft.tensors[name])
            half = tiny_model.bridge(ids, return_type="logits")
        with ft.apply(tiny_model, 0.0):
            zero = tiny_model.bridge(ids, return_type="logits")
        restored = tiny_model.bridge(ids, return_type="logits")
    assert (half - base).abs().max() > 0
    assert torch.equal(zero, base) and torch.equal(restored, base)


def test_lora_training_leaves_the_shared_model_as_it_found_it(tiny_model, tiny_pairs):
    """The session's tiny model is shared by later tests, which train through it: every flag and
    gradient must come back (peft freezes the base weights while it is injected)."""
    params = list(tiny_model.bridge.parameters())
    flags = [p.requires_grad for p in params]
    assert any(flags)
    train_weights(tiny_model, tiny_pairs, "lora", rank=2, progress=False,
                  config=WeightTrainConfig(steps=3, lr=1e-3, batch_size=3, eval_every=1, patience=0, val_fraction=0.0))
    assert [p.requires_grad for p in params] == flags
    assert all(p.grad is None for p in params)
    assert not hasattr(hf_module(tiny_model), "peft_config")


def test_save_load_round_trip_and_model_check(planted, tmp_path, tiny_model):
    student, _, _, _, pairs, lora = planted
    path = lora.save(tmp_path / "lora.safetensors")
    back = WeightAdapter.load(path, student)
    assert isinstance(back, LoRAAdapter) and back.info == lora.info
    assert all(torch.equal(back.tensors[k], lora.tensors[k]) for k in lora.tensors)
    ids = torch.tensor([pairs[0].base_ids])
    with torch.no_grad(), lora.apply(student, 1.0):
        a = student.bridge(ids, return_type="logits")
    with torch.no_grad(), back.apply(student, 1.0):
        b = student.bridge(ids, return_type="logits")
    assert torch.equal(a, b)
    other = load_model("tiny-random-llama", n_layers=2, seed=0)
    with pytest.raises(ValueError, match="trained on 'tiny-random-llama"):
        WeightAdapter.load(path, other)
    with pytest.raises(ValueError, match="but the model is"):
        with lora.apply(other, 1.0):
            pass


def test_bad_input(tiny_model, tiny_pairs, tmp_path, planted):
    with pytest.raises(ValueError, match="rank must be an integer >= 1"):
        train_weights(tiny_model, tiny_pairs, "lora", rank=0, progress=False)
    with pytest.raises(ValueError, match="larger than the layer"):
        train_weights(tiny_model, tiny_pairs, "lora", rank=1000, progress=False)
    with pytest.raises(ValueError, match="no kept triplets"):
        train_weights(tiny_model, [], "lora", progress=False)
    student, _, _, _, _, lora = planted
    with pytest.raises(ValueError, match="gated per row"):
        with lora.apply(student, 1.0, Span(rows=torch.ones(1))):
            pass


def test_interrupted_training_resumes_identically_and_refuses_other_settings(tiny_model, tiny_pairs, tmp_path):
    config = WeightTrainConfig(steps=4, lr=1e-2, batch_size=2, eval_every=2, patience=0)
    whole = train_weights(tiny_model, tiny_pairs, "lora", rank=2, config=config, progress=False)
    ckpt = tmp_path / "lora.partial.safetensors"

    class Stop(Exception):
        pass

    import workbench.steering.weights_train as wt

    original = wt._write_checkpoint

    def write_then_stop(*args):
        original(*args)
        raise Stop

    wt._write_checkpoint = write_then_stop
    try:
        with pytest.raises(Stop):
            train_weights(tiny_model, tiny_pairs, "lora", rank=2, config=config, checkpoint=ckpt, progress=False)
    finally:
        wt._write_checkpoint = original
    assert ckpt.is_file()
    with pytest.raises(ValueError, match="interrupted training made with other settings"):
        train_weights(tiny_model, tiny_pairs, "lora", rank=4, config=config, checkpoint=ckpt, progress=False)
    resumed = train_weights(tiny_model, tiny_pairs, "lora", rank=2, config=config, checkpoint=ckpt, progress=False)
    assert not ckpt.exists()
    assert resumed.info.history["val_losses"] == whole.info.history["val_losses"]
    assert all(torch.equal(resumed.tensors[k], whole.tensors[k]) for k in whole.tensors)


def test_an_adapter_is_an_intervention_at_a_strength_like_a_steerer(planted, tiny_model, tiny_pairs):
    from workbench.core.intervention import GatedIntervention, Intervention
    from workbench.evaluation.comparison import Method
    from workbench.steering import SteererAt, TrainConfig, train_steerer

    student, _, _, _, pairs, lora = planted
    steerer = train_steerer("psr-mse", tiny_model, 1.0, layers=1, pairs=tiny_pairs, rank=1,
                            config=TrainConfig(steps=5, seed=0), progress=False)
    assert isinstance(lora, Intervention) and isinstance(steerer, Intervention)
    assert not isinstance(lora.at(0.5), Intervention) and not isinstance(lora, GatedIntervention)
    assert lora.at(0.5) == 0.5 * lora == SteererAt(lora, 0.5)
    prompts = [list(p.base_ids[: p.base_start + p.header_len]) for p in pairs[:3]]
    config = SamplingConfig(max_new_tokens=8, temperature=0)
    heads = [p.header_len for p in pairs[:3]]
    as_value = generate_batch(student, prompts, config, steerers=[lora.at(3.0)], header_lens=heads)
    as_pair = generate_batch(student, prompts, config, steerers=[(lora, 3.0)], header_lens=heads)
    unsteered = generate_batch(student, prompts, config)
    assert as_value == as_pair and as_value != unsteered
    assert Method("LoRA", lora).has_knob
    with pytest.raises(TypeError, match="an Intervention"):
        Method("LoRA at a strength", lora.at(1.0))
    with pytest.raises(TypeError, match="an Intervention"):
        SteererAt("not a steerer", 1.0)
