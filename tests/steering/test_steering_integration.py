"""Steerers on the embedded model: a PSR-MSE steerer trained on a few hand-written pirate triplets
moves held-out activations towards the prompt-steered run at its layer."""

import pytest
import torch

from workbench.activations.deltas import extract_deltas
from workbench.core.chat import align, encode_response
from workbench.data.attributes import load_attribute
from workbench.steering import Steerer, TrainConfig, span_mse, train_steerer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]

LAYER = 15
RESPONSES = [
    "Arr, matey! The moon be made o' rock and dust, like a barren island in the night sky.",
    "Ahoy! Boil yer water, drop in the tea leaves, wait a spell, and drink it like a true sailor, aye.",
    "Arr, rain comes when the clouds grow heavy with water, matey, and then they spill it on our decks!",
    "Aye, cats purr when they be content, like a pirate countin' his treasure, arr.",
    "Arr, a black hole be a place in space where nothin' escapes, not even light, matey. Beware!",
    "Ahoy! Name yer dog Captain, or Barnacle, or Salty, a fine name for a loyal first mate, arr.",
    "Arr, put the egg in boilin' water for nine minutes, matey, then cool it in the sea.",
    "Aye, an earthquake be the ground shakin' like a ship in a storm, matey. Hold fast!",
    "Arr, spend yer Sunday sailin' the seas, huntin' for treasure, and singin' shanties with yer crew!",
    "Ahoy, matey! Mix flour, water, yeast and salt, let it rise, and bake it hot, like ship's biscuit, arr.",
    "Arr, the Pacific be the largest ocean, matey, wide enough to swallow a hundred fleets!",
    "Aye, join a crew, matey! Say ahoy to strangers and share yer grog, and ye'll have friends, arr.",
]




@pytest.fixture(scope="module")
def pirate_pairs(embedded_model):
    attribute = load_attribute("pirate")
    tok = embedded_model.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    questions = attribute.questions("train")[: len(RESPONSES)]
    return [align(tok, q, attribute.instructions[1], encode_response(tok, r) + [end])
            for q, r in zip(questions, RESPONSES)]


def test_psr_mse_moves_held_out_activations_towards_the_prompt(embedded_model, pirate_pairs, tmp_path):
    train, held_out = pirate_pairs[:8], pirate_pairs[8:]
    store = extract_deltas(embedded_model, train, tmp_path / "deltas", layers=[LAYER], local=False,
                           dtype="float32", progress=False)
    steerer = train_steerer("psr-mse", embedded_model, 1.0, layers=LAYER, store=store, attribute="pirate",
                            config=TrainConfig(steps=300, val_fraction=0.25), progress=False)
    assert steerer.name == "S-PSR" and steerer.layers == (LAYER,)
    psr = float(span_mse(embedded_model, steerer, held_out, 1.0)[0])
    dim = train_steerer("const-dim", embedded_model, 1.0, layers=LAYER, store=store, progress=False)
    const = float(span_mse(embedded_model, dim, held_out, 1.0)[0])
    print(f"held-out relative MSE at layer {LAYER}: no steering 1.000, Const-DiM {const:.3f}, PSR-MSE {psr:.3f}")
    assert psr < 0.95  # 1.0 = not steering at all
    assert psr < const
    # the per-token strengths vary: PSR does not act like a constant vector
    lam = steerer.lambdas(embedded_model, held_out[0])[0, :, 0]
    assert lam.max() > 2 * lam.median()
    steerer.save(tmp_path / "pirate.safetensors")
    again = Steerer.load(tmp_path / "pirate.safetensors", embedded_model)
    assert torch.equal(again.z, steerer.z)
