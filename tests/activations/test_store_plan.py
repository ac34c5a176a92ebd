"""Memory at scale: stores of chosen kinds and layers, the disk check before writing, and the
``workbench plan`` estimate."""

import pytest
import torch

from workbench.activations import store as store_module
from workbench.activations.deltas import extract_deltas
from workbench.activations.plan import plan_extraction
from workbench.activations.store import DeltaStore, store_bytes

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_store_of_chosen_kinds_and_layers(tiny_model, tiny_pairs, tmp_path):
    full = extract_deltas(tiny_model, tiny_pairs, tmp_path / "full", dtype="float32", progress=False)
    acc = extract_deltas(tiny_model, tiny_pairs, tmp_path / "acc", layers=[1, 2], kinds=["acc"], dtype="float32",
                         progress=False)
    assert acc.kinds == ("acc",) and acc.layers == [1, 2] and not acc.has_local
    assert full.kinds == ("base", "acc", "loc")
    torch.testing.assert_close(acc.get("acc", 2), full.get("acc", 2))
    with pytest.raises(ValueError, match=r"without 'base' \(kinds \['acc'\]\), so it cannot give 'steered'"):
        acc.get("steered", 2)
    with pytest.raises(ValueError, match="without local deltas"):
        acc.get("loc", 2)
    with pytest.raises(IndexError, match="layer 0 is not in this store"):
        acc.get("acc", 0)
    size = lambda d: sum(p.stat().st_size for p in d.glob("shard-*"))  # noqa: E731
    # one kind at two layers against three kinds at three: ~2/9 of the bytes
    assert size(tmp_path / "acc") < 0.3 * size(tmp_path / "full")
    with pytest.raises(ValueError, match="kinds must be a non-empty subset"):
        extract_deltas(tiny_model, tiny_pairs, tmp_path / "bad", kinds=["steered"], progress=False)


def test_store_size_formula_matches_the_disk(tiny_model, tiny_pairs, tmp_path):
    store = extract_deltas(tiny_model, tiny_pairs, tmp_path / "s", progress=False)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "s").glob("shard-*"))
    predicted = store_bytes(store.n_tokens, 3, 64, ("base", "acc", "loc"), "float16")
    assert predicted <= on_disk < predicted * 1.1  # the rest is safetensors headers and header_len


def test_a_store_too_large_for_the_disk_fails_before_writing(tiny_model, tiny_pairs, tmp_path, monkeypatch):
    class Usage:
        free = 1000

    monkeypatch.setattr(store_module.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(ValueError, match=r"the store needs .* but .* has 1.0 kB free"):
        extract_deltas(tiny_model, tiny_pairs, tmp_path / "s", progress=False)
    assert not list((tmp_path / "s").glob("shard-*"))


def test_an_old_store_without_kinds_is_extracted_again(tiny_model, tiny_pairs, tmp_path):
    import json

    extract_deltas(tiny_model, tiny_pairs, tmp_path / "s", progress=False, batch_size=1)
    index_path = tmp_path / "s" / "index.json"
    index = json.loads(index_path.read_text())
    del index["kinds"], index["checksum"]  # as written before kinds= (and checksums) existed ...
    index["format_version"] = 1
    index["shards"] = index["shards"][1:]  # ... and interrupted after one of its shards was lost
    index_path.write_text(json.dumps(index))
    with pytest.raises(ValueError, match="written before stores had checksums"):
        DeltaStore(tmp_path / "s")
    store = extract_deltas(tiny_model, tiny_pairs, tmp_path / "s", progress=False, batch_size=1)
    assert sorted(store.sample_ids) == [0, 1, 2] and store.kinds == ("base", "acc", "loc")


def test_plan_counts_passes_and_scales_the_measured_time(tiny_model, tmp_path):
    plan = plan_extraction(tiny_model, 100, response_tokens=20, batch_size=4, sample_batches=1, directory=tmp_path)
    assert plan.passes == 25 * 3
    assert plan.seconds == pytest.approx(25 * plan.seconds_per_batch) and plan.seconds_per_batch > 0
    assert plan.store_bytes == store_bytes(100 * plan.tokens_per_triplet, 3, 64, ("base", "acc", "loc"))
    assert plan.tokens_per_triplet > 20  # the assistant header is part of the span
    acc_only = plan_extraction(tiny_model, 100, response_tokens=20, batch_size=4, sample_batches=1, kinds=["acc"],
                               layers=[2])
    assert acc_only.passes == 25 * 2 and acc_only.store_bytes < plan.store_bytes / 7
    text = plan.describe()
    assert "75 forward passes" in text and "store:" in text and "free there" in text


def test_plan_command(capsys):
    from workbench.app.cli import main

    assert main(["plan", "--model", "tiny-random-qwen2", "--triplets", "16", "--tokens", "8",
                 "--batch-size", "8", "--kinds", "acc"]) == 0
    out = capsys.readouterr().out
    assert "16 triplets" in out and "4 forward passes (2 batches of 8 triplets, 2 passes each)" in out
