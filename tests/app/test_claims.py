"""The claims report on a tiny model: every finding's rows, verdicts, files, and a rerun that computes nothing."""

import json
import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from workbench.app import claims
from workbench.app.claims import CLAIM_COLUMNS, ClaimsConfig, default_experiment, instruction_rows, run_claims
from workbench.data.attributes import make_attribute
from workbench.evaluation.comparison import EvalConfig
from workbench.judges.offline import FunctionJudge

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTIONS = [f"Tell me about thing number {i}, please?" for i in range(40)]
ALWAYS = FunctionJudge(lambda r: 100.0, name="always")
LENGTH = FunctionJudge(lambda r: min(100.0, 3.0 * len(r)), name="length")


@pytest.fixture
def talky():
    return make_attribute("talky", "Says anything at all.", ["You talk a lot.", "Talk, talk, talk."], QUESTIONS,
                          lambda r: 60.0 + min(40.0, len(r)), paraphrases=["Be very talkative."])


def tiny_config():
    experiment = default_experiment(n_train=6, n_heldout=3, max_new_tokens=6, steps=10, joint_steps=2, batch_size=8,
                                    evaluation=EvalConfig(n_validation=2, n_test=4, max_new_tokens=6, max_steps=3,
                                                          targets=(50.0, "prompt")))
    return ClaimsConfig(experiment=experiment, extra_methods=("A-PSR r4", "A-PSR (joint)"), instructions=(), n_boot=50)


def test_claims_on_a_tiny_model_then_a_rerun_computes_nothing(tiny_model, talky, tmp_path, monkeypatch):
    judges = {"coherence_judge": LENGTH, "triplet_coherence": ALWAYS}
    lines = []
    result = run_claims(tiny_model, tiny_config(), tmp_path, attributes=[talky], judges=judges, progress=False,
                        log=lines.append)
    table = result.table
    assert list(table.columns) == CLAIM_COLUMNS
    assert sorted(set(table["finding"])) == [1, 2, 3, 4]
    assert set(table["attribute"]) == {"talky"}
    assert set(table["verdict"]) <= {"holds", "does not hold", "not separable at this n", "not measured"}
    f2 = table[table["finding"] == 2]
    assert len(f2) == 4 and (f2["n"] == 4).all()  # two contrasts x two targets, paired over 4 test questions
    assert {"S-PSR > Const-DiM at TA@C50 (one layer)", "A-PSR > A-Const-DiM at TA@Cp (all layers)"} <= set(f2["claim"])
    f4 = table[table["finding"] == 4]
    assert len(f4) == 3 and all(f4["claim"].str.contains("paraphrase")) and (f4["n"] == 3).all()
    finite = table.dropna(subset=["value"])
    assert ((finite["lo"] <= finite["value"] + 1e-9) & (finite["value"] <= finite["hi"] + 1e-9)).all()
    f1 = table[table["finding"] == 1].iloc[0]
    assert f1["value"] > 1 and "token kind" in f1["note"]
    # finding 1: the norm, the coefficient along the mean direction, the share along it, each measured
    norm, coef, share = (table[table["finding"] == 1].iloc[i] for i in range(3))
    assert len(table[table["finding"] == 1]) == 3
    assert "|c_t| along the mean direction" in coef["claim"] and "Assumption 3.1" in share["claim"]
    assert (coef["threshold"], share["threshold"]) == ("> 10", "> 0.5")  # one threshold for both spreads
    for row in (norm, coef, share):
        assert row["lo"] <= row["value"] <= row["hi"] and row["verdict"] != "not measured"
    assert (coef["n"], share["n"]) == (3, 3) and coef["unit"] == "held-out responses"
    assert 0 < share["value"] <= 1 and "80% needs" in share["note"]
    assert "A-PSR r4 minus A-PSR relRMSE" in share["note"]  # what rank 4 buys, beside how many directions there are
    assert "largest c_t at layer 1" in coef["note"] and "S-PSR (layer 1) Spearman" in coef["note"]
    assert coef["figure"] == "figures/f1-coef-talky.html" and share["figure"] == "figures/f1-share-talky.html"
    assert (tmp_path / "runs" / "talky" / "claims" / "lambda-reading.csv").is_file()
    for name in ("claims.csv", "claims.md"):
        assert (tmp_path / name).is_file()
    for figure in set(table["figure"].dropna()) - {""}:
        assert (tmp_path / figure).is_file()
    assert (tmp_path / "figures" / "plotly.min.js").is_file()
    markdown = (tmp_path / "claims.md").read_text()
    assert "## 2. PSR vs constant steering" in markdown and r"\|\|Delta_PS\|\|" in markdown  # pipes escaped
    assert any("done in" in line for line in lines) and "claims:" in lines[-1]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "claims.csv"), table, check_dtype=False, rtol=1e-5)

    # a rerun reads the stored rows back: no model load, no experiment, nothing measured
    def refuse(*args, **kwargs):
        raise AssertionError("recomputed something that was stored")

    monkeypatch.setattr(claims, "run_experiment", refuse)
    monkeypatch.setattr(claims, "pair_errors", refuse)
    monkeypatch.setattr(claims, "load_model", refuse)
    lines.clear()
    again = run_claims(tiny_model.model_id, tiny_config(), tmp_path, attributes=[talky], judges=judges, progress=False,
                       log=lines.append)
    pd.testing.assert_frame_equal(again.table, table)
    assert "stored rows read back" in lines[0] and "1 read back" in lines[-1]
    # another setting is another run: its rows are not served from the stored ones
    with pytest.raises(AssertionError, match="recomputed"):
        run_claims(tiny_model, replace(tiny_config(), n_boot=60), tmp_path, attributes=[talky], judges=judges,
                   progress=False, log=lines.append)
    # so is a run made by another version of the sampler
    monkeypatch.setattr(claims, "GENERATION_VERSION", claims.GENERATION_VERSION + 1)
    with pytest.raises(AssertionError, match="recomputed"):
        run_claims(tiny_model.model_id, tiny_config(), tmp_path, attributes=[talky], judges=judges, progress=False,
                   log=lines.append)


def test_finding_1_rows_say_why_when_the_held_out_data_are_too_few(tmp_path):
    attribute = SimpleNamespace(name="talky")
    rows = claims.assumption_rows(None, attribute, tmp_path, ClaimsConfig(n_boot=20), why="1 held-out response(s)")
    assert [r["verdict"] for r in rows] == ["not measured", "not measured"]
    assert all("1 held-out response(s)" in r["note"] for r in rows) and all(math.isnan(r["value"]) for r in rows)
    with pytest.raises(ValueError, match="share_threshold must be a number in \\(0, 1\\), got 1.5"):
        ClaimsConfig(share_threshold=1.5)


def test_instruction_rows_are_paired_over_instruction_and_question(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for ins in ("a", "b"):
        for q in range(20):
            prompt = float(rng.random() < 0.7)
            rows += [{"instruction": ins, "question": f"q{q}", "method": "prompt", "strict": prompt},
                     {"instruction": ins, "question": f"q{q}", "method": "PSR", "strict": 0.0},
                     {"instruction": ins, "question": f"q{q}", "method": "PSR + prompt", "strict": prompt},
                     {"instruction": ins, "question": f"q{q}", "method": "rank-r PSR", "strict": 0.0}]
    responses = pd.DataFrame(rows)
    summary = responses.groupby(["instruction", "method"])["strict"].mean().rename("strict_accuracy").reset_index()
    run = SimpleNamespace(responses=responses, summary=summary)
    out = pd.DataFrame(instruction_rows(run, tmp_path / "figures", ClaimsConfig(n_boot=200), seed=0)).set_index("claim")
    assert out.loc["rank-1 PSR alone falls short of the prompt", "verdict"] == "holds"  # PSR never, prompt 70 %
    assert out.loc["rank-1 PSR alone falls short of the prompt", "n"] == 40
    assert out.loc["PSR + prompt beats the prompt", "verdict"] == "does not hold"  # identical on every question
    assert out.loc["rank-4 PSR beats rank-1 PSR", "verdict"] == "does not hold"
    assert (tmp_path / "figures" / "f5-instructions.html").is_file()


def test_claims_config_checks_and_sizes():
    with pytest.raises(ValueError, match="unknown attribute"):
        ClaimsConfig(attributes=("nobody",))
    with pytest.raises(ValueError, match="A-Const-DiM"):
        ClaimsConfig(experiment=default_experiment(methods=("Const-DiM", "S-PSR", "A-PSR")))
    with pytest.raises(ValueError, match="size"):
        ClaimsConfig.sized("huge")
    assert ClaimsConfig.sized("full").experiment.evaluation.n_test is None
    assert ClaimsConfig.sized("tiny").experiment.evaluation.n_test < ClaimsConfig().experiment.evaluation.n_test
    assert len(ClaimsConfig().attribute_names) >= 5


def test_findings_1_and_4_are_kept_when_the_comparison_is_cut_short(tiny_model, talky, tmp_path, monkeypatch):
    judges = {"coherence_judge": LENGTH, "triplet_coherence": ALWAYS}

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if the run were stopped during the comparison

    monkeypatch.setattr(claims, "run_experiment", killed)
    with pytest.raises(KeyboardInterrupt):
        run_claims(tiny_model, tiny_config(), tmp_path, attributes=[talky], judges=judges, progress=False,
                   log=lambda line: None)
    lines = []
    table = run_claims(tiny_model, tiny_config(), tmp_path, attributes=[talky], judges=judges, progress=False,
                       stored_only=True, log=lines.append).table
    assert sorted(set(table["finding"])) == [1, 4] and "findings 1 and 4 only" in lines[0]
    assert (tmp_path / "claims.md").is_file()
    empty = run_claims(tiny_model, tiny_config(), tmp_path / "fresh", attributes=[talky], judges=judges,
                       progress=False, stored_only=True, log=lines.append).table
    assert empty.empty and "not measured yet" in lines[-2]
