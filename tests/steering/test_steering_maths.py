"""Steerer maths on plain tensors: planted recovery, closed forms, validation, training loop."""

import math

import pandas as pd
import pytest
import torch

from workbench.steering import (
    ConstSteerer,
    PSRSteerer,
    SteererInfo,
    TokenData,
    TrainConfig,
    check_alpha,
    fit_const_mse,
    fit_dim,
    make_steerer,
    relative_mse,
    soft_labels_of,
    split_sequences,
)
from workbench.steering.layerwise import LayerwisePSRTrainer, closed_form
from workbench.steering.train import dead_relu_penalty

D, N_SEQ, PER_SEQ = 32, 100, 20


pytestmark = pytest.mark.usefixtures("one_thread")


def planted(rank: int, seed: int = 0, n_layers: int = 1):
    """Activations whose delta is alpha * sum_k ReLU(a . w_k + b_k) z_k, most tokens at zero."""
    g = torch.Generator().manual_seed(seed)
    n = N_SEQ * PER_SEQ
    acts, deltas, lams, zs = [], [], [], []
    seq = torch.arange(N_SEQ).repeat_interleave(PER_SEQ)
    alpha = (torch.rand(N_SEQ, generator=g) * 0.5 + 0.5)[seq]
    for _ in range(n_layers):
        a = torch.randn(n, D, generator=g) * 3 + 1.0
        q, _ = torch.linalg.qr(torch.randn(D, 2 * rank, generator=g))
        w, z = q[:, :rank].T / 3, q[:, rank:].T * 4
        lam = torch.relu(a @ w.T - 1.0)
        acts.append(a)
        deltas.append(alpha[:, None] * (lam @ z) + 0.01 * torch.randn(n, D, generator=g))
        lams.append(lam)
        zs.append(z)
    data = TokenData(tuple(range(n_layers)), torch.stack(acts), torch.stack(deltas), alpha, seq)
    return data, torch.stack(lams), torch.stack(zs)


def info(method="psr-mse", rank=1, layers=(0,), scope="single", n_layers=1, **kw):
    return SteererInfo(method, scope, "layerwise", layers, rank, "synthetic", D, n_layers, **kw)


def fit_psr(data, rank=1, **config):
    config = {"steps": 1500, "patience": 0, **config}
    scope = "single" if len(data.layers) == 1 else "all"
    trainer = LayerwisePSRTrainer(info(rank=rank, layers=data.layers, scope=scope, n_layers=len(data.layers)),
                                  data, TrainConfig(**config))
    return trainer.run(progress=False)


@pytest.fixture(scope="module")
def rank1():
    return planted(rank=1)


@pytest.fixture(scope="module")
def psr_on_rank1(rank1):
    return fit_psr(rank1[0])


def test_psr_recovers_a_planted_direction_and_per_token_strengths(rank1, psr_on_rank1):
    data, lam, z = rank1
    assert (lam == 0).float().mean() > 0.8  # most tokens untouched, as prompting does
    cos = torch.nn.functional.cosine_similarity(psr_on_rank1.z[0, 0], z[0, 0], dim=0)
    assert abs(float(cos)) > 0.99
    found = psr_on_rank1.lambdas_from_acts(0, data.acts[0])[:, 0]
    assert float(torch.corrcoef(torch.stack([found, lam[0, :, 0]]))[0, 1]) > 0.95


def test_constant_vector_fits_the_planted_delta_much_worse(rank1, psr_on_rank1):
    data, _, _ = rank1
    const = closed_form(info("const-mse"), data)
    psr_mse, const_mse = float(relative_mse(psr_on_rank1, data)[0]), float(relative_mse(const, data)[0])
    assert psr_mse < 0.05
    assert const_mse > 10 * psr_mse


def test_rank_two_fits_a_rank_two_delta_where_rank_one_cannot():
    data, _, _ = planted(rank=2, seed=1)
    one, two = fit_psr(data, rank=1), fit_psr(data, rank=2)
    assert two.rank == 2 and two.z.shape == (1, 2, D)
    mse_one, mse_two = float(relative_mse(one, data)[0]), float(relative_mse(two, data)[0])
    assert mse_two < 0.05
    assert mse_one > 0.3 and mse_one > 10 * mse_two


def test_all_layer_layerwise_fit_treats_each_layer_as_its_own_problem():
    data, _, z = planted(rank=1, seed=2, n_layers=2)
    both = fit_psr(data)
    assert both.layers == (0, 1) and both.info.scope == "all"
    for layer in (0, 1):
        cos = torch.nn.functional.cosine_similarity(both.z[layer, 0], z[layer, 0], dim=0)
        assert abs(float(cos)) > 0.99


def test_const_dim_is_exactly_the_mean_delta(rank1):
    data, _, _ = rank1
    steerer = closed_form(info("const-dim"), data)
    assert isinstance(steerer, ConstSteerer)
    assert torch.equal(steerer.z[0, 0], data.delta[0].mean(dim=0))
    assert torch.equal(fit_dim(data)[0, 0], data.delta[0].mean(dim=0))


def test_const_mse_is_the_least_squares_solution(rank1):
    data, _, _ = rank1
    z = fit_const_mse(data)[0, 0].clone().requires_grad_(True)
    loss = (data.alpha[:, None] * z - data.delta[0]).pow(2).sum()
    loss.backward()
    assert z.grad.abs().max() < 1e-2 * data.delta[0].abs().sum(0).max()


def test_training_is_seeded_and_bit_identical(rank1):
    data, _, _ = rank1
    a = fit_psr(data, steps=60, seed=3)
    b = fit_psr(data, steps=60, seed=3)
    c = fit_psr(data, steps=60, seed=4)
    for key in ("z", "w", "b"):
        assert torch.equal(a.params()[key], b.params()[key])
    assert not torch.equal(a.w, c.w)  # another seed, another validation split


def test_stop_and_resume_continue_exactly(rank1):
    data, _, _ = rank1
    config = TrainConfig(steps=60, patience=0, eval_every=10, batch_size=16)
    whole = LayerwisePSRTrainer(info(), data, config).run(progress=False)
    trainer = LayerwisePSRTrainer(info(), data, config)
    seen = []

    def callback(report):
        seen.append(report)
        return report.step == 25  # the stop signal

    trainer.run(callback=callback, progress=False)
    assert trainer.step == 25 and trainer.stopped_because == "callback"
    assert [r.step for r in seen] == list(range(1, 26))
    assert all(r.elapsed > 0 and math.isfinite(r.train_loss) for r in seen)
    assert [r.step for r in seen if r.val_loss is not None] == [10, 20]
    resumed = trainer.run(progress=False)  # continues from the current parameters and optimizer state
    assert trainer.step == 60
    for key in ("z", "w", "b"):
        assert torch.equal(whole.params()[key], resumed.params()[key])


def test_stop_flag_stops_a_running_trainer(rank1):
    data, _, _ = rank1
    trainer = LayerwisePSRTrainer(info(), data, TrainConfig(steps=100))
    start = trainer.params()
    stopped = trainer.run(callback=lambda r: trainer.stop() if r.step == 7 else None, progress=False)
    assert trainer.step == 7 and trainer.stopped_because == "stop flag"
    # no validation step came (every 10 steps), yet the 7 steps count: the stop validates them
    assert stopped.info.history["best_step"] == 7
    assert not torch.equal(stopped.params()["w"], start["w"].detach())
    assert torch.equal(stopped.params()["w"], trainer.params()["w"].detach())


def test_early_stopping_keeps_the_best_validation_parameters(rank1):
    data, _, _ = rank1
    trainer = LayerwisePSRTrainer(info(), data, TrainConfig(steps=3000, lr=0.05, patience=3, eval_every=5, reg_weight=0))
    best = trainer.run(progress=False)
    assert trainer.stopped_because == "early stopping" and trainer.step < 3000
    assert best.info.history["best_step"] == trainer.step - 15
    with torch.no_grad():
        live = float(trainer._eval_loss().sum())
    assert best.info.history["best_val_loss"] <= live
    assert float(relative_mse(best, trainer.val_data)[0]) == pytest.approx(best.info.history["best_val_loss"], rel=1e-4)


def test_dead_relu_penalty_is_max_zero_one_minus_sum_per_sequence():
    lam = torch.tensor([[0.2], [0.3], [2.0], [0.0]])
    seq = torch.tensor([0, 0, 1, 2])
    # sequence sums 0.5, 2.0, 0.0 -> penalties 0.5, 0, 1
    assert float(dead_relu_penalty(lam, seq, 3)) == pytest.approx(0.5)


def test_psr_maths_on_plain_tensors():
    z = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    w = torch.tensor([[[1.0, 0.0], [0.0, -1.0]]])
    b = torch.tensor([[0.0, 1.0]])
    s = make_steerer(SteererInfo("psr-mse", "single", "layerwise", (3,), 2, "m", 2, 5), z, w, b)
    acts = torch.tensor([[2.0, 0.0], [-1.0, 3.0]])
    assert torch.equal(s.lambdas_from_acts(3, acts), torch.tensor([[2.0, 1.0], [0.0, 0.0]]))
    assert torch.equal(s.delta(3, acts), torch.tensor([[2.0, 2.0], [0.0, 0.0]]))
    assert torch.equal(s.steer_acts(3, acts, 0.5), acts + 0.5 * torch.tensor([[2.0, 2.0], [0.0, 0.0]]))
    assert s.steer_acts(3, acts, 0) is acts
    const = make_steerer(SteererInfo("const-dim", "single", "layerwise", (3,), 1, "m", 2, 5), torch.ones(1, 1, 2))
    assert torch.equal(const.lambdas_from_acts(3, acts), torch.ones(2, 1))
    assert torch.equal(const.steer_acts(3, acts, -2.0), acts - 2)
    with pytest.raises(IndexError, match="layer 2 is not steered"):
        s.delta(2, acts)
    with pytest.raises(ValueError, match="d_model 2"):
        s.delta(3, torch.zeros(4, 3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 101.0, -1e4])
def test_alpha_must_be_finite_and_sane(bad):
    with pytest.raises(ValueError, match="alpha"):
        check_alpha(bad)


def test_alpha_accepts_negative_and_refuses_non_numbers():
    assert check_alpha(-3) == -3.0 and check_alpha(0) == 0.0
    with pytest.raises(TypeError, match="alpha must be a number"):
        check_alpha("1")
    with pytest.raises(TypeError):
        check_alpha(True)


def test_info_and_shape_validation():
    with pytest.raises(ValueError, match="rank must be an integer >= 1"):
        info(rank=0)
    with pytest.raises(ValueError, match="unknown steering method 'dim'"):
        info("dim")
    with pytest.raises(ValueError, match="layer 4 is out of range"):
        SteererInfo("psr-mse", "all", "layerwise", (0, 4), 1, "m", D, 3)
    with pytest.raises(ValueError, match="exactly one layer"):
        SteererInfo("psr-mse", "single", "layerwise", (0, 1), 1, "m", D, 3)
    with pytest.raises(ValueError, match="rank is 1"):
        info("const-dim", rank=2)
    with pytest.raises(ValueError, match=r"z must have shape \[1, 1, 32\]"):
        ConstSteerer(info("const-dim"), torch.zeros(1, 1, 8))
    with pytest.raises(ValueError, match="b must have shape"):
        PSRSteerer(info(), torch.zeros(1, 1, D), torch.zeros(1, 1, D), torch.zeros(2))


def test_token_data_validation():
    a = torch.zeros(1, 4, D)
    ok = dict(layers=(0,), acts=a, delta=a, alpha=torch.ones(4), seq=torch.arange(4))
    TokenData(**ok)
    with pytest.raises(ValueError, match="empty data"):
        TokenData((0,), torch.zeros(1, 0, D), torch.zeros(1, 0, D), torch.ones(0), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="must share one"):
        TokenData(**{**ok, "delta": torch.zeros(1, 4, D + 1)})
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        TokenData(**{**ok, "alpha": torch.tensor([0.5, 1.5, 1.0, 1.0])})
    with pytest.raises(ValueError, match="NaN"):
        TokenData(**{**ok, "acts": torch.full((1, 4, D), float("nan"))})
    with pytest.raises(ValueError, match=r"one per token"):
        TokenData(**{**ok, "seq": torch.arange(3)})


def test_split_by_sequence_is_seeded_and_disjoint():
    train, val = split_sequences(range(10), 0.2, seed=0)
    assert len(val) == 2 and not set(train) & set(val) and sorted(train + val) == list(range(10))
    assert split_sequences(range(10), 0.2, seed=0) == (train, val)
    assert split_sequences([5], 0.5, seed=0) == ([5], [])
    with pytest.raises(ValueError, match="val_fraction"):
        split_sequences(range(3), 1.0, 0)


def test_soft_labels_come_from_the_kept_rows_in_order():
    from workbench.data.triplets import TripletSet

    table = pd.DataFrame({"kept": [True, False, True], "soft_label": [0.9, 0.1, 0.6]})
    assert soft_labels_of(TripletSet(table)) == {0: 0.9, 1: 0.6}


def test_train_config_validation():
    with pytest.raises(ValueError, match="lr must be a number > 0"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="val_fraction"):
        TrainConfig(val_fraction=1.0)
