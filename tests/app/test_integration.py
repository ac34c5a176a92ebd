"""End to end on the embedded model: triplets, Delta_PS, the demo report (offline)."""

import re

import pandas as pd
import pytest
import torch

from workbench.activations.deltas import extract_deltas
from workbench.app.demo import DemoConfig, run_demo
from workbench.app.experiment import ExperimentConfig
from workbench.data.triplets import TripletConfig, build_triplets
from workbench.evaluation.comparison import EvalConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pirate_run(embedded_model, tmp_path_factory):
    """The demo end to end at a small size: 10 training and 6 held-out questions, three methods, a
    short strength search on 4 validation and 4 test questions."""
    out = tmp_path_factory.mktemp("demo")
    experiment = ExperimentConfig(attribute="pirate", n_train=10, n_heldout=6, max_new_tokens=32, batch_size=10,
                                  steps=60, methods=("Const-DiM", "S-PSR", "A-PSR"),
                                  evaluation=EvalConfig(n_validation=4, n_test=4, max_new_tokens=24, max_steps=4))
    summary = run_demo(out, DemoConfig(experiment=experiment, heatmap_samples=2), model=embedded_model, progress=False)
    return out, summary


def test_prompting_visibly_steers_the_embedded_model(pirate_run):
    _, summary = pirate_run
    assert summary["kept"] >= 2, summary  # the pirate instruction works on SmolLM2-135M


def test_demo_writes_csv_and_an_offline_report(pirate_run):
    out, summary = pirate_run
    table = pd.read_csv(out / "delta_tokens.csv", keep_default_na=False)
    assert list(table.columns) == ["sample", "layer", "position", "token", "norm", "rel_norm"]
    assert sorted(table["layer"].unique()) == list(range(30))
    assert len(table) == summary["tokens"] * 30
    assert (table["norm"] >= 0).all() and (table["rel_norm"] >= 0).all()
    page = (out / "index.html").read_text()
    # nothing is fetched: no tag loads a remote resource (plotly.js is inline, once; the URLs inside
    # its source code are strings, not requests)
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", page)
    assert tags and not [t for t in tags if re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", t)]
    assert page.count("Plotly.newPlot") == 3 and page.count("plotly.js v") == 1
    assert page.count('class="tok') > 100


def test_demo_writes_the_ta_at_c_table_and_faithfulness_curves(pirate_run):
    out, summary = pirate_run
    results = pd.read_csv(out / "results.csv")
    assert set(results["method"]) == {"no steering", "prompt", "Const-DiM", "S-PSR", "A-PSR", "PSR + prompt"}
    assert set(results["target"]) == {"C80", "Cp"} and (results["n"] == 4).all()
    assert (results["attribute_lo"] <= results["attribute"]).all() and (results["attribute"] <= results["attribute_hi"]).all()
    prompt = results[results["method"] == "prompt"].iloc[0]
    plain = results[results["method"] == "no steering"].iloc[0]
    assert prompt["attribute"] > plain["attribute"]  # the instruction steers the 135M model
    faith = pd.read_csv(out / "faithfulness.csv").set_index(["method", "layer"])["rel_rmse"]
    assert faith[("S-PSR", 14)] == pytest.approx(1.0, abs=1e-6)  # before its layer (15): untouched
    assert faith[("S-PSR", 15)] < 1.0 and faith[("A-PSR", 15)] < 1.0  # both fit the prompt there
    assert 0 < faith[("paraphrase", 29)] < 1.5
    assert set(summary["results"]) == {"TA@C80", "TA@Cp"}


def test_prompting_rewrites_a_few_tokens_hard(pirate_run):
    """Finding 1 of the paper, as far as SmolLM2-135M shows it: the per-token magnitudes spread widely
    (on the demo run: 95th/5th percentile ratio ~5 at layer 15, max/min ~14), and a constant
    vector's would not spread at all."""
    out, summary = pirate_run
    table = pd.read_csv(out / "delta_tokens.csv", keep_default_na=False)
    middle = table[(table["layer"] == 15) & (table["position"] >= 3)]["norm"]
    assert middle.max() / middle.min() > 5
    assert middle.quantile(0.9) / middle.quantile(0.1) > 1.5
    assert summary["median_p90_over_p10"] > 1.5


def test_local_deltas_reproduce_the_prompted_run_on_the_embedded_model(embedded_model, pirate_run, tmp_path):
    from workbench.data.triplets import TripletSet

    out, _ = pirate_run
    pair = TripletSet.load(out / "triplets").pairs(embedded_model.tokenizer)[0]
    store = extract_deltas(embedded_model, [pair], tmp_path / "s", dtype="float32", progress=False)
    span = slice(pair.base_start, len(pair.base_ids))
    seen = {}

    def add(layer):
        loc = store.get("loc", layer)

        def hook(resid, hook=None):
            resid = resid.clone()
            resid[0, span] += loc
            seen[layer] = resid[0, span].clone()
            return resid
        return hook

    with torch.no_grad(), embedded_model.bridge.hooks(fwd_hooks=[(embedded_model.resid_hook(l), add(l)) for l in range(30)]):
        embedded_model.bridge(torch.tensor([pair.base_ids]), return_type=None)
    for layer in (0, 10, 29):
        target = store.get("steered", layer)
        assert (seen[layer] - target).norm() / target.norm() < 1e-3


def test_user_placement_also_steers(embedded_model, tmp_path):
    triplets = build_triplets(embedded_model, "pirate", tmp_path / "t",
                              TripletConfig(n_questions=4, max_new_tokens=24, placement="user", batch_size=4),
                              progress=False)
    assert len(triplets.table) == 4
    tok = embedded_model.tokenizer
    for row in triplets.table.itertuples():
        prompt = tok.decode(list(row.steered_prompt_ids))
        assert f"<|im_start|>user\n{row.instruction}\n\n{row.question}" in prompt
        assert row.instruction not in tok.decode(list(row.base_prompt_ids))
