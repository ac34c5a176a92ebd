import pytest
import torch

from workbench.evaluation.faithfulness import faithfulness, paraphrase_pairs
from workbench.steering import train_steerer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pairs(tiny_model):
    from tiny_triplets import make_tiny_pairs

    return make_tiny_pairs(tiny_model)


def test_identity_cases(tiny_model, pairs):
    """The prompt itself as the 'paraphrase' gives 0; a steerer at alpha 0 gives exactly 1."""
    dim = train_steerer("const-dim", tiny_model, 1.0, layers=None, pairs=pairs, progress=False)
    table = faithfulness(tiny_model, pairs, {"alpha 0": (dim, 0.0)}, paraphrase=pairs)
    assert set(table["method"]) == {"no steering", "alpha 0", "paraphrase"}
    assert table[table.method == "paraphrase"]["rel_rmse"].abs().max() < 1e-5
    assert (table[table.method == "alpha 0"]["rel_rmse"] - 1.0).abs().max() < 1e-5


def test_a_fitted_steerer_beats_no_steering_at_its_layer(tiny_model, pairs):
    """Const-DiM at layer 1 adds the mean delta there: on its own training pairs it must be closer to
    the prompt than not steering at layer 1 (rel RMSE < 1), and it leaves layer 0 untouched (= 1)."""
    dim = train_steerer("const-dim", tiny_model, 1.0, layers=1, pairs=pairs, progress=False)
    table = faithfulness(tiny_model, pairs, {"S-DiM": (dim, 1.0)}).set_index(["method", "layer"])["rel_rmse"]
    assert table[("S-DiM", 0)] == pytest.approx(1.0, abs=1e-6)
    assert table[("S-DiM", 1)] < 1.0


def test_a_real_paraphrase_differs_from_the_prompt(tiny_model, pairs):
    items = [(None, None, list(p.span_ids[p.header_len:])) for p in pairs]
    questions = ["What is the capital of France?", "How do I boil an egg?", "Why is the sky blue?"]
    para = paraphrase_pairs(tiny_model.tokenizer, [(q, None, ids) for q, (_, _, ids) in zip(questions, items)],
                            "Pretend you are a pirate sailor.")
    table = faithfulness(tiny_model, pairs, paraphrase=para)
    values = table[table.method == "paraphrase"]["rel_rmse"]
    assert (values > 0).all()


def test_bad_inputs(tiny_model, pairs):
    with pytest.raises(ValueError, match="no held-out triplets"):
        faithfulness(tiny_model, [])
    with pytest.raises(ValueError, match="same responses"):
        faithfulness(tiny_model, pairs, paraphrase=pairs[:2])


def test_one_strength_per_pair_equals_measuring_each_pair_at_its_own(tiny_model, pairs):
    """Per-pair alphas (e.g. soft labels) go into the span weights; batching must not mix them."""
    from workbench.evaluation.faithfulness import steered_span_acts

    dim = train_steerer("const-dim", tiny_model, 1.0, layers=1, pairs=pairs, progress=False)
    alphas = [0.5, 2.0, 1.0]
    together = steered_span_acts(tiny_model, pairs, dim, alphas, [1, 2])
    apart = torch.cat([steered_span_acts(tiny_model, [p], dim, a, [1, 2]) for p, a in zip(pairs, alphas)], dim=1)
    assert torch.allclose(together, apart, atol=1e-5)
    uniform = steered_span_acts(tiny_model, pairs, dim, 1.0, [1, 2])
    assert not torch.allclose(together, uniform, atol=1e-3)
    with pytest.raises(ValueError, match="2 strengths for 3 pairs"):
        faithfulness(tiny_model, pairs, {"S-DiM": (dim, [1.0, 1.0])})


def test_weight_space_adapters_are_measured_on_the_whole_sequence(tiny_model, pairs):
    """A fine-tune's activations on x y' against the prompt's: alpha 0 is no steering exactly,
    per-pair strengths are run group by group, and a fit moves towards the prompt-steered run."""
    from workbench.evaluation.faithfulness import steered_span_acts
    from workbench.steering.weights_train import WeightTrainConfig, train_weights

    ft = train_weights(tiny_model, pairs, "finetune", progress=False,
                       config=WeightTrainConfig(steps=3, lr=1e-3, batch_size=3, eval_every=3, patience=0, val_fraction=0.0))
    faith = faithfulness(tiny_model, pairs, {"FT0": (ft, 0.0), "FT": (ft, 1.0)}).set_index(["method", "layer"])
    assert all(faith.loc[("FT0", l), "rel_rmse"] == pytest.approx(1.0, abs=1e-6) for l in range(3))
    assert any(abs(faith.loc[("FT", l), "rel_rmse"] - 1.0) > 1e-4 for l in range(3))
    alphas = [0.5, 1.0, 0.5]
    together = steered_span_acts(tiny_model, pairs, ft, alphas, [1, 2])
    apart = torch.cat([steered_span_acts(tiny_model, [p], ft, a, [1, 2]) for p, a in zip(pairs, alphas)], dim=1)
    assert torch.allclose(together, apart, atol=1e-5)
