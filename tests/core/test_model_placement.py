"""Loading beyond one float32 CPU model: device maps (accelerate, tested on the CPU with a layer
offloaded to disk), bfloat16 with float32 maths, and the clear errors: an architecture the bridge
cannot serve, a device map that leaves a layer nowhere, a dtype the device cannot do, chat
templates without a system role, an assistant header, or at all."""

import pytest
import torch

from workbench.activations.extraction import extract_batch
from workbench.core import models
from workbench.core.chat import align, encode_response, prompt_ids
from workbench.core.families import build_family_tokenizer
from workbench.core.models import check_dtype, load_model, wrap_model

pytestmark = pytest.mark.usefixtures("one_thread")

NAME = "tiny-random-llama3"
MAP = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk", "model.layers.2": "cpu",
       "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"}


@pytest.fixture(scope="module")
def plain():
    return load_model(NAME, n_layers=3)


@pytest.fixture(scope="module")
def pair(plain):
    tok = plain.tokenizer
    return align(tok, "Why is the sky blue?", "You are a pirate.", encode_response(tok, "Arr, the sea be blue!"))


def test_a_device_map_dispatches_through_accelerate_and_changes_nothing(plain, pair, tmp_path):
    mapped = load_model(NAME, n_layers=3, device_map=MAP, offload_folder=tmp_path / "offload")
    assert mapped.device_map == MAP and plain.device_map is None
    assert mapped.device == torch.device("cpu")
    layer1 = mapped.bridge.original_model.model.layers[1]
    assert hasattr(layer1, "_hf_hook")  # accelerate's offload hook: the layer's weights live on disk
    assert next(layer1.parameters()).device.type == "meta"
    a, b = extract_batch(plain, [pair]), extract_batch(mapped, [pair])
    for field in ("base", "acc", "loc"):
        assert torch.equal(getattr(a, field), getattr(b, field))


def test_device_map_errors(tmp_path):
    nowhere = {k: v for k, v in MAP.items() if k != "model.layers.1"}
    with pytest.raises(ValueError, match=r"leaves .* on no device, in \['model.layers.1"):
        load_model(NAME, n_layers=3, device_map=nowhere)
    with pytest.raises(ValueError, match="not a module of this model"):
        load_model(NAME, n_layers=3, device_map={**MAP, "model.layers.7": "cpu"})
    with pytest.raises(ValueError, match="'meta', which holds no weights"):
        load_model(NAME, n_layers=3, device_map={**MAP, "model.layers.1": "meta"})
    with pytest.raises(ValueError, match="pass offload_folder"):
        load_model(NAME, n_layers=3, device_map=MAP)


def test_bfloat16_end_to_end_keeps_the_delta_maths_in_float32(pair):
    model = load_model(NAME, n_layers=3, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    acts = extract_batch(model, [pair])
    assert acts.acc.dtype == acts.base.dtype == acts.loc.dtype == torch.float32
    hooks = lambda n: n.endswith("hook_resid_post")  # noqa: E731
    _, steered = model.bridge.run_with_cache(torch.tensor([pair.steered_ids]), names_filter=hooks)
    _, base = model.bridge.run_with_cache(torch.tensor([pair.base_ids]), names_filter=hooks)
    s = steered[model.resid_hook(2)][0, pair.steered_start:]
    b = base[model.resid_hook(2)][0, pair.base_start:]
    assert s.dtype == torch.bfloat16
    expected = s.float() - b.float()
    assert torch.equal(acts.acc[2], expected)  # the difference is taken in float32 ...
    assert not torch.equal(expected, (s - b).float())  # ... which a bfloat16 subtraction would not give


def test_bfloat16_steerer_fits_and_steers_in_float32(pair):
    from workbench.core.span import aligned_span_mask
    from workbench.steering import TrainConfig, train_steerer

    model = load_model(NAME, n_layers=3, dtype=torch.bfloat16)
    steerer = train_steerer("psr-mse", model, 1.0, layers=None, pairs=[pair],
                            config=TrainConfig(steps=5, val_fraction=0.0), progress=False)
    assert all(p.dtype == torch.float32 for p in steerer.params().values())
    ids = torch.tensor([pair.base_ids])
    with torch.no_grad():
        plain_logits = model.bridge(ids)
        with steerer.apply(model, alpha=0.0) as span:
            span.mask = aligned_span_mask([pair])
            assert torch.equal(model.bridge(ids), plain_logits)
        with steerer.apply(model, alpha=1.0) as span:
            span.mask = aligned_span_mask([pair])
            steered = model.bridge(ids)
    assert steered.dtype == torch.bfloat16 and not torch.equal(steered, plain_logits)


def test_dtype_and_device_errors(monkeypatch):
    with pytest.raises(ValueError, match="floating torch dtype"):
        check_dtype("cpu", torch.int8)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        load_model(NAME, device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100")
    with pytest.raises(ValueError, match=r"Tesla V100\) cannot compute in bfloat16"):
        check_dtype("cuda:0", torch.bfloat16)
    with pytest.raises(ValueError, match="cannot compute in bfloat16"):
        check_dtype([0, 1], torch.bfloat16)
    check_dtype("cuda:0", torch.float16)  # float16 is fine there


def test_an_architecture_the_bridge_cannot_serve_is_named():
    from transformers import BioGptConfig, BioGptForCausalLM

    tok = build_family_tokenizer(NAME)
    hf = BioGptForCausalLM(BioGptConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=64))
    with pytest.raises(ValueError, match="TransformerBridge cannot serve 'my-biogpt': its architecture "
                                         "BioGptForCausalLM is not one"):
        wrap_model(hf, tok, model_id="my-biogpt")


def test_chat_template_errors():
    tok = build_family_tokenizer("tiny-random-gemma2")
    with pytest.raises(ValueError, match="'tiny-random-gemma2' has no system role"):
        prompt_ids(tok, "Hi?", "Be a pirate.", placement="system")
    with pytest.raises(ValueError, match="cannot take the base system prompt"):
        prompt_ids(tok, "Hi?", base_system="You are helpful.")
    assert "Be a pirate.\n\nHi?" in tok.decode(prompt_ids(tok, "Hi?", "Be a pirate.")[0])  # auto: the user turn
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"  # no turn markers at all
    with pytest.raises(ValueError, match="cannot locate the assistant header"):
        prompt_ids(tok, "Hi?")
    tok.chat_template = None
    with pytest.raises(ValueError, match="has no chat template"):
        prompt_ids(tok, "Hi?")


def test_a_template_that_drops_the_system_message_has_no_system_role():
    from workbench.core.chat import has_system_role, resolve_placement

    tok = build_family_tokenizer("tiny-random-qwen2")
    assert has_system_role(tok)
    tok.chat_template = ("{% for m in messages %}{% if m['role'] != 'system' %}<|im_start|>{{ m['role'] }}\n"
                         "{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    assert not has_system_role(tok) and resolve_placement(tok, "auto") == "user"
    with pytest.raises(ValueError, match="drops it"):
        prompt_ids(tok, "Hi?", "Be a pirate.", placement="system")


def test_placement_auto_is_the_system_turn_where_there_is_one():
    tok = build_family_tokenizer("tiny-random-qwen2")
    auto, system = prompt_ids(tok, "Hi?", "Be a pirate."), prompt_ids(tok, "Hi?", "Be a pirate.", placement="system")
    assert auto == system
    assert "<|im_start|>system\nBe a pirate.<|im_end|>" in tok.decode(auto[0])


def test_device_map_plumbing_on_by_name_loads(plain, pair, tmp_path):
    """A model loaded by name (here a local directory) gets the map from ``from_pretrained``."""
    hf, tok = models.build_family_model(NAME, n_layers=3)
    hf.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    m = load_model(str(tmp_path / "m"), device_map=MAP, offload_folder=tmp_path / "off")
    assert m.device_map == MAP and m.n_layers == 3
    assert torch.equal(extract_batch(m, [pair]).loc, extract_batch(plain, [pair]).loc)
    # the id is the content: the layer offloaded to disk is fingerprinted from what accelerate reads back
    assert m.model_id == load_model(str(tmp_path / "m")).model_id
    nowhere = {k: v for k, v in MAP.items() if k != "model.layers.1"}
    with pytest.raises(ValueError, match=r"the device_map does not fit .*on no device, in \[.model.layers.1"):
        load_model(str(tmp_path / "m"), device_map=nowhere)
