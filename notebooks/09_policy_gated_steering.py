# %% [markdown]
# # 9. Policy-gated steering
#
# In deployment a steerer is rarely switched on for everything: a policy looks at the conversation
# and steers only when it says so. Here the policy is a **gate** read from the model's own
# activations, as conditional activation steering (CAST) does: a *condition direction* learned from
# two sets of prompts (questions about the sea and ships, which must get the pirate steerer, and
# questions about anything else, which must not), read at one layer from the prompt's mean
# activation, and compared with a threshold.
#
# Unlike CAST, which decides from the first row and steers the whole batch, every row of a batch
# gets its own decision, before the first generated token, with the KV cache: a refused row writes
# exactly the tokens of the unsteered model, an accepted row exactly those of the ungated steerer.

# %%
from workbench import load_model
from workbench.viz.notebook import use_notebook_renderer
from workbench.evaluation.gating import load_scenario

use_notebook_renderer()  # figures stored with a description for viewers without plotly

model = load_model()
scenario = load_scenario("sea_and_ships")
for split in ("train", "validation", "test"):
    positive, negative = scenario.split(split)
    print(f"{split:10s} sea and ships {len(positive):3d} | other {len(negative):3d}")
print("e.g.", scenario.positive["test"][0], "|", scenario.negative["test"][0])

# %% [markdown]
# ## Learning the condition direction
#
# At every layer, the direction is the difference between the mean prompt activations of the two
# training sets (`method="pca"` takes the first principal component instead, as CAST does); a
# prompt's score is the cosine similarity of its mean activation, centred between the two classes,
# with that direction. The search picks layer x threshold x comparator by F1 on the validation
# prompts.

# %%
from workbench.steering.gates import search_gate
from workbench.viz.gates import gate_f1_by_layer

search = search_gate(model, *scenario.split("train"), *scenario.split("validation"), name="sea and ships")
gate = search.gate
print(f"chosen: layer {gate.layer}, score {gate.comparator} {gate.threshold:.3f}, "
      f"validation F1 {gate.meta['validation']['f1']:.3f}")
print(search.table.loc[[0, 5, 10, 15, 20, 29], ["layer", "precision", "recall", "f1"]].round(3).to_string(index=False))
gate_f1_by_layer(search.table)

# %% [markdown]
# Averaged over the whole prompt (the chat template's default system prompt included), the topic
# separates best in the early-middle layers and barely from layer 11 on. Reading only the last
# prompt token (`pools=("last",)`) separates it at the late layers instead (the README compares both).
#
# ## Held-out prompts: scores against the threshold

# %%
import pandas as pd

from workbench.evaluation.gating import gate_metrics
from workbench.viz.gates import gate_scores

test_pos, test_neg = scenario.split("test")
pos_scores = gate.score_texts(model, test_pos)
neg_scores = gate.score_texts(model, test_neg)
scores = pd.DataFrame({"score": list(pos_scores) + list(neg_scores),
                       "kind": ["sea and ships"] * len(test_pos) + ["other"] * len(test_neg),
                       "question": list(test_pos) + list(test_neg)})
metrics = gate_metrics(gate.flags(scores["score"]), scores["kind"] == "sea and ships")
print(metrics.round(3).to_string(index=False))
gate_scores(scores, gate.threshold, gate.comparator, title="Held-out gate scores")

# %% [markdown]
# ## The threshold slider
#
# Move the threshold and watch precision and recall trade against each other on the held-out
# prompts (hover a point for its question). The explorer's `gate` is the gate at the slider's
# threshold.

# %%
from workbench.app.gate_explorer import GateExplorer

explorer = GateExplorer(gate, pos_scores, neg_scores, kinds=("sea and ships", "other"),
                        questions=(test_pos, test_neg))
explorer

# %%
for threshold in (gate.threshold - 0.2, gate.threshold, gate.threshold + 0.2):
    explorer.threshold.value = round(threshold, 4)
    m = explorer.metrics
    print(f"threshold {m['threshold']:+.3f}: precision {m['precision']:.2f} recall {m['recall']:.2f} "
          f"F1 {m['f1']:.2f} ({m['flagged']} of {m['n']} flagged)")
explorer.threshold.value = gate.threshold

# %% [markdown]
# ## The steerer it gates
#
# An all-layer PSR trained on pirate triplets, at a small size so that this notebook builds it in a
# couple of minutes when it is not there yet (its own run directory; a rerun reloads it).

# %%
from pathlib import Path

from workbench.app.experiment import ExperimentConfig, prepare_data, train_methods

RUN = Path("../runs/notebooks/gating")
config = ExperimentConfig.notebook(n_train=24, n_heldout=2, methods=("A-PSR",), plus_prompt=None, steps=150)
data = prepare_data(model, "pirate", RUN, config, progress=False)
a_psr = train_methods(model, data, config, RUN / "steerers", progress=False)["A-PSR"]
print(a_psr.name, "trained on", len(data.pairs), "pirate triplets")

# %% [markdown]
# ## Gated generation on a mixed batch
#
# The rule "if the gate flags the conversation then A-PSR at alpha 1.5" goes into `steerers=[...]`
# like any steerer. One batch of four sea questions and four others; each answer carries its
# decision and the gate's score.

# %%
from workbench.core.generation import SamplingConfig, generate_answers

rule = gate.then(a_psr.at(1.5))
mixed = [test_pos[0], test_neg[0], test_pos[1], test_neg[1], test_pos[2], test_neg[2], test_pos[3], test_neg[3]]
greedy = SamplingConfig(max_new_tokens=40, temperature=0)
gated = generate_answers(model, mixed, steerers=[rule], config=greedy, batch_size=8, progress=False)
plain = generate_answers(model, mixed, config=greedy, batch_size=8, progress=False)
always = generate_answers(model, mixed, steerers=[rule.ungated()], config=greedy, batch_size=8, progress=False)
for g, p, a in zip(gated, plain, always):
    d = g.decisions[0]
    same = "= always-steered" if g.ids == a.ids else "= unsteered" if g.ids == p.ids else "?"
    print(f"{'STEERED' if d.steered else 'plain  '} score {d.score:+.3f} {same:16s} | {g.question}")
    print(f"    {g.text[:110]!r}")

# %% [markdown]
# Every row is bit-identical to one of the two references: the gate only chooses, per row, which.
#
# ## What gating buys, and what it costs
#
# On held-out prompts of both kinds (a small subset here; the README has the full test split):
# the pirate score and coherence where the gate flagged and where it did not, gated against always
# and never steering, and the latency of gated steered generation as a ratio to ungated steered
# generation, timed in the same run.

# %%
from workbench.evaluation.gating import evaluate_gating

evaluation = evaluate_gating(model, rule, test_pos[:8], test_neg[:8], attribute_judge=data.attribute.judge,
                             config=SamplingConfig(max_new_tokens=32, temperature=0), batch_size=8,
                             timing_tokens=12, timing_rounds=1)
columns = ["group", "condition", "attribute", "attribute_lo", "attribute_hi", "coherence", "n"]
print(evaluation.table[columns].round(1).to_string(index=False))
print(f"latency: {evaluation.latency['ratio']:.2f} (gated / always steered)")

# %% [markdown]
# Where the gate flags, the gated answers are the always-steered ones (pirate score and all); where
# it does not, they are the plain model's, coherence included. The cost is one extra forward over
# the prompt, stopped at the gate's layer.
#
# ## Keeping the rule
#
# A rule saves as a directory (the gate and the steerer as safetensors, the strength as JSON) and
# loads back only onto the model they were made for.

# %%
import tempfile

from workbench.steering.gates import GatedSteerer

with tempfile.TemporaryDirectory() as tmp:
    again = GatedSteerer.load(rule.save(Path(tmp) / "sea-pirate"), model)
print(again.name, "| layer", again.gate.layer, "| alpha", again.alpha)
