import pytest
import torch

from workbench.activations.deltas import delta_norms, extract_deltas, token_magnitudes
from workbench.activations.extraction import extract_batch
from workbench.activations.store import DeltaStore
from workbench.core.checked_files import read_json, write_json


def test_round_trip_float32_is_exact(tiny_model, tiny_pairs, tmp_path):
    store = extract_deltas(tiny_model, tiny_pairs, tmp_path / "s", batch_size=2, dtype="float32", progress=False)
    direct = extract_batch(tiny_model, tiny_pairs)
    assert sorted(store.sample_ids) == [0, 1, 2]
    assert len(store.shards) == 2
    assert store.sample_ids != [0, 1, 2]  # extraction batches by length: store order is not pair order
    order = torch.cat([torch.nonzero(direct.sample == s).flatten() for s in store.sample_ids])
    for i, layer in enumerate(store.layers):
        # the default is pair order: the rows of extract_batch on the pairs as given
        torch.testing.assert_close(store.get("acc", layer), direct.acc[i], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(store.get("loc", layer), direct.loc[i], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(store.get("steered", layer), direct.steered[i], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(store.get("acc", layer, order="store"), direct.acc[i][order], rtol=1e-4, atol=1e-4)
    one = store.get("acc", 1, samples=[2])
    assert one.shape[0] == tiny_pairs[2].span_len


def test_get_and_tokens_agree_row_for_row_in_the_order_asked(tiny_model, tiny_pairs, tmp_path):
    store = extract_deltas(tiny_model, tiny_pairs, tmp_path / "s", batch_size=2, dtype="float32", progress=False)
    direct = extract_batch(tiny_model, tiny_pairs)
    tokens = store.tokens()
    assert torch.equal(tokens["sample"], direct.sample)
    assert torch.equal(tokens["token_ids"], torch.cat([torch.as_tensor(p.base_ids[p.base_start:]) for p in tiny_pairs]))
    picked = store.tokens(samples=[2, 0])
    lens = [tiny_pairs[2].span_len, tiny_pairs[0].span_len]
    assert picked["sample"].tolist() == [2] * lens[0] + [0] * lens[1]
    assert picked["position"].tolist() == list(range(lens[0])) + list(range(lens[1]))
    rows = torch.cat([torch.nonzero(direct.sample == s).flatten() for s in (2, 0)])
    torch.testing.assert_close(store.get("acc", 1, samples=[2, 0]), direct.acc[1][rows], rtol=1e-4, atol=1e-4)
    with pytest.raises(KeyError, match=r"samples \[7\] are not in this store"):
        store.get("acc", 1, samples=[7])
    with pytest.raises(ValueError, match="order must be"):
        store.get("acc", 1, order="sorted")


def test_float16_default_is_close(tiny_model, tiny_pairs, tmp_path):
    store = extract_deltas(tiny_model, tiny_pairs, tmp_path / "s", progress=False)
    assert store.index["dtype"] == "float16"
    direct = extract_batch(tiny_model, tiny_pairs)
    got = store.get("acc", 2)
    assert got.dtype == torch.float32
    want = direct.acc[2]
    assert store.n_tokens == want.shape[0]
    assert 0 < (got - want).norm() / want.norm() < 1e-3  # rounded, but only at float16 precision


def test_resume_skips_stored_samples_and_rebuilds_corrupt_shards(tiny_model, tiny_pairs, tmp_path):
    directory = tmp_path / "s"
    extract_deltas(tiny_model, tiny_pairs[:2], directory, batch_size=1, dtype="float32", progress=False,
                   sample_ids=[0, 1])
    # Pretend the run was interrupted: the full set of triplets goes to the same store later.
    store = extract_deltas(tiny_model, tiny_pairs[:2], directory, batch_size=1, dtype="float32", progress=False,
                           sample_ids=[0, 1])
    assert len(store.shards) == 2  # nothing recomputed
    shard = directory / store.shards[0].file
    shard.write_bytes(shard.read_bytes()[:100])  # truncate
    with pytest.raises(ValueError, match="corrupt or truncated shard"):
        DeltaStore(directory)
    store = extract_deltas(tiny_model, tiny_pairs[:2], directory, batch_size=1, dtype="float32", progress=False,
                           sample_ids=[0, 1])
    assert sorted(store.sample_ids) == [0, 1]


def test_a_store_refuses_a_different_run(tiny_model, tiny_pairs, tmp_path):
    extract_deltas(tiny_model, tiny_pairs, tmp_path / "s", layers=[0, 1], progress=False)
    with pytest.raises(ValueError, match="already holds a different extraction: layers"):
        extract_deltas(tiny_model, tiny_pairs, tmp_path / "s", layers=[2], progress=False)


def test_index_from_another_version_is_refused(tiny_model, tiny_pairs, tmp_path):
    store = extract_deltas(tiny_model, tiny_pairs, tmp_path / "s", progress=False)
    index = read_json(store.directory / "index.json")
    index["format_version"] = 99
    write_json(store.directory / "index.json", index)
    with pytest.raises(ValueError, match="store format 99"):
        DeltaStore(store.directory)
    with pytest.raises(FileNotFoundError, match="not an activation store"):
        DeltaStore(tmp_path)


def test_store_rejects_unknown_kind_and_layer(tiny_model, tiny_pairs, tmp_path):
    store = extract_deltas(tiny_model, tiny_pairs, tmp_path / "s", layers=[1], local=False, progress=False)
    with pytest.raises(ValueError, match="unknown activation kind 'delta'"):
        store.get("delta", 1)
    with pytest.raises(IndexError, match="layer 0 is not in this store"):
        store.get("acc", 0)
    with pytest.raises(ValueError, match="without local deltas"):
        store.get("loc", 1)


def test_token_magnitudes_table(tiny_model, tiny_pairs, tmp_path):
    store = extract_deltas(tiny_model, tiny_pairs, tmp_path / "s", dtype="float32", progress=False)
    table = token_magnitudes(store, tiny_model.tokenizer)
    n = sum(p.span_len for p in tiny_pairs)
    assert len(table) == n * 3
    assert list(table.columns[:5]) == ["sample", "layer", "position", "token_id", "token"]
    row = table[(table["sample"] == 1) & (table["layer"] == 2)].iloc[0]
    acts = extract_batch(tiny_model, [tiny_pairs[1]])
    norm, rel = delta_norms(acts.acc[2], acts.base[2])
    assert row["norm"] == pytest.approx(norm[0].item(), rel=1e-4)
    assert row["rel_norm"] == pytest.approx(rel[0].item(), rel=1e-4)
    assert row["token"] == "<|im_start|>" and row["is_header"]
    assert table.groupby("sample")["is_header"].sum().tolist() == [9 * 3] * 3


def test_delta_norms_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        delta_norms(torch.zeros(2, 3), torch.zeros(3, 3))
