# %% [markdown]
# # 8. Steering among the other ways to adapt a model
#
# Prompting, constant steering vectors and PSR all change what the model writes. Which to use
# depends on more than the attribute score: what each costs per answer, what it needs to be built,
# and how cleanly it comes off. This notebook measures them side by side on the embedded model:
#
# - **extra prompt tokens** per answer (an instruction is read on every call),
# - **latency** per answer, every method generating exactly the same number of tokens, timed in
#   interleaved rounds against a no-adaptation baseline measured in the same run,
# - **memory**: the adaptation's own parameters plus the KV cache its extra tokens occupy,
# - **trained parameters** and **training data** (prompt-steered triplets),
# - **reversibility**: the model's logits after the adaptation is removed, compared with before
#   (measured, not assumed), and whether the strength is a continuous knob.
#
# Steerers are used at the strength notebook 6 found for coherence 80.

# %%
from pathlib import Path

from workbench import load_model
from workbench.app.experiment import ExperimentConfig, prepare_data, strengths_in_use, train_methods
from workbench.evaluation.comparison import compare_methods, standard_methods

RUN = Path("../runs/notebooks/pirate")
config = ExperimentConfig.notebook()
model = load_model()
data = prepare_data(model, "pirate", RUN, config, progress=False)
steerers = train_methods(model, data, config, RUN / "steerers", progress=False)
comparison = compare_methods(model, data.attribute, standard_methods(steerers, plus_prompt="A-PSR"),
                             config.evaluation, cache_dir=RUN / "evaluations", progress=False)  # notebook 6's, reloaded
alphas = {name.split(" @")[0]: alpha for name, (_, alpha) in strengths_in_use(steerers, comparison.results).items()}
print({name: round(a, 3) for name, a in alphas.items()})

# %%
from workbench.evaluation.adaptation import Adaptation, compare_adaptations

instruction = data.attribute.instructions[0]
n_train = len(data.pairs)
ways = [Adaptation("prompt", instruction=instruction)]
ways += [Adaptation(name, steerer=steerers[name], alpha=alphas[name], n_train=n_train)
         for name in ("Const-DiM", "Const-MSE", "S-PSR", "A-PSR")]
ways.append(Adaptation("PSR + prompt", instruction=instruction, steerer=steerers["A-PSR"], alpha=1.0, n_train=n_train))
questions = list(data.attribute.questions("test")[:2])
costs = compare_adaptations(model, ways, questions, new_tokens=16, repeats=3, progress=False)  # batch 1, ~1 minute

# %% [markdown]
# The measured costs. Token counts, parameter counts, bytes and the removal check are exact and
# reproducible; the timings are medians of three interleaved rounds on a shared CPU, so expect a few
# percent of noise (they are printed in a separate cell that the regression tests do not compare).

# %%
exact = ["method", "extra_prompt_tokens", "trained_params", "adaptation_bytes", "extra_kv_bytes", "train_triplets",
         "continuous_strength", "exact_removal", "removal_max_abs_diff"]
print(costs[exact].round(1).to_string(index=False))

# %%
# NBVAL_IGNORE_OUTPUT
print(costs[["method", "seconds_per_answer", "relative_latency", "ms_per_token", "prefill_ms"]].round(3).to_string(index=False))

# %% [markdown]
# The same as a radar chart: each axis is scaled across the methods shown, outward is better
# (fewer extra tokens, lower latency and memory, fewer parameters and less data, exact removal, a
# continuous knob).

# %%
from workbench.evaluation.adaptation import radar_axes
from workbench.viz.curves import radar_chart

radar_chart(**radar_axes(costs), title="Ways to adapt SmolLM2-135M (outward = better)")

# %% [markdown]
# And what each buys, from notebook 6 (TA@C80 on the test questions):

# %%
ta = comparison.results[comparison.results["target"] == "C80"].set_index("method")
print(ta[["alpha", "attribute", "attribute_lo", "attribute_hi", "coherence"]].round(1).to_string())

# %% [markdown]
# **Reading it.** The prompt costs nothing to build and nothing to store, but its tokens are read
# with every answer: here 22 more prompt tokens than the plain question (on SmolLM2's template the
# instruction replaces a default system message, so the difference is smaller than the
# instruction itself), about 1 MB more KV cache per answer in flight, and a longer prefill. A
# steerer adds no tokens; it holds from 576 parameters (one vector at one layer) to about 35,000
# (a PSR at all 30 layers), needs prompt-steered triplets to train, comes off exactly (the logits
# after removal are bit-identical to before) and has a continuous strength knob. Its hooks cost a
# few percent of latency per token. On this model only the all-layer steerers buy attribute at
# coherence 80 (notebook 6). Fine-tuning (not measured here) would change the weights themselves:
# no knob, and removing it means keeping a copy of the original model.
