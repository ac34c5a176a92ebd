import subprocess
import sys

import pytest

from workbench.app.cli import build_parser, main


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "workbench", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("demo", "attributes", "triplets", "extract"):
        assert command in out


def test_attributes_lists_bundled_ones(capsys):
    assert main(["attributes"]) == 0
    out = capsys.readouterr().out
    assert "pirate:" in out


def test_unknown_attribute_is_a_clear_error(capsys):
    assert main(["demo", "--attribute", "no-such-thing", "--out", "/tmp/never-written"]) == 2
    err = capsys.readouterr().err
    assert "unknown attribute 'no-such-thing'" in err


def test_bad_layer_list_is_refused():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["extract", "--triplets", "t", "--out", "o", "--layers", "1,x"])


def test_evaluate_options_reach_the_experiment(monkeypatch, tmp_path, capsys):
    """`workbench evaluate` builds the config and judges it says it does, without running a model."""
    import pandas as pd

    seen = {}

    class Result:
        faithfulness = pd.DataFrame({"method": ["S-PSR"], "layer": [15], "rel_rmse": [0.8]})

        class comparison:
            @staticmethod
            def table():
                return pd.DataFrame({"method": ["S-PSR"], "attribute": [42.0]})

    def fake_run(model, config, out, **judges):
        seen.update(config=config, out=out, judges=judges)
        return Result()

    monkeypatch.setattr("workbench.app.experiment.run_experiment", fake_run)
    monkeypatch.setattr("workbench.core.models.load_model", lambda name: name)
    assert main(["evaluate", "--attribute", "cat", "--methods", "Const-DiM,S-PSR", "--layer", "12",
                 "--out", str(tmp_path)]) == 0
    config = seen["config"]
    assert config.attribute == "cat" and config.methods == ("Const-DiM", "S-PSR") and config.plus_prompt is None
    assert config.layer == 12 and seen["judges"] == {} and "42" in capsys.readouterr().out

    monkeypatch.setenv("WORKBENCH_JUDGE_API_KEY", "sk-from-env")
    assert main(["evaluate", "--judge", "llm", "--judge-base-url", "http://127.0.0.1:9/v1", "--judge-model", "j",
                 "--judge-style", "rating", "--out", str(tmp_path)]) == 0
    attribute_judge, coherence_judge = seen["judges"]["attribute_judge"], seen["judges"]["coherence_judge"]
    assert type(attribute_judge).__name__ == "RatingJudge" and coherence_judge.config.api_key == "sk-from-env"
    assert seen["config"].plus_prompt == "A-PSR"

    monkeypatch.delenv("WORKBENCH_JUDGE_API_KEY")
    for name in ("WORKBENCH_JUDGE_BASE_URL", "WORKBENCH_JUDGE_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert main(["evaluate", "--judge", "llm", "--out", str(tmp_path)]) == 2
    assert "--judge llm needs an endpoint" in capsys.readouterr().err


def test_claims_options_reach_the_report(monkeypatch, tmp_path, capsys):
    """`workbench claims` builds the sized config it says it does and prints the table, without a model."""
    import pandas as pd

    from workbench.app.claims import CLAIM_COLUMNS, ClaimsResult

    seen = {}

    def fake_run(model, config, out, **kwargs):
        seen.update(model=model, config=config, out=out, **kwargs)
        row = dict.fromkeys(CLAIM_COLUMNS, "")
        row.update(finding=2, attribute="cat", claim="S-PSR > Const-DiM", value=1.5, lo=0.5, hi=2.5, n=40,
                   verdict="holds")
        return ClaimsResult(pd.DataFrame([row]), tmp_path, {})

    monkeypatch.setattr("workbench.app.claims.run_claims", fake_run)
    assert main(["claims", "--attributes", "cat,pirate", "--size", "tiny", "--no-instructions", "--seed", "3",
                 "--out", str(tmp_path)]) == 0
    config = seen["config"]
    assert config.attributes == ("cat", "pirate") and config.instructions == () and config.experiment.seed == 3
    assert config.experiment.evaluation.n_test == 8 and seen["out"] == str(tmp_path) and not seen["stored_only"]
    out = capsys.readouterr().out
    assert "| cat | S-PSR > Const-DiM | 1.5 | [0.5, 2.5] | 40 " in out and "**holds**" in out
    assert main(["claims", "--attributes", "nobody", "--out", str(tmp_path)]) == 2
    assert "unknown attribute" in capsys.readouterr().err


def test_demo_efficiency_flag_reaches_the_demo(monkeypatch, tmp_path, capsys):
    import workbench.app.demo as demo

    seen = []
    monkeypatch.setattr(demo, "run_demo", lambda out, config: seen.append(config) or {"model": "m"})
    assert main(["demo", "--out", str(tmp_path), "--efficiency"]) == 0
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert [c.efficiency for c in seen] == [True, False]
