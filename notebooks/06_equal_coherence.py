# %% [markdown]
# # 6. Steering at equal coherence
#
# Turn any steerer up and the attribute rises, until the text breaks. Comparing methods at one
# fixed `alpha` says little (their scales differ), so, as in the paper, each method is compared
# **where its text is equally coherent**:
#
# 1. on validation questions, bisection finds the strongest `alpha` whose mean coherence is within
#    a tolerance of the target, 80 (and, separately, of the prompt's own coherence `C_p`);
# 2. on held-out test questions, the attribute score at that `alpha` is **TA@C80** (and **TA@Cp**),
#    with 95% bootstrap confidence intervals.
#
# Answers are sampled (temperature 0.7) with one seed per question shared by every method and
# strength, so differences between methods are not sampling noise. Judges: the offline ones (the
# pirate lexicon judge, and a coherence judge blending text heuristics with the answer's
# likelihood); a cell at the end swaps in an LLM judge when one is configured.

# %%
from pathlib import Path

from workbench import load_model
from workbench.viz.notebook import use_notebook_renderer
from workbench.app.experiment import ExperimentConfig, prepare_data, train_methods

use_notebook_renderer()  # figures stored with a description for viewers without plotly

RUN = Path("../runs/notebooks/pirate")
config = ExperimentConfig.notebook()
model = load_model()
data = prepare_data(model, "pirate", RUN, config, progress=False)
steerers = train_methods(model, data, config, RUN / "steerers", progress=False)
print("methods:", list(steerers), "+ PSR + prompt (A-PSR on top of the instruction)")
print(f"validation questions {config.evaluation.n_validation}, test questions {config.evaluation.n_test}, "
      f"answers of {config.evaluation.max_new_tokens} tokens, target tolerance {config.evaluation.tol}")

# %% [markdown]
# ## One call
#
# `compare_methods` takes the steerers (and adds no steering, the prompt, and one steerer stacked on
# the prompt), runs every search and returns the tidy table. Every evaluation is stored under the
# run directory, so rerunning costs nothing.

# %%
from workbench.evaluation.comparison import compare_methods, standard_methods

comparison = compare_methods(model, data.attribute, standard_methods(steerers, plus_prompt="A-PSR"),
                             config.evaluation, cache_dir=RUN / "evaluations", progress=False)
print(f"prompt's own coherence C_p = {comparison.meta['targets']['Cp']:.1f}")
table = comparison.table()
print(table.round(1).to_string(index=False))

# %% [markdown]
# ## How the search went
#
# Every evaluation on the validation questions, one curve per method as `alpha` grows: attribute
# against coherence. The large markers are where each search stopped for the target 80.

# %%
from workbench.viz.curves import coherence_tradeoff

sweep = comparison.sweep[comparison.sweep["split"] == "validation"]
coherence_tradeoff(sweep, results=comparison.results[comparison.results["target"] == "C80"], target=80.0)

# %%
for (method, target), search in comparison.searches.items():
    if target == "C80":
        steps = ", ".join(f"{a:.2f}->{c:.0f}" for a, c in search.trace)
        print(f"{method:13s} alpha->coherence: {steps}  => alpha {search.alpha:.2f} ({'reached' if search.reached else search.reason})")

# %% [markdown]
# ## The table as a figure

# %%
from workbench.viz.curves import results_bars

results_bars(comparison.results, title="Attribute score at equal coherence (95% bootstrap CI)")

# %% [markdown]
# **What this shows on SmolLM2-135M.** The single-layer methods (Const-DiM, Const-MSE, S-PSR at
# layer 15) break the text before they produce any pirate words: their TA@C80 is 0 (Const-DiM and
# Const-MSE did not even land within 4 of 80 in 8 evaluations: 76 at alpha 10.8, 69 just above
# it). Steering one middle layer is not enough on this small model, whatever the probe. (Const-DiM
# and Const-MSE coincide: every kept triplet has the soft label 1, the pirate judge saturates, and
# least squares with equal labels is the mean.) The all-layer PSR steers: at coherence 80 its
# pirate score, 83.3 [58.3, 100], is within the prompt's interval, 91.7 [75.0, 100] (the prompt's
# own coherence is higher), and PSR on top of the prompt reaches 100. At the prompt's own coherence
# (TA@Cp), A-PSR's 50.0 [25.0, 75.0] lies below the prompt's interval. (Intervals are per method;
# the claims report tests differences with paired intervals.)
#
# Mind the noise at this size: with 8 validation questions one broken answer moves the mean
# coherence by 10 points, so a strength chosen on validation can land elsewhere on the test
# questions (S-PSR: 81 on validation, 73 on test at the same `alpha`). `ExperimentConfig.quick()`
# (the demo) and `.full()` use more questions and narrow the intervals.
#
# ## With an LLM judge (optional)
#
# The same call takes any judge. `LLMJudgeConfig.from_env()` reads an OpenAI-compatible endpoint
# (hosted, or a local vLLM, llama.cpp server or Ollama; `make judge-server` starts one on the
# embedded model) from `WORKBENCH_JUDGE_BASE_URL`, `WORKBENCH_JUDGE_MODEL` and
# `WORKBENCH_JUDGE_API_KEY`. Judge calls are cached on disk and never crash the sweep: a call that
# fails is a missing score, counted in the table's `n_missing` column with a warning, and is not
# stored, so rerunning the cell once the endpoint is back judges those answers again; a method whose
# answers got no coherence score at all has no `alpha` and a note saying why. This cell runs only
# when asked: set `RUN_LLM_JUDGE=1` as well as the endpoint variables (otherwise it counts as not
# configured, so the stored notebook stays the same wherever the variables are exported).

# %%
import os

from workbench.judges.llm_client import LLMJudgeConfig
from workbench.judges.llm_judges import make_llm_judges

judge_config = LLMJudgeConfig.from_env() if os.environ.get("RUN_LLM_JUDGE") == "1" else None
if judge_config is None:
    print("no LLM judge configured (set WORKBENCH_JUDGE_BASE_URL and WORKBENCH_JUDGE_MODEL): skipped")
else:
    attribute_judge, coherence_judge = make_llm_judges(judge_config, data.attribute.description, style="score")
    by_llm = compare_methods(model, data.attribute, standard_methods(steerers, plus_prompt="A-PSR"),
                             config.evaluation, attribute_judge=attribute_judge, coherence_judge=coherence_judge,
                             cache_dir=RUN / "evaluations-llm", progress=False)
    print(by_llm.table().round(1).to_string(index=False))
