"""lambda against the coefficient along the steerer's own z, on planted PSRs whose lambda is the strength."""

import math

import numpy as np
import pytest
import torch

from planted_deltas import write_store
from workbench.evaluation.lambda_reading import lambda_reading, r_squared, spearman, steerer_direction, strength_reading
from workbench.steering import ConstSteerer, PSRSteerer, SteererInfo

pytestmark = pytest.mark.usefixtures("one_thread")

D, LAYERS = 16, (0, 1, 2)


def planted(directory, n: int = 12, seed: int = 0):
    """Base activations ``a_t``; at every layer ``D_t = c_t z + s_t u`` with ``c_t = ReLU(a_t . w + 0.5)``
    (what a PSR with probe ``w, 0.5`` and direction ``z`` reads) and an unrelated sideways part
    ``s_t ~ U(0, 3)`` that the norm mixes in. Returns ``(store, w, z)``."""
    g = torch.Generator().manual_seed(seed)
    lengths = (torch.randint(10, 20, (n,), generator=g) + 1).tolist()
    t = sum(lengths)
    w = torch.nn.functional.normalize(torch.randn(D, generator=g), dim=0)
    z = torch.eye(D)[2] * 4.0
    base = torch.randn(len(LAYERS), t, D, generator=g)
    c = torch.relu(base @ w + 0.5)  # [layers, tokens]
    s = torch.rand(len(LAYERS), t, generator=g) * 3
    acc = c[..., None] * (z / 4) + s[..., None] * torch.eye(D)[5]
    return write_store(directory, acc, lengths, base=base), w, z


def psr(w, z, scope="single", layers=(1,), rank=1):
    info = SteererInfo("psr-mse", scope, "layerwise", layers, rank, "planted", D, len(LAYERS))
    n = len(layers)
    return PSRSteerer(info, z.expand(n, rank, D).clone(), w.expand(n, rank, D).clone(), torch.full((n, rank), 0.5))


def test_lambda_that_is_the_strength_reads_it_and_the_norm_does_not(tmp_path):
    store, w, z = planted(tmp_path / "s")
    table = lambda_reading(psr(w, z), store, n_boot=200)
    got = table.set_index(["target", "measure"])
    assert got.loc[("coefficient", "spearman"), "value"] == pytest.approx(1.0, abs=1e-9)
    assert got.loc[("coefficient", "r2"), "value"] == pytest.approx(1.0, abs=1e-9)
    assert got.loc[("coefficient", "spearman"), "lo"] > 0.999
    assert got.loc[("norm", "spearman"), "value"] < 0.9  # ||D|| also carries the unrelated sideways part
    assert got.loc[("coefficient - norm", "r2"), "lo"] > 0
    assert set(table["method"]) == {"S-PSR"} and set(table["layer"]) == {1} and set(table["kind"]) == {"acc"}
    assert (table["n"] == 12).all() and (table["lo"] <= table["value"] + 1e-9).all()


def test_all_layer_psr_reads_local_deltas_at_its_middle_layer_and_checks(tmp_path):
    store, w, z = planted(tmp_path / "s")
    steerer = psr(w, z, scope="all", layers=LAYERS)
    table = lambda_reading(steerer, store, n_boot=50)
    assert set(table["layer"]) == {1} and set(table["kind"]) == {"loc"}
    assert table.set_index(["target", "measure"]).loc[("coefficient", "spearman"), "value"] > 0.999
    assert torch.allclose(steerer_direction(steerer, 2), torch.eye(D)[2])
    with pytest.raises(IndexError, match=r"layer 2 is not steered by S-PSR, which steers layers \[1\]"):
        lambda_reading(psr(w, z), store, layer=2)
    with pytest.raises(IndexError, match="layer 2 is not steered"):
        steerer_direction(psr(w, z), 2)
    with pytest.raises(ValueError, match="rank 2: pass component="):
        lambda_reading(psr(w, z, rank=2), store)
    assert len(lambda_reading(psr(w, z, rank=2), store, component=1, n_boot=20)) == 6
    with pytest.raises(ValueError, match="S-PSR's z at layer 1 is the zero vector"):
        lambda_reading(psr(w, torch.zeros(D)), store)
    with pytest.raises(TypeError, match="steerer must be a Steerer"):
        lambda_reading("S-PSR", store)
    one, _, _ = planted(tmp_path / "one", n=1)
    with pytest.raises(ValueError, match="at least two held-out responses, got 1"):
        lambda_reading(psr(w, z), one)


def test_a_constant_vector_reads_nothing():
    info = SteererInfo("const-dim", "single", "layerwise", (1,), 1, "planted", D, len(LAYERS))
    const = ConstSteerer(info, torch.ones(1, 1, D))
    lam = const.lambdas_from_acts(1, torch.randn(30, D))[:, 0]
    table = strength_reading(lam, torch.randn(30, D), torch.ones(D), torch.arange(30) // 10, n_boot=20)
    assert table["value"].isna().all()


def test_rank_statistics_on_ties_and_lines():
    assert spearman([0.0, 0.0, 1.0, 2.0], [1.0, 1.0, 5.0, 9.0]) == pytest.approx(1.0)
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert r_squared([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 4.0, 9.0]) < 1.0
    assert math.isnan(r_squared([1.0, 1.0], [0.0, 2.0]))
    x = np.random.default_rng(0).normal(size=200)
    assert spearman(x, np.exp(x)) == pytest.approx(1.0) and r_squared(x, np.exp(x)) < 0.9
