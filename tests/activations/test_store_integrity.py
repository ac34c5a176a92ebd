"""The delta store outside the happy path: flipped bytes, old formats, and two writers at once.

A flipped byte anywhere in a shard or in the index is either harmless (a padding byte) or refused
naming the file, never a silently different delta; a resume rebuilds what failed, bit for bit.
Two processes extracting into one directory end with exactly the store one process makes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from workbench.activations.deltas import extract_deltas
from workbench.activations.store import DeltaStore, DeltaWriter
from workbench.activations.extraction import extract_batch
from workbench.core.checked_files import read_json, write_json
from workbench.core.locks import LOCK_NAME, holder
from workbench.core.tensor_files import CorruptFileError

ROOT = Path(__file__).resolve().parents[2]


def _files(directory: Path) -> dict[str, object]:
    """The store's own files (not the lock's), name -> content: the index's bytes; a shard's metadata
    and each tensor's bytes (safetensors writes its metadata entries in no fixed order)."""
    from safetensors import safe_open

    out = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(LOCK_NAME):
            continue
        if path.suffix == ".safetensors":
            with safe_open(path, framework="pt") as fh:
                out[path.name] = (fh.metadata(), {k: fh.get_tensor(k).numpy().tobytes() for k in fh.keys()})
        else:
            out[path.name] = path.read_bytes()
    return out


def _read_everything(store: DeltaStore) -> list[torch.Tensor]:
    out = [store.tokens()[k] for k in ("token_ids", "sample", "position", "is_header")]
    return out + [store.get(kind, layer) for kind in ("base", "acc", "loc") for layer in store.layers]


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x20
    path.write_bytes(bytes(data))


def _tensor_offset(path: Path, name: str) -> int:
    """Where tensor ``name``'s bytes start in a safetensors file."""
    import json
    import struct

    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    begin, _ = json.loads(raw[8:8 + n])[name]["data_offsets"]
    return 8 + n + begin


@pytest.mark.parametrize("tensor", ["acc.1", "token_ids", "loc.2"])
def test_a_flipped_byte_in_a_shard_is_refused_and_resume_rebuilds_it(tiny_model, tiny_pairs, tmp_path, tensor):
    directory = tmp_path / "s"
    store = extract_deltas(tiny_model, tiny_pairs, directory, batch_size=1, dtype="float32", progress=False)
    before = _read_everything(store)
    shard = directory / store.shards[0].file
    _flip(shard, _tensor_offset(shard, tensor) + 5)
    with pytest.raises(CorruptFileError, match=rf"{shard.name}: tensor '{tensor}' does not match its checksum"):
        _read_everything(DeltaStore(directory))
    rebuilt = extract_deltas(tiny_model, tiny_pairs, directory, batch_size=1, dtype="float32", progress=False)
    assert len(rebuilt.shards) == 3
    assert all(torch.equal(a, b) for a, b in zip(_read_everything(rebuilt), before))  # extracted again, bit for bit


def test_no_flipped_byte_gives_a_silently_different_store(tiny_model, tiny_pairs, tmp_path):
    directory = tmp_path / "s"
    store = extract_deltas(tiny_model, tiny_pairs[:1], directory, layers=[0, 2], dtype="float16", progress=False)
    want = _read_everything(store)
    shard = directory / store.shards[0].file
    clean = shard.read_bytes()
    refused = harmless = 0
    for offset in range(0, len(clean), 7):
        _flip(shard, offset)
        try:
            got = _read_everything(DeltaStore(directory))
        except (CorruptFileError, ValueError):
            refused += 1
        else:
            assert all(torch.equal(a, b) for a, b in zip(got, want)), f"byte {offset} changed the store silently"
            harmless += 1
        shard.write_bytes(clean)
    assert refused > 0.9 * (refused + harmless)


def test_a_flipped_byte_in_the_index_is_refused_and_resume_rebuilds(tiny_model, tiny_pairs, tmp_path, caplog):
    directory = tmp_path / "s"
    extract_deltas(tiny_model, tiny_pairs, directory, batch_size=2, dtype="float32", progress=False)
    before = _files(directory)
    index = directory / "index.json"
    text = index.read_text()
    index.write_text(text.replace('"samples": [\n        1', '"samples": [\n        2', 1))
    assert index.read_text() != text
    with pytest.raises(CorruptFileError, match="index.json does not match its checksum"):
        DeltaStore(directory)
    with caplog.at_level(logging.WARNING):
        extract_deltas(tiny_model, tiny_pairs, directory, batch_size=2, dtype="float32", progress=False)
    assert "extracting every shard again" in caplog.text
    assert _files(directory) == before


def test_a_store_of_the_old_format_is_extracted_again(tiny_model, tiny_pairs, tmp_path, caplog):
    directory = tmp_path / "s"
    extract_deltas(tiny_model, tiny_pairs, directory, dtype="float32", progress=False)
    before = _files(directory)
    index = read_json(directory / "index.json")
    (directory / "index.json").write_text(__import__("json").dumps({**index, "format_version": 1}))
    with pytest.raises(ValueError, match="written before stores had checksums; run the extraction again"):
        DeltaStore(directory)
    with caplog.at_level(logging.WARNING):
        extract_deltas(tiny_model, tiny_pairs, directory, dtype="float32", progress=False)
    assert "format 1" in caplog.text
    assert _files(directory) == before


def test_a_second_writer_that_did_not_wait_is_stopped(tiny_model, tiny_pairs, tmp_path):
    directory = tmp_path / "s"
    header = dict(model_id="m", layers=[0, 1, 2], d_model=tiny_model.d_model, dtype="float32")
    first, second = DeltaWriter(directory, **header), DeltaWriter(directory, **header)
    acts = extract_batch(tiny_model, tiny_pairs[:1])
    first.write(acts, [0])
    with pytest.raises(RuntimeError, match="another writer changed the store"):
        second.write(acts, [1])
    assert DeltaStore(directory).sample_ids == [0]


_EXTRACT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from workbench.core.models import load_model
    from workbench.activations.deltas import extract_deltas
    from tiny_triplets import make_tiny_pairs
    import os, time
    model = load_model("tiny-random-llama", n_layers=3, seed=0)
    pairs = make_tiny_pairs(model) * {copies}
    while {go!r} and not os.path.exists({go!r}):  # loaded: wait for the test to say go
        time.sleep(0.01)
    store = extract_deltas(model, pairs, {directory!r}, batch_size=1, dtype="float32", progress=False)
    print("done", len(store.shards), flush=True)
""")


def _extraction(directory: Path, copies: int, go: Path | None = None) -> subprocess.Popen:
    """An extraction in a process of its own; with ``go``, it starts extracting once that file exists."""
    code = _EXTRACT.format(tests=str(ROOT / "tests"), copies=copies, directory=str(directory), go=str(go or ""))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})


COPIES = 30  # 90 triplets, one shard each: long enough that the second process starts mid-way


@pytest.fixture(scope="module")
def single_process_store(tmp_path_factory):
    directory = tmp_path_factory.mktemp("single") / "s"
    proc = _extraction(directory, COPIES)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return _files(directory)


@pytest.mark.parametrize("stagger", ["simultaneous", "staggered"])
def test_two_processes_on_one_directory_make_the_single_process_store(single_process_store, tmp_path, stagger):
    directory = tmp_path / "s"
    first, second = _extraction(directory, COPIES, tmp_path / "go-1"), _extraction(directory, COPIES, tmp_path / "go-2")
    if stagger == "simultaneous":
        (tmp_path / "go-1").touch(), (tmp_path / "go-2").touch()
    else:  # the second starts once the first is writing
        (tmp_path / "go-1").touch()
        deadline = time.monotonic() + 300
        while not (directory / "shard-00000.safetensors").exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert holder(directory).get("pid") == first.pid, "the first extraction never took the lock"
        (tmp_path / "go-2").touch()
    results = [p.communicate(timeout=600) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], [err for _, err in results]
    assert all(out.strip().endswith(f"done {3 * COPIES}") for out, _ in results)
    if stagger == "staggered":
        assert "another writer holds it" in results[1][1]
    assert _files(directory) == single_process_store
