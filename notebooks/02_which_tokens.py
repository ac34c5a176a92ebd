# %% [markdown]
# # 2. Which tokens does a prompt rewrite?
#
# Notebook 1 measured Delta_PS on one answer. Here we measure it on many: prompt-steered
# *triplets* `(x, x', y')` sampled from the model with the pirate instruction, kept only when the
# answer is both pirate-like and coherent (the offline judges decide), exactly the data the
# steerers of notebook 3 are trained on.
#
# Questions answered:
# 1. How unevenly are tokens rewritten, layer by layer? (The paper's first finding: the change
#    varies by orders of magnitude from token to token on larger models.)
# 2. Accumulated vs local deltas: how much does each layer add by itself?
# 3. Which kinds of tokens move most?
# 4. Is the change one direction with a per-token strength, as the paper's PSR assumes?
#
# The triplets and deltas are stored under `runs/notebooks/pirate` and shared by notebooks 3 to 8;
# the first run samples and extracts them (a couple of minutes on a CPU), later runs reload them.

# %%
from pathlib import Path

from workbench import load_model
from workbench.viz.notebook import use_notebook_renderer
from workbench.app.experiment import ExperimentConfig, prepare_data
from workbench.data.triplets import summarize

use_notebook_renderer()  # figures stored with a description for viewers without plotly

RUN = Path("../runs/notebooks/pirate")
config = ExperimentConfig.notebook()
model = load_model()
data = prepare_data(model, "pirate", RUN, config, progress=False)
print({k: round(v, 2) if isinstance(v, float) else v for k, v in summarize(data.triplets).items()})
print(f"{data.store.n_tokens} span tokens of {len(data.pairs)} kept triplets, {len(data.store.layers)} layers")

# %% [markdown]
# Each sampled answer was scored by the attribute judge (pirate words per 100 words, 0-100) and the
# coherence judge (text heuristics blended with the answer's likelihood under the model). A few of
# the kept triplets:

# %%
kept = data.triplets.kept
for row in kept.head(3).itertuples():
    print(f"Q: {row.question}\nA: {row.response}\n   attribute {row.attr_score:.0f}, coherence {row.coh_score:.0f}\n")

# %% [markdown]
# ## 1. The spread across tokens
#
# `token_magnitudes` reads the stored deltas into one row per (triplet, layer, span token), with
# `norm` = `||D_acc[l, t]||` and `rel_norm` = `||D_acc[l, t]|| / ||A_l(x y')[t]||`. Per layer, over the
# answer tokens (the header is left out), the 10th, 50th and 90th percentiles and the largest value:

# %%
from workbench.activations.deltas import token_magnitudes
from workbench.app.demo import spread_table

acc = token_magnitudes(data.store, model.tokenizer, kind="acc")
spread = spread_table(acc)
print(spread[spread["layer"].isin([0, 5, 10, 15, 20, 25, 29])].round(2).to_string(index=False))

# %%
from workbench.viz.token_maps import magnitude_distribution

magnitude_distribution(acc, "norm", title="||Delta_PS|| across answer tokens (band: 10th-90th percentile)")

# %% [markdown]
# On this 135M model the spread is real but narrower than the orders of magnitude the paper reports
# on 2-9B models: the 90th percentile is 2.5 to 4 times the 10th, and the largest change is 2 to 5
# times the median at most layers (more at a few early ones). The relative change grows with depth:
# early layers are barely touched (2 % of the activation's norm), the last ones are rewritten by a
# third.

# %% [markdown]
# ## 2. Accumulated vs local deltas
#
# The accumulated delta `D_acc[l]` includes everything the earlier layers already changed. The
# *local* delta `D_loc[l] = A_l(x' y') - Block_l(A~_{l-1})` is what block `l` adds by itself when its
# input is already the prompt-steered one (all layers come from one patched forward pass). It is
# what an all-layer steerer has to add at each layer.

# %%
loc = token_magnitudes(data.store, model.tokenizer, kind="loc")
answer = ~acc["is_header"]
ratio = (loc.loc[answer].groupby("layer")["norm"].median() / acc.loc[answer].groupby("layer")["norm"].median())
print("median ||D_loc|| / median ||D_acc||, per layer:")
print(ratio.iloc[::3].round(2).to_string())

# %%
from workbench.viz.token_maps import layer_token_heatmap

layer_token_heatmap(acc, "norm", sample=0, per_layer=True, title="Accumulated ||Delta_PS||, sample 0")

# %%
layer_token_heatmap(loc, "norm", sample=0, per_layer=True, title="Local ||Delta_PS|| (what each layer adds), sample 0")

# %% [markdown]
# At layer 0 the two are equal (nothing came before). Deeper, each layer adds only a fraction of
# the accumulated change: the instruction's effect is built up over many layers, which is why a
# single-layer steerer has to push hard at its one layer, and why notebook 5 finds the model
# "repairing" such a push downstream.

# %% [markdown]
# ## 3. Which kinds of tokens move most?
#
# `magnitude_by_kind` joins sub-word tokens into words and sorts each token into a kind: the
# assistant header, the first answer token, words of the pirate judge's lexicon (*matey, arr, ye,
# aye, ...*), punctuation, and other words. `x_median` is the kind's median relative change over the
# layer's median answer token.

# %%
from workbench.activations.deltas import magnitude_by_kind

pirate_words = data.attribute.judge.spec["words"]
kinds = magnitude_by_kind(acc, pirate_words, value="rel_norm", layers=[5, 15, 25, 29])
print(kinds[["layer", "kind", "n", "median", "x_median"]].round(3).to_string(index=False))

# %% [markdown]
# The first answer token, where the persona announces itself ("Arr", "Ahoy", "A pirate's..."), the
# assistant header (where the model "decides" who speaks) and the pirate words move most, up to
# twice the typical token; ordinary words move least, a little below the median. This is what a probe has to
# learn in notebook 3: a per-token strength `lambda(a) = ReLU(a . w + b)` that is large exactly where
# the prompt acts.

# %% [markdown]
# ## 4. Strength along a direction
#
# Everything so far measured the *size* of the change, `||D_t||`. The PSR of notebook 3 assumes
# more: at each layer the change is one direction `z` times a strength that varies per token,
# `D_t ~ c_t z`. The size cannot test that. A token can have a large `||D_t||` because it moved
# far along `z`, or because it moved somewhere else entirely, or even backwards along `z`.
#
# So we measure the strength itself, `c_t = <D_t, z>`, with `z` the unit mean of the training deltas
# at each layer (what Const-DiM adds, up to its length). To keep `z` from being scored on the tokens
# it was fitted to, `c_t` is measured on the **held-out** triplets (other questions; their deltas
# are extracted once and stored next to the training ones). Every interval comes from resampling
# held-out *answers*, not tokens, because the tokens of one answer are not independent.
#
# First the spread: the same measures for the norm and for the coefficient, each the median over
# layers with its 95 % interval. `near_zero` is the share of tokens with `|c_t|` at most a tenth of
# the median, which `z` leaves nearly alone; `negative` is the share pushed against `z`. The norm
# is never negative, so only the coefficient can show either.

# %%
from workbench.evaluation.assumptions import heldout_store, measure_assumptions

heldout = heldout_store(model, data.heldout_pairs, RUN)
assumptions = measure_assumptions(data.store, heldout, tokenizer=model.tokenizer, n_boot=500)
print(f"{assumptions.energies.n_responses} held-out answers, {assumptions.coef_spread.n_tokens} answer tokens")
print(assumptions.spread_summary().round(2).to_string())

# %% [markdown]
# The heat map below puts the two side by side for the held-out answer with the largest
# coefficient: the norm on top (as in section 2), the signed coefficient underneath, red where the
# token is pushed along `z`, blue where it is pushed against it, white where `z` leaves it alone.
# Each layer is scaled by its own typical value, so compare colours within a row.

# %%
from workbench.viz.token_maps import coefficient_heatmap

middle = model.n_layers // 2
strongest = int(assumptions.top_tokens(middle, n=1)["sample"].iloc[0])
coefficient_heatmap(assumptions.coefficients, sample=strongest,
                    title=f"Held-out answer {strongest}: ||Delta_PS|| (top) and c_t along the mean direction (bottom)")

# %% [markdown]
# The answer tokens with the largest coefficient at the middle layer (`x_median`: how many times
# the median `|c_t|`):

# %%
print(assumptions.top_tokens(middle, n=8)[["sample", "token", "coef", "x_median"]].round(2).to_string(index=False))

# %% [markdown]
# ## How many directions does the prompt use?
#
# If the change really were `c_t z`, all of `sum_t ||D_t||^2` would lie along `z`. Per layer,
# `share_along` is the part of the held-out `sum_t ||D_t||^2` that does. More generally, take the
# `k` directions that hold the most of the *training* deltas (their principal directions) and ask
# how much of the *held-out* deltas they hold; `rank_50` and `rank_80` are the smallest `k` that
# hold half and 80 % of it. The p90/p10 columns repeat the spread of the norm and of `|c_t|` per
# layer.

# %%
print(assumptions.by_layer().iloc[::3].round(2).to_string())

# %% [markdown]
# The figure draws the share against `k`, one line per band of layers, next to `k` random
# directions (dashed), which hold about `k / d_model` of anything. A change that used one
# direction would jump to the top at `k = 1`; a line that climbs slowly means the prompt spreads
# its change over many directions, and a rank-1 steerer (one `z` per layer) can only carry the
# part along its own direction. Read the printed numbers of your run: whether the share along the
# mean direction is near 1, and how the rank for 80 % compares with `d_model`, is exactly what the
# claims report (finding 1) checks for every attribute.

# %%
from workbench.viz.directions import share_vs_k

share_vs_k(assumptions.curves, title="Share of held-out ||Delta_PS||^2 held by k directions of the training deltas")
