import json

import pytest
import torch

from workbench.core import model_cache, models
from workbench.core.models import check_model_cache, load_model


def test_tiny_model_loads_through_the_bridge(tiny_model):
    assert tiny_model.n_layers == 3
    assert tiny_model.d_model == 64
    assert tiny_model.model_id == "tiny-random-llama-L3-s0"
    assert tiny_model.resid_hook(2) == "blocks.2.hook_resid_post"
    assert "blocks.2.hook_resid_post" in tiny_model.bridge.hook_dict


def test_tiny_model_is_seeded():
    a = load_model("tiny-random-llama", n_layers=1, seed=3)
    b = load_model("tiny-random-llama", n_layers=1, seed=3)
    c = load_model("tiny-random-llama", n_layers=1, seed=4)
    wa, wb, wc = (next(m.bridge.original_model.parameters()) for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


@pytest.mark.parametrize("layers", [[3], [-1], [0, 7]])
def test_layer_out_of_range_names_the_layer(tiny_model, layers):
    with pytest.raises(IndexError, match=r"layer index (3|-1|7) is out of range .* layers 0\.\.2"):
        tiny_model.check_layers(layers)


def test_unknown_model_name_fails_clearly(monkeypatch):
    import huggingface_hub.constants

    # The variable alone is read when huggingface_hub is imported, long before this test: without
    # the constant, the lookup tries the network and waits out its retries (~45 s offline).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="unknown model 'no-such-org/no-such-model'"):
        load_model("no-such-org/no-such-model")
    with pytest.raises(ValueError, match="non-empty"):
        load_model("  ")


def _fake_cache(tmp_path):
    directory = tmp_path / "cache"
    directory.mkdir()
    weights = directory / "model.safetensors"
    weights.write_bytes(b"weights" * 100)
    manifest = {
        "format_version": model_cache.CACHE_FORMAT_VERSION,
        "source": {"sha256": "ab" * 32, "name": "model.gguf"},
        "files": {"model.safetensors": {"size": weights.stat().st_size, "sha256": model_cache.sha256_file(weights)}},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return "ab" * 32, directory, weights


def test_cache_check_accepts_an_intact_cache(tmp_path):
    digest, directory, _ = _fake_cache(tmp_path)
    assert check_model_cache(directory, digest) is None


def test_cache_check_rejects_truncated_corrupt_or_partial(tmp_path):
    digest, directory, weights = _fake_cache(tmp_path)
    weights.write_bytes(b"weights" * 50)
    assert "checksum" in check_model_cache(directory, digest)
    weights.write_bytes(b"WEIGHTS" * 100)  # same size, other bytes
    assert "checksum" in check_model_cache(directory, digest)
    weights.unlink()
    assert "missing" in check_model_cache(directory, digest)
    (directory / "manifest.json").write_text("{not json")
    assert "unreadable" in check_model_cache(directory, digest)
    (directory / "manifest.json").unlink()
    assert "no manifest" in check_model_cache(directory, digest)


def test_cache_check_rejects_another_gguf_and_another_format(tmp_path):
    digest, directory, _ = _fake_cache(tmp_path)
    assert "different GGUF" in check_model_cache(directory, "cd" * 32)
    manifest = json.loads((directory / "manifest.json").read_text())
    (directory / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    assert "cache format 1" in check_model_cache(directory, digest)


@pytest.mark.integration
def test_embedded_layer_l_is_hf_hidden_state_l_plus_1(embedded_model):
    """blocks.{l}.hook_resid_post == HF hidden_states[l + 1]; the last HF state is after the final norm."""
    m = embedded_model
    ids = torch.tensor([m.tokenizer("The quick brown fox jumps over the lazy dog.")["input_ids"]])
    _, cache = m.bridge.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_resid_post"))
    with torch.no_grad():
        hidden = m.bridge.original_model(ids, output_hidden_states=True).hidden_states
    assert len(hidden) == m.n_layers + 1
    for layer in range(m.n_layers - 1):
        torch.testing.assert_close(cache[m.resid_hook(layer)], hidden[layer + 1], rtol=1e-5, atol=1e-4)
    last = cache[m.resid_hook(m.n_layers - 1)]
    assert not torch.allclose(last, hidden[-1])
    torch.testing.assert_close(m.bridge.original_model.model.norm(last), hidden[-1], rtol=1e-5, atol=1e-4)


@pytest.mark.integration
def test_embedded_model_warm_load_uses_the_verified_cache(embedded_model):
    directory = models.embedded_cache_dir()
    assert check_model_cache(directory, model_cache.sha256_file(models.embedded_gguf_path())) is None
    assert embedded_model.model_id == "smollm2-135m-instruct"  # its content matches the pinned fingerprint
    assert embedded_model.n_layers == 30 and embedded_model.d_model == 576
