"""The assumptions measured on stores with planted structure: the measures recover what was planted."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from planted_deltas import response_ids, response_mask, write_store
from workbench.evaluation.assumptions import measure_assumptions
from workbench.evaluation.direction_shares import layer_bands, layer_energies, rank_for_share, share_along, share_curves
from workbench.evaluation.spread import SPREAD_MEASURES, spread_measures, spread_statistics

pytestmark = pytest.mark.usefixtures("one_thread")

D, LAYERS = 16, (0, 1, 2)


def lengths_of(n: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(8, 16, (n,), generator=g) + 1).tolist()  # one header token each


def strengths_store(directory, n: int, seed: int, *, sideways: float = 0.0, noise: float = 0.0, first_id: int = 0,
                    negative: float = 0.3):
    """Deltas ``c_t z + s_t u + noise`` at every layer: ``c_t`` log-normal (a ``negative`` share of them
    flipped), ``s_t = +-sideways`` with random sign, ``z`` and ``u`` the first two axes. Returns
    ``(store, c [tokens], lengths)``."""
    lengths = lengths_of(n, seed)
    t = sum(lengths)
    g = torch.Generator().manual_seed(seed + 100)
    c = torch.exp(torch.randn(t, generator=g) * 1.5) * torch.where(torch.rand(t, generator=g) < negative, -1.0, 1.0)
    s = sideways * torch.where(torch.rand(t, generator=g) < 0.5, -1.0, 1.0)
    acc = c[:, None] * torch.eye(D)[0] + s[:, None] * torch.eye(D)[1] + noise * torch.randn(t, D, generator=g)
    return write_store(directory, acc[None].repeat(len(LAYERS), 1, 1), lengths, first_id=first_id), c, lengths


def test_spread_and_share_recover_planted_strengths_along_a_given_direction(tmp_path):
    train, _, _ = strengths_store(tmp_path / "train", 20, seed=0, sideways=2.0)
    heldout, c, lengths = strengths_store(tmp_path / "heldout", 12, seed=1, sideways=2.0)
    z = {l: torch.eye(D)[0] * 3 for l in LAYERS}  # a user's vector: any length, made unit
    a = measure_assumptions(train, heldout, directions=z, n_boot=200)
    response = response_mask(lengths)
    truth = spread_measures(c[response].numpy()[None])
    for measure in SPREAD_MEASURES:
        stat = a.coef_spread.stat(measure)
        assert stat["value"] == pytest.approx(float(truth[measure][0]), rel=1e-4), measure
        assert stat["lo"] <= stat["value"] <= stat["hi"] and stat["n"] == 12
    assert a.coef_spread.stat("negative")["value"] == pytest.approx(0.3, abs=0.08)
    # the norm hides what the coefficient shows: sqrt(c^2 + 4) spreads far less, and is never negative
    assert a.norm_spread.stat("p90_p10")["value"] < a.coef_spread.stat("p90_p10")["value"] / 2
    assert a.norm_spread.stat("negative")["value"] == 0.0 and a.norm_spread.stat("near_zero")["value"] == 0.0
    # the share along z is sum c^2 / sum (c^2 + 4), exactly, at every layer
    cr = c[response].double()
    expected = float((cr**2).sum() / (cr**2 + 4).sum())
    assert a.along["share"].to_numpy() == pytest.approx([expected] * 3, rel=1e-5)
    assert a.along_summary["lo"] <= expected <= a.along_summary["hi"] and a.along_summary["n"] == 12
    # per layer rows and the header: the coefficient table keeps header rows, flagged; stats leave them out
    assert set(a.coef_spread.per_layer["layer"]) == set(LAYERS)
    assert a.coefficients["is_header"].sum() == 12 * 3
    assert a.coef_spread.n_tokens == int(response.sum())
    top = a.top_tokens(1, n=3)
    assert top["coef"].iloc[0] == pytest.approx(float(cr.max()), rel=1e-5) and (top["x_median"] > 1).all()


def test_the_mean_direction_of_training_deltas_holds_a_one_direction_change(tmp_path):
    train, _, _ = strengths_store(tmp_path / "train", 20, seed=2, noise=0.02, negative=0.0)
    heldout, _, _ = strengths_store(tmp_path / "heldout", 10, seed=3, noise=0.02, negative=0.0)
    a = measure_assumptions(train, heldout, n_boot=100)
    for z in a.energies.directions.values():
        assert float(z @ torch.eye(D)[0]) > 0.999
    assert a.along_summary["value"] > 0.98 and a.along_summary["lo"] > 0.95
    ranks = a.ranks.set_index(["layer", "target"])["rank"]
    assert (ranks == 1).all()
    first = a.curves[(a.curves["basis"] == "principal") & (a.curves["k"] == 1)]
    assert (first["share"] > 0.98).all()


def test_a_rank_three_change_needs_three_directions(tmp_path):
    def rank3(directory, n, seed, first_id=0):
        lengths = lengths_of(n, seed)
        g = torch.Generator().manual_seed(seed + 50)
        basis = torch.linalg.qr(torch.randn(D, 3, generator=torch.Generator().manual_seed(9)))[0].T  # fixed 3 directions
        acc = torch.randn(sum(lengths), 3, generator=g) @ basis
        return write_store(directory, acc[None].repeat(3, 1, 1), lengths, first_id=first_id)

    train, heldout = rank3(tmp_path / "train", 30, 4), rank3(tmp_path / "heldout", 12, 5)
    energies = layer_energies(train, heldout)
    assert energies.rank == D and energies.n_responses == 12
    curves = share_curves(energies, bands=None, n_boot=100)
    principal = curves[curves["basis"] == "principal"].set_index(["layers", "k"])["share"]
    assert principal[("layer 0", 4)] == pytest.approx(1.0, abs=1e-6)
    assert principal[("layer 0", 2)] < 0.8 and principal[("layer 0", 1)] < 0.5
    exact = energies.principal[0][:, 2].sum() / energies.total[0].sum()
    assert exact == pytest.approx(1.0, abs=1e-6)  # k = 3 holds it all
    ranks = rank_for_share(energies, n_boot=100).set_index(["layer", "target"])
    assert ranks.loc[(0, 0.8), "rank"] == 3 and (ranks.loc[(0, 0.8), "lo"], ranks.loc[(0, 0.8), "hi"]) == (3, 3)
    assert ranks.loc[(0, 0.5), "rank"] == 2
    random = curves[curves["basis"] == "random"].set_index(["layers", "k"])["share"]
    for k in (1, 2, 4, 8):  # random directions hold about k / d of it
        assert random[("layer 0", k)] == pytest.approx(k / D, abs=0.12)
    assert random[("layer 0", D)] == pytest.approx(1.0)


def test_random_directions_hold_about_k_over_d_and_bands_average_layers(tmp_path):
    def isotropic(directory, n, seed, first_id=0):
        lengths = lengths_of(n, seed)
        acc = torch.randn(3, sum(lengths), 64, generator=torch.Generator().manual_seed(seed))
        return write_store(directory, acc, lengths, first_id=first_id)

    energies = layer_energies(isotropic(tmp_path / "a", 30, 6), isotropic(tmp_path / "b", 20, 7), n_random=4)
    curves = share_curves(energies, bands=2, n_boot=100)
    assert list(pd.unique(curves["layers"])) == ["layers 0-1", "layer 2"]
    random = curves[curves["basis"] == "random"]
    assert np.allclose(random["share"], random["k"] / 64, atol=0.03)
    assert (curves["lo"] <= curves["share"] + 1e-12).all() and (curves["share"] <= curves["hi"] + 1e-12).all()
    assert sorted(set(curves["k"])) == [1, 2, 4, 8, 16, 32, 64]
    # isotropic noise has no few directions: the training principal ones hold little more than random ones
    principal = curves[curves["basis"] == "principal"].set_index(["layers", "k"])["share"]
    assert principal[("layer 2", 8)] < 0.25
    ranks = rank_for_share(energies, n_boot=50)
    assert (ranks[ranks["target"] == 0.8]["rank"] > 40).all()
    assert layer_bands(range(30), 3)[1] == ("layers 10-19", list(range(10, 20)))


def test_bad_inputs_are_refused_naming_the_value(tmp_path):
    train, _, _ = strengths_store(tmp_path / "train", 6, seed=8)
    heldout, _, _ = strengths_store(tmp_path / "heldout", 4, seed=9)
    single, _, _ = strengths_store(tmp_path / "single", 1, seed=10)
    with pytest.raises(ValueError, match=r"directions\[0\] has shape \[15\] .*d_model = 16"):
        measure_assumptions(train, heldout, directions={l: torch.ones(D - 1) for l in LAYERS})
    with pytest.raises(ValueError, match=r"directions\[0\] is the zero vector"):
        measure_assumptions(train, heldout, directions={l: torch.zeros(D) for l in LAYERS})
    with pytest.raises(KeyError, match="no vector for layer 2"):
        layer_energies(train, heldout, directions={0: torch.ones(D), 1: torch.ones(D)})
    with pytest.raises(IndexError, match=r"layer 5 is not in the training store .* holds layers \[0, 1, 2\]"):
        measure_assumptions(train, heldout, layers=[0, 5])
    with pytest.raises(ValueError, match="at least two held-out responses, got 1"):
        measure_assumptions(train, single)
    with pytest.raises(ValueError, match="at least two held-out responses, got 1"):
        layer_energies(train, heldout, heldout_samples=[2])
    with pytest.raises(ValueError, match=r"held-out samples \[0, 1\] are also training samples"):
        layer_energies(train, train, train_samples=[0, 1, 2], heldout_samples=[0, 1, 4])
    table = measure_assumptions(train, heldout, n_boot=20).coefficients
    with pytest.raises(ValueError, match="at least two held-out responses, got 1"):
        spread_statistics(table[table["sample"] == 0])
    with pytest.raises(IndexError, match=r"layer\(s\) \[9\]"):
        spread_statistics(table, layers=[9])
    with pytest.raises(ValueError, match="n_boot must be an integer >= 1"):
        spread_statistics(table, n_boot=0)
    # disjoint samples of one store are fine
    energies = layer_energies(train, train, train_samples=[0, 1, 2, 3], heldout_samples=[4, 5])
    assert energies.responses.tolist() == [4, 5]
    per_layer, summary = share_along(energies, n_boot=20)
    assert len(per_layer) == 3 and not math.isnan(summary["value"])


def test_summary_tables_of_a_measurement(tmp_path):
    train, _, _ = strengths_store(tmp_path / "train", 8, seed=11, noise=0.02)
    heldout, _, _ = strengths_store(tmp_path / "heldout", 5, seed=12, noise=0.02)
    a = measure_assumptions(train, heldout, n_boot=30)
    summary = a.spread_summary()
    assert list(summary.index) == list(SPREAD_MEASURES)
    assert summary.loc["negative", ("norm", "value")] == 0
    assert summary.loc["negative", ("coef", "value")] > 0.1
    layers = a.by_layer()
    assert list(layers.index) == list(LAYERS)
    assert list(layers.columns) == ["share_along", "rank_50", "rank_80", "norm_p90_p10", "coef_p90_p10"]
    assert (layers["share_along"] > 0.95).all() and (layers["rank_80"] == 1).all()
    assert np.allclose(layers["coef_p90_p10"], layers["norm_p90_p10"], rtol=0.1)  # |c_t| is about the norm here
