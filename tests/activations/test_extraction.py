import numpy as np
import pytest
import torch
from tiny_triplets import replay_local_deltas

from workbench.activations.extraction import extract_batch
from workbench.core.chat import AlignedPair


def test_identical_prompts_give_zero_delta(tiny_model, tiny_pairs):
    p = tiny_pairs[0]
    same = AlignedPair(p.base_ids, p.base_ids, p.base_start, p.base_start, p.header_len)
    acts = extract_batch(tiny_model, [same])
    assert acts.acc.abs().max() == 0
    assert acts.loc.abs().max() == 0
    assert acts.base.abs().max() > 0


def test_instruction_changes_the_span_activations(tiny_model, tiny_pairs):
    acts = extract_batch(tiny_model, tiny_pairs)
    assert acts.acc.norm(dim=-1).min() > 0  # every span token moves on a random model


def test_local_delta_at_layer_0_is_the_accumulated_delta(tiny_model, tiny_pairs):
    acts = extract_batch(tiny_model, tiny_pairs)
    torch.testing.assert_close(acts.loc[0], acts.acc[0])
    assert not torch.allclose(acts.loc[2], acts.acc[2])


def test_packed_layout(tiny_model, tiny_pairs):
    acts = extract_batch(tiny_model, tiny_pairs)
    n = sum(p.span_len for p in tiny_pairs)
    assert acts.base.shape == (3, n, 64) and acts.acc.shape == (3, n, 64)
    assert acts.sample.tolist() == sum(([i] * p.span_len for i, p in enumerate(tiny_pairs)), [])
    assert acts.token_ids.tolist() == [t for p in tiny_pairs for t in p.span_ids]
    assert acts.position.tolist() == [t for p in tiny_pairs for t in range(p.span_len)]


def test_steered_activations_match_a_direct_run(tiny_model, tiny_pairs):
    p = tiny_pairs[1]
    acts = extract_batch(tiny_model, [p])
    _, cache = tiny_model.bridge.run_with_cache(torch.tensor([p.steered_ids]), names_filter=lambda n: n.endswith("resid_post"))
    for i in range(3):
        torch.testing.assert_close(acts.steered[i], cache[f"blocks.{i}.hook_resid_post"][0, p.steered_start:], rtol=1e-5, atol=1e-5)


def test_batched_equals_one_by_one(tiny_model, tiny_pairs):
    batched = extract_batch(tiny_model, tiny_pairs)
    single = [extract_batch(tiny_model, [p]) for p in tiny_pairs]
    for field in ("base", "acc", "loc"):
        torch.testing.assert_close(getattr(batched, field), torch.cat([getattr(s, field) for s in single], dim=1), rtol=1e-4, atol=1e-4)


def test_layer_subset_gives_the_same_deltas(tiny_model, tiny_pairs):
    full = extract_batch(tiny_model, tiny_pairs)
    sub = extract_batch(tiny_model, tiny_pairs, layers=[2])
    assert sub.layers == (2,)
    torch.testing.assert_close(sub.loc[0], full.loc[2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sub.acc[0], full.acc[2], rtol=1e-5, atol=1e-5)


def test_local_deltas_added_layer_by_layer_reproduce_the_prompted_run(tiny_model, tiny_pairs):
    """Adding D_loc[l] to the base run's span after every block l gives A_l(x'y') at every layer."""
    p = tiny_pairs[0]
    acts = extract_batch(tiny_model, [p])
    seen = replay_local_deltas(tiny_model, p, acts)
    for l in range(3):
        torch.testing.assert_close(seen[l], acts.steered[l], rtol=1e-4, atol=1e-4)
    # The accumulated deltas, added at every layer at once, over-steer: they are not the same thing.
    assert (acts.acc[2] - acts.loc[2]).norm() > 1e-2


def test_bad_inputs(tiny_model, tiny_pairs):
    with pytest.raises(ValueError, match="no triplets"):
        extract_batch(tiny_model, [])
    with pytest.raises(IndexError, match="layer index 5 is out of range"):
        extract_batch(tiny_model, tiny_pairs, layers=[5])


def test_pair_magnitudes_match_the_stored_table(tiny_model, tiny_pairs, tmp_path):
    from workbench.activations.deltas import extract_deltas, pair_magnitudes, token_magnitudes

    store = extract_deltas(tiny_model, tiny_pairs, tmp_path / "s", dtype="float32", progress=False)
    for kind in ("acc", "loc"):
        stored = token_magnitudes(store, tiny_model.tokenizer, kind=kind)
        direct = pair_magnitudes(tiny_model, tiny_pairs, kind=kind)
        assert list(direct.columns) == list(stored.columns)
        assert direct[["sample", "layer", "position", "token", "is_header"]].equals(
            stored[["sample", "layer", "position", "token", "is_header"]])
        assert np.allclose(direct["norm"], stored["norm"], rtol=1e-4, atol=1e-6)
    first = direct[(direct["sample"] == 0) & (direct["layer"] == 0)]
    assert first["is_header"].sum() == tiny_pairs[0].header_len and len(first) == tiny_pairs[0].span_len


def test_token_kinds_join_subwords_into_words():
    import pandas as pd

    from workbench.activations.deltas import magnitude_by_kind, token_kinds

    tokens = ["<|im_start|>", "assistant", "\n", "Ar", "r", ",", " mat", "ey", "!", " the", " sea", "."]
    rows = [dict(sample=0, layer=layer, position=i, token=t, is_header=i < 3, rel_norm=float(i + 1) * (layer + 1))
            for layer in (0, 1) for i, t in enumerate(tokens)]
    table = pd.DataFrame(rows)
    kinds = token_kinds(table, ["matey", "arr", "sea dog"])
    first = kinds[table["layer"] == 0].tolist()
    assert first == ["assistant header"] * 3 + ["first response token", "attribute word", "punctuation",
                                                 "attribute word", "attribute word", "punctuation", "other word",
                                                 "other word", "punctuation"]
    by_kind = magnitude_by_kind(table, ["matey", "arr"]).set_index(["layer", "kind"])
    assert by_kind.loc[(0, "attribute word"), "n"] == 3
    assert by_kind.loc[(0, "attribute word"), "median"] == 7.0  # positions 4, 6, 7 -> values 5, 7, 8
    # x_median: relative to the layer's median over response tokens (positions 3..11 -> values 4..12, median 8)
    assert by_kind.loc[(0, "attribute word"), "x_median"] == pytest.approx(7.0 / 8.0)
