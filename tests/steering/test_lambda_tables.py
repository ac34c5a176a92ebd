import pandas as pd
import pytest
import torch

from workbench.core.generation import SamplingConfig, generate_answers
from workbench.steering import TrainConfig, lambdas, train_steerer
from workbench.steering.lambda_tables import generation_lambda_table, lambda_frame, pair_lambda_table

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def psr(tiny_model):
    from tiny_triplets import make_tiny_pairs

    return train_steerer("psr-mse", tiny_model, 1.0, layers=None, pairs=make_tiny_pairs(tiny_model), rank=2,
                         config=TrainConfig(steps=20), progress=False)


def test_generation_table_holds_every_layer_token_and_component(tiny_model, psr):
    (answer,) = generate_answers(tiny_model, ["Why is the sky blue?"], steerers=[(psr, 1.0)],
                                 config=SamplingConfig(max_new_tokens=5, temperature=0), progress=False)
    table = generation_lambda_table(answer, tiny_model.tokenizer, layers=psr.layers)
    n_tokens = answer.header_len + len(answer.ids)
    assert len(table) == len(psr.layers) * n_tokens * psr.rank
    one = table[(table["layer"] == psr.layers[-1]) & (table["component"] == 1)].sort_values("position")
    assert torch.allclose(torch.tensor(one["lambda"].tolist()), answer.lambdas[0][-1, :, 1])
    assert one["is_header"].sum() == answer.header_len
    assert one["token_id"].tolist()[answer.header_len:] == answer.ids
    with pytest.raises(IndexError, match="steerer_index 1"):
        generation_lambda_table(answer, tiny_model.tokenizer, steerer_index=1)


def test_pair_table_is_the_teacher_forced_read_out(tiny_model, tiny_pairs, psr):
    pair = tiny_pairs[0]
    table = pair_lambda_table(tiny_model, psr, pair, alpha=0.5)
    expected = lambdas(tiny_model, psr, pair, alpha=0.5)
    got = torch.tensor(table.sort_values(["layer", "position", "component"])["lambda"].tolist()).view(expected.shape)
    assert torch.allclose(got, expected)
    assert sorted(table["layer"].unique()) == list(psr.layers)


def test_unsteered_answer_and_shape_mismatch_are_refused(tiny_model):
    (answer,) = generate_answers(tiny_model, ["Hi"], config=SamplingConfig(max_new_tokens=2, temperature=0),
                                 progress=False)
    with pytest.raises(ValueError, match="without a steerer"):
        generation_lambda_table(answer, tiny_model.tokenizer)
    with pytest.raises(ValueError, match="does not match 2 layers x 3 tokens"):
        lambda_frame(torch.zeros(2, 4, 1), [0, 1], [5, 6, 7], 1, tiny_model.tokenizer)


def test_lambda_vs_delta_on_every_layer(tiny_model, tiny_pairs, psr):
    import math

    from workbench.steering.lambda_tables import lambda_vs_delta

    table = lambda_vs_delta(tiny_model, psr, tiny_pairs)
    n_response = sum(p.span_len - p.header_len for p in tiny_pairs)
    assert table["layer"].tolist() == list(psr.layers) and (table["n_tokens"] == n_response).all()
    finite = table["spearman"].dropna()
    assert len(finite) >= 1 and finite.between(-1, 1).all()  # NaN only where lambda is constant (dead ReLU)
    # the same correlation computed the long way: lambda read through the model, norms from pair_magnitudes
    from workbench.activations.deltas import pair_magnitudes

    norms = pair_magnitudes(tiny_model, tiny_pairs, psr.layers, kind="loc")
    norms = norms[~norms["is_header"]].sort_values(["sample", "layer", "position"])
    for i, layer in enumerate(psr.layers):
        lam = torch.cat([lambdas(tiny_model, psr, p)[i, p.header_len:].sum(-1) for p in tiny_pairs])
        expected = pd.Series(lam.tolist()).rank().corr(pd.Series(norms[norms["layer"] == layer]["norm"].tolist()).rank())
        got = table.set_index("layer").at[layer, "spearman"]
        assert (math.isnan(got) and lam.unique().numel() == 1) or got == pytest.approx(expected, abs=1e-4)
    dim = train_steerer("const-dim", tiny_model, 1.0, layers=1, pairs=tiny_pairs, progress=False)
    assert math.isnan(lambda_vs_delta(tiny_model, dim, tiny_pairs)["spearman"].iloc[0])
