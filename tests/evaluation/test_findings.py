"""The findings' numbers: per-token spread on planted magnitudes, per-triplet faithfulness that
pools back to the faithfulness table, and intervals over triplets."""

import numpy as np
import pandas as pd
import pytest

from workbench.evaluation.faithfulness import faithfulness
from workbench.evaluation.findings import faithfulness_intervals, faithfulness_statistic, spread_by_layer, spread_interval
from workbench.evaluation.pair_faithfulness import pair_errors
from workbench.steering import train_steerer

pytestmark = pytest.mark.usefixtures("one_thread")


def _table(spread: float, n_samples=20, tokens=30, layers=(0, 1), seed=0):
    """Per-token norms log-uniform over ``spread`` (so p90/p10 is about ``spread ** 0.8``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_samples):
        for p in range(tokens):
            for layer in layers:
                rows.append({"sample": s, "layer": layer, "position": p, "is_header": p < 2,
                             "norm": float(spread ** rng.random())})
    return pd.DataFrame(rows)


def test_spread_is_read_from_response_tokens():
    wide, narrow = _table(1000.0), _table(2.0)
    by_layer = spread_by_layer(wide)
    assert list(by_layer["layer"]) == [0, 1] and (by_layer["n_tokens"] == 20 * 28).all()  # headers left out
    assert 100 < by_layer["p90_p10"].min() and by_layer["max_min"].min() > by_layer["p90_p10"].max()
    stat = spread_interval(wide, n_boot=100)
    assert stat["n"] == 20 and stat["lo"] <= stat["value"] <= stat["hi"] and stat["lo"] > 10
    small = spread_interval(narrow, n_boot=100)
    assert small["hi"] < 2.0


@pytest.fixture(scope="module")
def pairs(tiny_model):
    from tiny_triplets import make_tiny_pairs

    return make_tiny_pairs(tiny_model)


def test_pair_errors_pool_to_the_faithfulness_table(tiny_model, pairs):
    dim = train_steerer("const-dim", tiny_model, 1.0, layers=1, pairs=pairs, progress=False)
    methods = {"S-DiM": (dim, 1.0), "S-DiM x3": (dim, 3.0)}
    errors = pair_errors(tiny_model, pairs, methods, batch_size=2)
    pooled = faithfulness(tiny_model, pairs, methods).set_index(["method", "layer"])["rel_rmse"]
    curves = faithfulness_intervals(errors, n_boot=50).set_index(["method", "layer"])
    for key, value in pooled.items():
        assert curves.loc[key, "rel_rmse"] == pytest.approx(value, rel=1e-4, abs=1e-6)
    assert (errors["pair"].nunique(), errors["layer"].nunique()) == (len(pairs), tiny_model.n_layers)
    assert (curves["rel_rmse_lo"] <= curves["rel_rmse"] + 1e-9).all() and (curves["rel_rmse"] <= curves["rel_rmse_hi"] + 1e-9).all()
    # a statistic over the curves, with its interval: three times the vector is worse at its layer than once
    gap = faithfulness_statistic(errors, lambda c, ls: c["S-DiM x3"][..., ls.index(1)] - c["S-DiM"][..., ls.index(1)],
                                 n_boot=100)
    assert gap["n"] == len(pairs) and gap["lo"] > 0
