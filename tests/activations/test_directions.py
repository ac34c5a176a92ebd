"""Directions and coefficients of Delta_PS on planted tensors and hand-written stores."""

import numpy as np
import pytest
import torch

from planted_deltas import response_mask, write_store
from workbench.activations.directions import (
    captured_energy,
    check_direction,
    coefficient_table,
    coefficients,
    mean_direction,
    mean_directions,
    principal_directions,
    random_directions,
    response_deltas,
)

pytestmark = pytest.mark.usefixtures("one_thread")

D = 12


def unit(i: int, d: int = D) -> torch.Tensor:
    return torch.eye(d)[i]


def test_check_direction_makes_a_unit_vector_and_names_what_is_wrong():
    z = check_direction(np.array([0.0, 3.0, 4.0]), 3)
    assert z.dtype == torch.float32 and torch.allclose(z, torch.tensor([0.0, 0.6, 0.8]))
    with pytest.raises(ValueError, match=r"my z has shape \[5\].*d_model = 3"):
        check_direction(torch.ones(5), 3, name="my z")
    with pytest.raises(ValueError, match=r"shape \[2, 3\]"):
        check_direction(torch.ones(2, 3), 3)
    with pytest.raises(ValueError, match="z is the zero vector"):
        check_direction(torch.zeros(3), 3, name="z")
    with pytest.raises(ValueError, match=r"1 non-finite value\(s\), the first at index 2 \(nan\)"):
        check_direction([1.0, 0.0, float("nan")], 3)
    with pytest.raises(ValueError, match=r"inf"):
        check_direction([1.0, float("inf"), 0.0], 3)
    with pytest.raises(TypeError, match="vector of numbers"):
        check_direction(["a", "b", "c"], 3)


def test_coefficients_are_the_strengths_along_z():
    g = torch.Generator().manual_seed(0)
    c = torch.randn(50, generator=g) * 3
    sideways = torch.randn(50, generator=g)[:, None] * unit(1)
    deltas = c[:, None] * unit(0) + sideways
    assert torch.allclose(coefficients(deltas, 5 * unit(0)), c, atol=1e-5)  # z's length does not matter
    with pytest.raises(ValueError, match=r"z has shape \[11\]"):
        coefficients(deltas, torch.ones(D - 1))


def test_mean_and_principal_directions_recover_a_planted_direction():
    g = torch.Generator().manual_seed(1)
    z = torch.nn.functional.normalize(torch.randn(D, generator=g), dim=0)
    c = torch.rand(200, generator=g) * 3 + 0.2
    deltas = c[:, None] * z + 0.05 * torch.randn(200, D, generator=g)
    assert float(mean_direction(deltas) @ z) > 0.99
    basis = principal_directions(deltas)
    assert basis.shape == (D, D) and torch.allclose(basis @ basis.T, torch.eye(D), atol=1e-5)
    assert float(basis[0] @ z) > 0.99  # first, and signed along the mean
    with pytest.raises(ValueError, match="k must be an integer in"):
        principal_directions(deltas, k=D + 1)
    with pytest.raises(ValueError, match="zero vector"):
        mean_direction(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))


def test_captured_energy_per_response_and_the_random_baseline():
    g = torch.Generator().manual_seed(2)
    deltas = torch.randn(3000, 64, generator=g)
    sample = torch.arange(3000) // 100
    captured, total, ids = captured_energy(deltas, random_directions(64, 64, seed=3), sample)
    assert captured.shape == (30, 64) and ids.tolist() == list(range(30))
    assert np.allclose(captured[:, -1], total)  # a whole basis holds everything
    share = captured.sum(0) / total.sum()
    for k in (1, 4, 16, 32):
        assert share[k - 1] == pytest.approx(k / 64, abs=0.03)
    with pytest.raises(ValueError, match="basis must be"):
        captured_energy(deltas, torch.eye(3), sample)


def test_store_readers_skip_the_header_and_read_pair_order(tmp_path):
    lengths = [4, 6, 5]
    n = sum(lengths)
    g = torch.Generator().manual_seed(4)
    c = torch.rand(n, generator=g) + 0.5
    header = ~response_mask(lengths)
    acc = c[:, None] * unit(0)
    acc[header] = 100 * unit(3)  # the header moves elsewhere, and far: it must not enter
    store = write_store(tmp_path / "s", acc[None].repeat(3, 1, 1), lengths, per_shard=2)
    deltas, sample = response_deltas(store, 1)
    assert deltas.shape == (n - 3, D) and sample.tolist() == [0] * 3 + [1] * 5 + [2] * 4
    assert torch.allclose(mean_directions(store)[2], unit(0))
    table = coefficient_table(store, {0: unit(0), 2: 2 * unit(0)})
    assert sorted(table["layer"].unique()) == [0, 2] and len(table) == 2 * n
    rows = table[table["layer"] == 2]
    assert np.allclose(rows["coef"].to_numpy()[~header.numpy()], c[~header].numpy(), atol=1e-5)
    assert np.allclose(rows["cos"].to_numpy()[~header.numpy()], 1.0, atol=1e-5)
    assert rows["is_header"].tolist() == header.tolist()
    with pytest.raises(IndexError, match=r"layer 7 is not in this store, which holds layers \[0, 1, 2\]"):
        coefficient_table(store, {7: unit(0)})
    with pytest.raises(IndexError, match="layer 7"):
        response_deltas(store, 7)
    with pytest.raises(ValueError, match=r"directions\[0\] has shape \[3\]"):
        coefficient_table(store, {0: torch.ones(3)})
    with pytest.raises(ValueError, match=r"directions\[0\] is the zero vector"):
        coefficient_table(store, {0: torch.zeros(D)})
