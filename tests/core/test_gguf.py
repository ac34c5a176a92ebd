"""GGUF files as a model source, offline, on a tiny random Llama written as llama.cpp writes one:
the float32 cache (built once, keyed by content, checked on read, nothing half-written), the
quantization types, model identity by content, chat templates attached at load, and clear errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from tiny_gguf import write_tiny_gguf

from workbench.core import model_cache
from workbench.core.chat import prompt_ids
from workbench.core.models import load_model
from workbench.core.placement import from_pretrained
from workbench.core.sources import gguf_model_dir
from workbench.steering import PSRSteerer, SteererInfo, load_steerer, make_steerer

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "Why is the sky blue? Arr, matey!"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test gets its own model cache, and counts the conversions it causes."""
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    builds = []
    real = model_cache._build

    def counted(*args, **kwargs):
        builds.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(model_cache, "_build", counted)
    return builds


def _models_dir(tmp_path) -> list[str]:
    root = tmp_path / "cache" / "models"
    return sorted(p.name for p in root.iterdir() if p.name != ".locks") if root.exists() else []


def test_a_gguf_file_loads_through_a_verified_float32_cache(tmp_path, cache):
    path, hf, tok = write_tiny_gguf(tmp_path / "files" / "tiny.gguf")
    model = load_model(str(path), progress=False)
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    assert model.tokenizer(TEXT, add_special_tokens=False)["input_ids"] == ids
    assert model.tokenizer.chat_template == tok.chat_template  # the template the GGUF carries
    with torch.no_grad():
        torch.testing.assert_close(model.bridge(torch.tensor([ids]), return_type="logits"),
                                   hf(torch.tensor([ids])).logits, rtol=1e-4, atol=1e-4)
    [directory] = _models_dir(tmp_path)
    manifest = json.loads((tmp_path / "cache" / "models" / directory / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == model_cache.sha256_file(path) and directory.startswith("tiny-")
    assert manifest["source"]["tensor_types"] == {"F32": 21} and len(cache) == 1
    assert model.model_id.startswith("llama-1m@") and len(model.model_id.split("@")[1]) == 12


def test_the_same_file_by_another_path_is_the_same_model_and_is_converted_once(tmp_path, cache, monkeypatch):
    path, _, _ = write_tiny_gguf(tmp_path / "a" / "tiny.gguf")
    first = load_model(str(path), progress=False)
    (tmp_path / "b").mkdir()
    shutil.copy(path, tmp_path / "b" / "renamed.gguf")
    monkeypatch.chdir(tmp_path)
    again = [load_model(spec, progress=False).model_id
             for spec in ("a/tiny.gguf", "./a/tiny.gguf", str(path.parent) + "/", "a", "b/renamed.gguf")]
    assert again == [first.model_id] * 5
    assert len(cache) == 2  # the copy under another name has its own cache directory, the same content id
    assert load_model("a/tiny.gguf", progress=False, dtype=torch.float16).model_id != first.model_id


@pytest.mark.parametrize("qtype", ["F16", "Q8_0", "Q4_1"])
def test_quantized_tensors_are_dequantized_exactly_as_gguf_reads_them(tmp_path, qtype):
    path, hf, _ = write_tiny_gguf(tmp_path / f"{qtype}.gguf", qtype)
    cached = from_pretrained(gguf_model_dir(path, progress=False), torch.float32).state_dict()
    kind = gguf.GGMLQuantizationType[qtype]
    for name in ("model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight", "lm_head.weight"):
        weight = hf.state_dict()[name].numpy()
        stored = weight.astype(np.float16) if qtype == "F16" else gguf.quants.dequantize(gguf.quants.quantize(weight, kind), kind)
        assert np.array_equal(cached[name].numpy(), stored.astype(np.float32)), name
        assert not np.array_equal(cached[name].numpy(), weight)  # it really was quantized
    norm = "model.layers.0.input_layernorm.weight"  # 1-D tensors stay float32
    assert torch.equal(cached[norm], hf.state_dict()[norm])


def _steerer(model):
    g = torch.Generator().manual_seed(1)
    info = SteererInfo("psr-mse", "all", "layerwise", (0, 1), 1, model.model_id, model.d_model, model.n_layers)
    shape = (2, 1, model.d_model)
    return make_steerer(info, torch.randn(shape, generator=g), torch.randn(shape, generator=g), torch.randn(2, 1, generator=g))


def test_a_steerer_follows_the_model_not_the_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, _, _ = write_tiny_gguf(tmp_path / "m" / "model.gguf", seed=0)
    relative = load_model("m/model.gguf", progress=False)
    _steerer(relative).save(tmp_path / "s.safetensors")
    assert isinstance(load_steerer(tmp_path / "s.safetensors", load_model(str(path.resolve()), progress=False)), PSRSteerer)
    write_tiny_gguf(path, seed=1)  # another model at the same path
    other = load_model("m/model.gguf", progress=False)
    assert other.model_id != relative.model_id
    with pytest.raises(ValueError, match=rf"trained on '{relative.model_id}'.*but the model is '{other.model_id}'"):
        load_steerer(tmp_path / "s.safetensors", other)


def test_a_gguf_without_a_template_takes_one_at_load(tmp_path):
    path, _, tok = write_tiny_gguf(tmp_path / "bare.gguf", chat_template=False)
    bare = load_model(str(path), progress=False)
    with pytest.raises(ValueError, match=r"has no chat template.*chat_template=\.\.\..*'gemma3'"):
        prompt_ids(bare.tokenizer, "Hi?")
    named = load_model(str(path), chat_template="chatml", progress=False)
    assert named.tokenizer.chat_template == tok.chat_template
    assert prompt_ids(named.tokenizer, "Hi?")[1] == len(tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"])
    file = tmp_path / "t.jinja"
    file.write_text(tok.chat_template)
    from_file = load_model(str(path), chat_template=str(file), progress=False)
    as_string = load_model(str(path), chat_template=tok.chat_template, progress=False)
    assert named.model_id == from_file.model_id == as_string.model_id != bare.model_id  # the template is identity
    with_its_own = load_model(str(write_tiny_gguf(tmp_path / "own.gguf")[0]), progress=False)
    assert with_its_own.model_id == named.model_id  # the same weights and template from another file


def test_bad_templates_are_clear_errors(tmp_path):
    path, _, _ = write_tiny_gguf(tmp_path / "bare.gguf", chat_template=False)
    with pytest.raises(ValueError, match=r"unknown chat template 'gemma-7'.*\['chatml', 'gemma2', 'gemma3'"):
        load_model(str(path), chat_template="gemma-7", progress=False)
    with pytest.raises(ValueError, match="unknown chat template"):  # refused before anything is loaded
        load_model(str(tmp_path / "absent.gguf"), chat_template="gemma-7", progress=False)
    with pytest.raises(FileNotFoundError, match="no chat template file at .*missing.jinja"):
        load_model(str(path), chat_template=str(tmp_path / "missing.jinja"), progress=False)
    with pytest.raises(ValueError, match="the given Jinja template renders no assistant turn"):
        load_model(str(path), chat_template="{% for m in messages %}{{ m['content'] }}{% endfor %}", progress=False)
    with pytest.raises(ValueError, match="cannot render a one-question conversation: TemplateSyntaxError"):
        load_model(str(path), chat_template="{% for m in messages %}{{ m['content'] }", progress=False)


def test_bad_files_are_named_and_leave_nothing_in_the_cache(tmp_path):
    path, _, _ = write_tiny_gguf(tmp_path / "good.gguf")
    data = path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ValueError, match=rf"{cut} is a truncated or corrupt GGUF file .*holds {len(data) - 1000:,} bytes"):
        load_model(str(cut), progress=False)
    cut.write_bytes(data[:200])
    with pytest.raises(ValueError, match="truncated or corrupt GGUF"):
        load_model(str(cut), progress=False)
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=f"{fake} is not a GGUF file"):
        load_model(str(fake), progress=False)
    for arch, message in (("bert", "architecture the installed transformers cannot read from GGUF"),
                          ("t5", "no causal language model class")):
        other, _, _ = write_tiny_gguf(tmp_path / f"{arch}.gguf", architecture=arch)
        with pytest.raises(ValueError, match=f"{other} holds a '{arch}' model, .*{message}"):
            load_model(str(other), progress=False)
    assert _models_dir(tmp_path) == []


def test_paths_that_hold_no_model_are_named(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"{empty} is neither a Hugging Face checkpoint directory"):
        load_model(str(empty))
    (empty / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=f"{empty} holds config.json but no weights"):
        load_model(str(empty))
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.gguf").write_bytes(b"x")
    (two / "b.gguf").write_bytes(b"y")
    with pytest.raises(ValueError, match=r"several GGUF files \(a.gguf, b.gguf\)"):
        load_model(str(two))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file but not a .gguf"):
        load_model(str(weights))
    with pytest.raises(FileNotFoundError, match="no model file or directory at .*nowhere.gguf"):
        load_model(str(tmp_path / "nowhere.gguf"))


def test_an_interrupted_conversion_leaves_nothing_half_written(tmp_path, monkeypatch):
    path, _, _ = write_tiny_gguf(tmp_path / "tiny.gguf")

    def broken(self, *args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    from transformers import PreTrainedTokenizerBase

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", broken)
    with pytest.raises(KeyboardInterrupt):
        load_model(str(path), progress=False)
    assert _models_dir(tmp_path) == []  # neither the cache nor its staging directory
    monkeypatch.undo()


def test_a_cache_that_no_longer_matches_is_rebuilt(tmp_path, cache):
    path, _, _ = write_tiny_gguf(tmp_path / "tiny.gguf")
    model_id = load_model(str(path), progress=False).model_id
    [directory] = _models_dir(tmp_path)
    weights = tmp_path / "cache" / "models" / directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)  # same size, other bytes
    assert load_model(str(path), progress=False).model_id == model_id
    assert len(cache) == 2


def test_two_processes_wanting_one_cache_build_it_once(tmp_path):
    path, _, _ = write_tiny_gguf(tmp_path / "tiny.gguf")
    script = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
              "from workbench.core.models import load_model\n"
              f"print('ID', load_model({str(path)!r}, progress=False).model_id)\n")
    env = {**os.environ, "WORKBENCH_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    ids = {line for out in outputs for line in out.splitlines() if line.startswith("ID ")}
    assert len(ids) == 1
    assert sum(out.count("cached the float32 model") for out in outputs) == 1
