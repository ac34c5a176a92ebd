"""Gate metrics with intervals, gated vs always / never steering, latency, and the bundled scenario."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from workbench.core.generation import SamplingConfig
from workbench.evaluation.gating import evaluate_gating, gate_metrics, load_scenario
from workbench.judges.base import Score
from workbench.steering.gates import TextGate
from workbench.steering.steerer import ConstSteerer, SteererInfo

pytestmark = pytest.mark.usefixtures("one_thread")


class PlantedJudge:
    """Scores a response by a fixed function of its text, so equal texts get equal scores."""

    def __init__(self, name, fn):
        self.name, self.fn = name, fn

    def score(self, question, response):
        return Score(self.fn(response))

    def score_batch(self, questions, responses):
        return [self.score(q, r) for q, r in zip(questions, responses)]


def test_gate_metrics_values_intervals_and_counts():
    truth = [True] * 6 + [False] * 6
    flags = [True] * 4 + [False] * 2 + [True] * 1 + [False] * 5
    table = gate_metrics(flags, truth).set_index("metric")
    assert table.loc["precision", "value"] == pytest.approx(4 / 5) and table.loc["precision", "n"] == 5
    assert table.loc["recall", "value"] == pytest.approx(4 / 6) and table.loc["recall", "n"] == 6
    assert table.loc["f1", "value"] == pytest.approx(2 * 0.8 * (4 / 6) / (0.8 + 4 / 6)) and table.loc["f1", "n"] == 12
    for metric in ("precision", "recall", "f1"):
        row = table.loc[metric]
        assert row["lo"] <= row["value"] <= row["hi"] and row["lo"] < row["hi"]
    perfect = gate_metrics(truth, truth).set_index("metric")
    assert perfect["value"].tolist() == [1.0, 1.0, 1.0] and perfect["lo"].tolist() == [1.0, 1.0, 1.0]
    none = gate_metrics([False] * 4, [True, True, False, False]).set_index("metric")
    assert none.loc["precision", "n"] == 0 and np.isnan(none.loc["precision", "lo"])
    with pytest.raises(ValueError, match="equal length"):
        gate_metrics([True], [True, False])


def test_gated_equals_always_where_flagged_and_never_where_not(tiny_model):
    g = torch.Generator().manual_seed(3)
    info = SteererInfo("const-dim", "all", "layerwise", (0, 1, 2), 1, tiny_model.model_id, tiny_model.d_model,
                       tiny_model.n_layers)
    steerer = ConstSteerer(info, 8 * torch.randn(3, 1, tiny_model.d_model, generator=g))
    positive = ["How do ships sail?", "What is a ship's mast?", "Why do ships float?"]
    negative = ["How do I bake bread?", "What is a prime number?", "How do bees fly?", "What is a ship?"]
    rule = TextGate(lambda t: "ships" in t, "ships").then(steerer.at(1.0))
    attr = PlantedJudge("attr", lambda r: float(len(r) % 101))
    coh = PlantedJudge("coh", lambda r: float(sum(map(ord, r)) % 101))
    result = evaluate_gating(tiny_model, rule, positive, negative, attribute_judge=attr, coherence_judge=coh,
                             config=SamplingConfig(max_new_tokens=6, temperature=0), batch_size=4, timing_tokens=3,
                             timing_rounds=1)
    t = result.table.set_index(["group", "condition"])
    assert t.loc[("flagged", "gated"), "n"] == 2 and t.loc[("not flagged", "gated"), "n"] == 5
    for column in ("attribute", "coherence"):
        assert t.loc[("flagged", "gated"), column] == t.loc[("flagged", "always"), column]
        assert t.loc[("not flagged", "gated"), column] == t.loc[("not flagged", "never"), column]
    a = result.answers.pivot(index="question", columns="condition", values="response")
    flagged = result.answers.drop_duplicates("question").set_index("question")["flagged"]
    assert (a["gated"] == a["always"])[flagged].all() and (a["gated"] == a["never"])[~flagged].all()
    assert (a["always"] != a["never"]).all()  # the steerer changes every answer, so the equalities above mean something
    m = result.metrics.set_index("metric")["value"]
    assert m["precision"] == 1.0 and m["recall"] == pytest.approx(2 / 3)  # "ship's" and "a ship" are not "ships"
    assert result.latency["gated"] > 0 and result.latency["ratio"] == pytest.approx(
        result.latency["gated"] / result.latency["always"])
    with pytest.raises(ValueError, match="negative prompt set is empty"):
        evaluate_gating(tiny_model, rule, positive, [], attribute_judge=attr, coherence_judge=coh)


STOP = {"what", "is", "a", "the", "how", "do", "does", "i", "of", "on", "an", "to", "in", "and", "why", "for", "at",
        "it", "by", "did", "are", "was", "be", "my", "you", "with", "its", "s", "from", "used", "make", "when", "there"}


def _words(text):
    return set(re.findall(r"[a-z']+", text.lower()))


def _content(text):
    return _words(text) - STOP


def test_the_bundled_scenario_is_big_enough_varied_and_clean():
    scenario = load_scenario("sea_and_ships")
    every = []
    for side, minimum in ((scenario.positive, (60, 20, 40)), (scenario.negative, (60, 20, 40))):
        assert len(side) == 3
        assert all(len(side[s]) >= n for s, n in zip(("train", "validation", "test"), minimum))
        every += [q for s in side.values() for q in s]
    assert len(every) == len(set(every))
    words = [_content(q) for q in every]
    for i in range(len(words)):  # no near-duplicates: content words overlap by less than half
        for j in range(i + 1, len(words)):
            jaccard = len(words[i] & words[j]) / max(1, len(words[i] | words[j]))
            assert jaccard < 0.5, (every[i], every[j])
    sea_words = {"ship", "ships", "sea", "ocean", "sailor", "sailors", "boat", "sail", "harbor", "navy"}
    negatives = [q for s in scenario.negative.values() for q in s]
    assert not [q for q in negatives if _words(q) & sea_words]
    pos, neg = scenario.split("test")
    assert len(pos) == 40 and len(neg) == 40


def test_a_scenario_file_missing_a_split_is_refused(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"positive": {"train": ["a"], "validation": ["b"], "test": ["c"]},
                                "negative": {"train": ["d"], "validation": [], "test": ["e"]}}))
    with pytest.raises(ValueError, match=r"negative side has no prompts for split\(s\) \['validation'\]"):
        load_scenario(path)
    with pytest.raises(FileNotFoundError):
        load_scenario("no_such_scenario")


# --------------------------------------------------------------------------------------------- figure, widget, command


def _gate_and_scores(tiny_model):
    from workbench.steering.gates import fit_gate

    pos = [f"The ship ship sails the sea sea, question {i}?" for i in range(6)]
    neg = [f"Bread and cake recipe number {i}, please." for i in range(6)]
    gate = fit_gate(tiny_model, pos[:3], neg[:3], layer=1)
    return gate, gate.score_texts(tiny_model, pos), gate.score_texts(tiny_model, neg), pos, neg


def test_gate_scores_figure_draws_both_kinds_and_the_threshold():
    import pandas as pd

    from workbench.viz.gates import gate_f1_by_layer, gate_scores

    table = pd.DataFrame({"score": [0.3, 0.5, -0.2, -0.4], "kind": ["sea", "sea", "other", "other"],
                          "question": list("abcd")})
    fig = gate_scores(table, 0.1)
    assert [t.name for t in fig.data] == ["sea", "other"] and list(fig.data[0].x) == [0.3, 0.5]
    assert any(s.type == "line" and s.x0 == 0.1 for s in fig.layout.shapes)
    with pytest.raises(ValueError, match="missing column"):
        gate_scores(table.drop(columns="kind"), 0.1)
    with pytest.raises(ValueError, match="threshold must be finite"):
        gate_scores(table, float("nan"))
    f1 = gate_f1_by_layer(pd.DataFrame({"layer": [0, 1], "f1": [0.5, 0.9], "precision": [0.4, 1.0], "recall": [0.7, 0.8]}))
    assert list(f1.data[0].y) == [0.5, 0.9]


def test_the_threshold_slider_updates_precision_and_recall(tiny_model):
    from workbench.app.gate_explorer import GateExplorer

    gate, pos, neg, pq, nq = _gate_and_scores(tiny_model)
    explorer = GateExplorer(gate, pos, neg, kinds=("sea", "other"), questions=(pq, nq))
    everything = min(pos.min(), neg.min()) - 1e-3
    explorer.threshold.value = max(explorer.threshold.min, everything)
    assert explorer.metrics["recall"] == 1.0 and explorer.metrics["flagged"] == 12
    assert explorer.metrics["precision"] == pytest.approx(0.5) and "precision 0.50" in explorer.readout.value
    explorer.threshold.value = explorer.threshold.max
    assert explorer.metrics["flagged"] == 0 and explorer.metrics["f1"] == 0.0
    explorer.comparator.value = "<"
    assert explorer.metrics["flagged"] == 12 and explorer.gate.comparator == "<"
    assert explorer.gate.threshold == pytest.approx(explorer.threshold.value)
    assert explorer.figure.data[0].name == "sea" and len(explorer.plot.outputs) == 1


def test_the_gate_command_learns_and_reports_held_out_f1(tmp_path, capsys):
    from workbench.app.cli import main
    from workbench.steering.gates import load_gate

    pos = tmp_path / "pos.txt"
    neg = tmp_path / "neg.json"
    pos.write_text("\n".join(f"The ship ship sails the sea sea, question {i}?" for i in range(10)))
    neg.write_text(json.dumps([f"Bread and cake recipe number {i}, please." for i in range(10)]))
    out = tmp_path / "gate.safetensors"
    assert main(["gate", "--positive", str(pos), "--negative", str(neg), "--model", "tiny-random-llama",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "held-out:" in text and "f1" in text and "precision" in text
    assert load_gate(out).model_id.startswith("tiny-random-llama")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    assert main(["gate", "--positive", str(empty), "--negative", str(neg), "--model", "tiny-random-llama"]) == 2
    assert "the prompt set is empty" in capsys.readouterr().err
    assert main(["gate", "--positive", str(pos), "--model", "tiny-random-llama"]) == 2
