"""Saving and loading steerers: one safetensors file, exact round trip, clear refusals."""

import json

import pytest
import torch
from safetensors.torch import save_file

import workbench
from workbench.core.tensor_files import CorruptFileError, write_tensor_file
from workbench.steering import PSRSteerer, Steerer, SteererInfo, load_steerer, make_steerer, read_metadata


@pytest.fixture
def steerer(tiny_model):
    g = torch.Generator().manual_seed(1)
    info = SteererInfo("psr-mse", "all", "joint", (0, 2), 2, tiny_model.model_id, tiny_model.d_model,
                       tiny_model.n_layers, attribute="pirate", config={"lr": 0.01, "steps": 5},
                       data_hash="abc123", history={"steps": 5, "stopped": "steps done"})
    shape = (2, 2, tiny_model.d_model)
    return make_steerer(info, torch.randn(shape, generator=g), torch.randn(shape, generator=g), torch.randn(2, 2, generator=g))


def test_round_trip_is_exact(steerer, tiny_model, tmp_path):
    path = tmp_path / "sub" / "pirate.safetensors"
    steerer.save(path)
    loaded = Steerer.load(path, tiny_model)
    assert isinstance(loaded, PSRSteerer) and loaded.info == steerer.info
    for key, value in steerer.params().items():
        assert torch.equal(loaded.params()[key], value)
    meta = read_metadata(path)
    assert meta["package_version"] == workbench.__version__ and meta["format_version"] == 2
    assert meta["model_id"] == "tiny-random-llama-L3-s0" and meta["d_model"] == 64 and meta["n_layers"] == 3
    assert meta["attribute"] == "pirate" and meta["data_hash"] == "abc123" and meta["training"] == "joint"
    assert [p.name for p in path.parent.iterdir()] == ["pirate.safetensors"]  # no temp file left behind


def test_the_file_is_plain_safetensors(steerer, tmp_path):
    path = tmp_path / "s.safetensors"
    steerer.save(path)
    with open(path, "rb") as fh:
        header_len = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(header_len))
    assert set(header) == {"__metadata__", "z", "w", "b"}
    assert not path.read_bytes().startswith(b"\x80")  # not a pickle


def test_a_model_mismatch_is_refused_naming_both_sides(steerer, tmp_path):
    from workbench.core.models import load_model

    other = load_model("tiny-random-llama", n_layers=2, seed=0)
    path = tmp_path / "s.safetensors"
    steerer.save(path)
    message = ("steerer was trained on 'tiny-random-llama-L3-s0' (d_model 64, 3 layers) but the model is "
               "'tiny-random-llama-L2-s0' (d_model 64, 2 layers)")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_steerer(path, other)
    with pytest.raises(ValueError, match="steerer was trained on"):
        with load_steerer(path).apply(other, 1.0):
            pass


def test_truncated_or_foreign_files_fail_clearly(steerer, tmp_path):
    path = tmp_path / "s.safetensors"
    steerer.save(path)
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="cut.safetensors"):
        load_steerer(cut)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a steerer at all")
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_steerer(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="foreign.safetensors is a safetensors file but not a workbench steerer"):
        load_steerer(foreign)
    with pytest.raises(FileNotFoundError, match="no steerer file"):
        load_steerer(tmp_path / "missing.safetensors")


def test_inconsistent_tensors_are_refused(steerer, tmp_path):
    path = tmp_path / "s.safetensors"
    steerer.save(path)
    meta = {k: v for k, v in read_metadata(path).items() if k not in ("format_version", "package_version")}
    bad = tmp_path / "bad.safetensors"
    write_tensor_file(bad, {"z": torch.zeros(2, 2, 64), "w": torch.zeros(2, 2, 64)}, meta,
                      meta_key="workbench_steerer", format_version=2)
    with pytest.raises(ValueError, match="bad.safetensors holds tensors"):
        load_steerer(bad)
    newer = tmp_path / "newer.safetensors"
    save_file(steerer.params(), str(newer), metadata={"workbench_steerer": json.dumps({**meta, "format_version": 99})})
    with pytest.raises(ValueError, match="steerer format 99"):
        load_steerer(newer)


def test_a_trained_steerer_round_trips(tiny_model, tiny_pairs, tmp_path):
    from workbench.steering import TrainConfig, train_steerer

    trained = train_steerer("psr-mse", tiny_model, [1.0, 0.5, 0.7], layers=1, pairs=tiny_pairs, attribute="pirate",
                            config=TrainConfig(steps=5, val_fraction=0), progress=False)
    trained.save(tmp_path / "t.safetensors")
    loaded = Steerer.load(tmp_path / "t.safetensors", tiny_model)
    assert loaded.info == trained.info and loaded.info.config["steps"] == 5 and loaded.info.history["steps"] == 5
    assert all(torch.equal(loaded.params()[k], v) for k, v in trained.params().items())


def test_a_flipped_byte_is_refused_naming_the_file(steerer, tmp_path):
    path = tmp_path / "s.safetensors"
    steerer.save(path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # the last bytes are tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"s.safetensors: tensor '\w' does not match its checksum"):
        load_steerer(path)


def test_no_flipped_byte_loads_a_different_steerer(steerer, tmp_path):
    path = tmp_path / "s.safetensors"
    steerer.save(path)
    clean = path.read_bytes()
    silent = []
    for offset in range(0, len(clean), 3):
        data = bytearray(clean)
        data[offset] ^= 0x04
        path.write_bytes(bytes(data))
        try:
            loaded = load_steerer(path)
        except (ValueError, KeyError):
            continue
        same = loaded.info == steerer.info and all(torch.equal(loaded.params()[k], v) for k, v in steerer.params().items())
        if not same:
            silent.append(offset)
    assert silent == []


def test_non_finite_parameters_are_refused(steerer, tmp_path):
    params = steerer.params()
    params["z"] = params["z"].clone()
    params["z"][0, 0, 0] = float("nan")
    path = tmp_path / "nan.safetensors"
    make_steerer(steerer.info, **params).save(path)
    with pytest.raises(CorruptFileError, match=r"nan.safetensors: tensor 'z' of the steerer holds NaN or infinite"):
        load_steerer(path)


def test_a_steerer_saved_before_checksums_loads_with_a_warning(steerer, tiny_model, tmp_path):
    path = tmp_path / "old.safetensors"
    steerer.save(path)
    meta = read_metadata(path)
    save_file(steerer.params(), str(path), metadata={"workbench_steerer": json.dumps({**meta, "format_version": 1})})
    with pytest.warns(UserWarning, match="written before steerers had checksums"):
        loaded = load_steerer(path, tiny_model)
    assert all(torch.equal(loaded.params()[k], v) for k, v in steerer.params().items())
