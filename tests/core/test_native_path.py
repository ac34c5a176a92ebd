"""Generation through the unwrapped Hugging Face modules gives what generation through the bridge
gives, bit for bit, with steering, lambda read-out and sampling, on every offline model family; the
bridge is left as it was; and anything the shortcut cannot carry falls back to the bridge."""

import pytest
import torch

from workbench.core.families import FAMILIES
from workbench.core.generation import SamplingConfig, generate_answers
from workbench.core.models import load_model
from workbench.core.native_path import native_model
from workbench.steering import PSRSteerer, SteererInfo

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTIONS = ["How do I boil an egg?", "Why is the sky blue?", "Name a colour.", "What is two plus two, and why?"]


def _answers(model, monkeypatch, bridge: bool, steerers=(), temperature=0.7):
    monkeypatch.setenv("WORKBENCH_THROUGH_BRIDGE", "1" if bridge else "0")
    return generate_answers(model, QUESTIONS, steerers=steerers, progress=False, batch_size=3,
                            config=SamplingConfig(max_new_tokens=10, temperature=temperature, stop_at_end_of_turn=False))


def _steerer(model, seed=1):
    """A random rank-2 PSR at every layer: token-dependent lambdas, so the read-out is tested too."""
    g = torch.Generator().manual_seed(seed)
    layers = tuple(range(model.n_layers))
    shape = (len(layers), 2, model.d_model)
    info = SteererInfo("psr-mse", "all", "layerwise", layers, 2, model.model_id, model.d_model, model.n_layers)
    return PSRSteerer(info, torch.randn(shape, generator=g), torch.randn(shape, generator=g) / model.d_model ** 0.5,
                      torch.ones(shape[:2]))


def _same(a, b):
    assert [x.ids for x in a] == [x.ids for x in b]
    for x, y in zip(a, b):
        if x.lambdas is not None:
            assert all(torch.equal(p, q) for p, q in zip(x.lambdas, y.lambdas))


@pytest.mark.parametrize("name", sorted(FAMILIES) + ["tiny-random-llama"])
def test_native_generation_equals_bridge_generation(name, monkeypatch):
    model = load_model(name, n_layers=3, seed=0)
    monkeypatch.setenv("WORKBENCH_THROUGH_BRIDGE", "0")
    assert native_model(model) is not None, f"{name}: the unwrapped path is not taken"
    steer = [_steerer(model).at(4.0)]
    native = _answers(model, monkeypatch, bridge=False, steerers=steer)
    through_bridge = _answers(model, monkeypatch, bridge=True, steerers=steer)
    _same(native, through_bridge)
    assert native[0].lambdas is not None
    # the steering acted (otherwise equal answers would prove nothing about the hooks)
    assert [x.ids for x in _answers(model, monkeypatch, bridge=False)] != [x.ids for x in native]


def test_native_model_shares_weights_and_leaves_the_bridge_wrapped(tiny_model, monkeypatch):
    monkeypatch.setenv("WORKBENCH_THROUGH_BRIDGE", "0")
    bridge = tiny_model.bridge
    before = [type(m).__name__ for m in bridge.original_model.modules()]
    tree = native_model(tiny_model)
    assert tree is not None and tree is not bridge.original_model
    assert "BlockBridge" not in {type(m).__name__ for m in tree.modules()}
    assert {p.data_ptr() for p in tree.parameters()} <= {p.data_ptr() for p in bridge.original_model.parameters()}
    assert [type(m).__name__ for m in bridge.original_model.modules()] == before
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(tree(input_ids=ids).logits, bridge(ids, return_type="logits"))


def test_a_hook_elsewhere_keeps_the_bridge(tiny_model, monkeypatch):
    monkeypatch.setenv("WORKBENCH_THROUGH_BRIDGE", "0")
    seen = []
    with tiny_model.bridge.hooks(fwd_hooks=[("blocks.0.attn.hook_out", lambda x, hook=None: seen.append(1))]):
        assert native_model(tiny_model) is None
        generate_answers(tiny_model, QUESTIONS[:1], progress=False, config=SamplingConfig(max_new_tokens=2))
    assert seen, "a hook on the attention output must still fire during generation"
    assert native_model(tiny_model) is not None


def test_bridge_decode_switch(tiny_model, monkeypatch):
    monkeypatch.setenv("WORKBENCH_THROUGH_BRIDGE", "1")
    assert native_model(tiny_model) is None


@pytest.mark.integration
def test_native_generation_equals_bridge_generation_on_the_embedded_model(embedded_model, monkeypatch):
    steer = [_steerer(embedded_model).at(2.0)]
    native = _answers(embedded_model, monkeypatch, bridge=False, steerers=steer)
    _same(native, _answers(embedded_model, monkeypatch, bridge=True, steerers=steer))
    plain = _answers(embedded_model, monkeypatch, bridge=False, temperature=0)
    _same(plain, _answers(embedded_model, monkeypatch, bridge=True, temperature=0))
    assert [x.ids for x in plain] != [x.ids for x in native]


def test_native_generation_goes_through_injected_lora_layers(monkeypatch):
    from workbench.steering.weights import injected_lora, lora_target_paths

    model = load_model("tiny-random-llama", n_layers=3, seed=0)
    base = _answers(model, monkeypatch, bridge=False, temperature=0)
    g = torch.Generator().manual_seed(0)
    with injected_lora(model, lora_target_paths(model, ("o_proj",)), 2, seed=0) as layers:
        for layer in layers.values():  # peft starts B at zero (no change): give it an update
            for b in layer.lora_B.values():
                b.weight.data = torch.randn(b.weight.shape, generator=g)
        monkeypatch.setenv("WORKBENCH_THROUGH_BRIDGE", "0")
        assert native_model(model) is not None
        adapted = _answers(model, monkeypatch, bridge=False, temperature=0)
        _same(adapted, _answers(model, monkeypatch, bridge=True, temperature=0))
    assert [x.ids for x in adapted] != [x.ids for x in base]
    _same(base, _answers(model, monkeypatch, bridge=False, temperature=0))  # removed again


@pytest.mark.parametrize("name", ["tiny-random-llama", "tiny-random-gemma2", "tiny-random-phi3"])
def test_native_extraction_equals_bridge_extraction(name, monkeypatch):
    from workbench.activations.extraction import extract_batch
    from workbench.core.chat import align, encode_response

    model = load_model(name, n_layers=3, seed=0)
    tok = model.tokenizer
    pairs = [align(tok, q, "You are a pirate.", encode_response(tok, r) + [tok.eos_token_id])
             for q, r in [("How do I boil an egg?", "Arr, boil it."), ("Why is the sky blue?", "Sunlight scatters, matey!")]]
    runs = {}
    for bridge in (False, True):
        monkeypatch.setenv("WORKBENCH_THROUGH_BRIDGE", "1" if bridge else "0")
        runs[bridge] = extract_batch(model, pairs)
    for kind in ("base", "acc", "loc"):
        assert torch.equal(getattr(runs[False], kind), getattr(runs[True], kind)), kind
    assert runs[False].acc.abs().sum() > 0


def test_a_torch_hook_on_a_bridge_component_keeps_the_bridge(tiny_model, monkeypatch):
    monkeypatch.setenv("WORKBENCH_THROUGH_BRIDGE", "0")
    block = tiny_model.bridge.original_model.model.layers[1]  # a BlockBridge
    handle = block.register_forward_hook(lambda *a: None)
    try:
        assert native_model(tiny_model) is None
    finally:
        handle.remove()
    calls = []  # a torch hook on the Hugging Face layer itself fires on the unwrapped path too
    handle = block.original_component.register_forward_hook(lambda *a: calls.append(1))
    try:
        generate_answers(tiny_model, QUESTIONS[:1], progress=False, config=SamplingConfig(max_new_tokens=3))
    finally:
        handle.remove()
    assert len(calls) == 3  # prefill and two decode steps


def test_training_and_likelihood_equal_the_bridge_path(tiny_model, tiny_pairs, monkeypatch):
    """Joint PSR training and LoRA training (forward and backward with hooks or peft layers) and the
    coherence judge's log-likelihood give bit-identical results on either path."""
    from workbench.core.likelihood import mean_response_logprob
    from workbench.steering import TrainConfig, train_steerer
    from workbench.steering.weights_train import WeightTrainConfig, train_weights

    out = {}
    for bridge in (False, True):
        monkeypatch.setenv("WORKBENCH_THROUGH_BRIDGE", "1" if bridge else "0")
        torch.manual_seed(0)
        joint = train_steerer("psr-mse", tiny_model, [1.0] * len(tiny_pairs), layers=None, pairs=tiny_pairs,
                              training="joint", config=TrainConfig(steps=3, val_fraction=0.0), progress=False)
        lora = train_weights(tiny_model, tiny_pairs, "lora", rank=2, progress=False,
                             config=WeightTrainConfig(steps=3, val_fraction=0.0, eval_every=3, patience=0))
        ll = mean_response_logprob(tiny_model, ["How do I boil an egg?", "Why?"], ["Boil it in water.", "Because."])
        out[bridge] = (joint, lora, ll)
    (j0, l0, ll0), (j1, l1, ll1) = out[False], out[True]
    assert all(torch.equal(a, b) for a, b in zip(j0.params().values(), j1.params().values()))
    assert all(torch.equal(l0.tensors[k], l1.tensors[k]) for k in l0.tensors)
    assert ll0 == ll1
