# %% [markdown]
# # 4. Lambda over generated text
#
# A PSR steerer decides, token by token, how hard to push: `lambda(a) = ReLU(a . w + b)` is read
# from the activation at each steered layer. That per-token strength is an output in its own right.
# Here we generate with the all-layer PSR of notebook 3 (no instruction at all: `x` only) and colour
# every generated token by its `lambda`, side by side with the prompt-steered answer to the same
# question and *its* `||Delta_PS||`, the change the instruction caused.
#
# If the probe learned what the prompt does, its strength should be high where the prompt's change
# is high. The last section measures exactly that on held-out answers.

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
steerers = train_methods(model, data, config, RUN / "steerers", progress=False)  # trained in notebook 3: reloaded
a_psr, s_psr = steerers["A-PSR"], steerers["S-PSR"]
instruction = data.attribute.instructions[0]
questions = list(data.attribute.questions("test")[:6])
print(a_psr.name, "|", len(a_psr.layers), "layers | instruction:", instruction)

# %% [markdown]
# ## The explorer
#
# Pick a question and a strength `alpha` (0 = the plain model), press **Generate**. Top: the answer
# steered by A-PSR, each token coloured by `lambda` at a few layers (linear scale). Bottom: the
# prompt-steered answer (`x'`), each token coloured by `||Delta_PS||` at the same layers (log scale,
# per-layer median = 1). Tick *auto* to regenerate as you move the slider.

# %%
from workbench.app.lambda_explorer import LambdaExplorer

explorer = LambdaExplorer(model, a_psr, questions, instruction, alpha=1.75, max_new_tokens=40, layers=[5, 15, 25, 29])
explorer.question.value = questions[4]
explorer.refresh()
explorer

# %%
print("steered by A-PSR (alpha 1.75):", explorer.steered.text)
print()
print("prompt-steered:", explorer.prompted.text)

# %% [markdown]
# Where does the steerer push hardest on its own answer? The five tokens with the largest `lambda`
# at layer 15, and the share of all the answer's `lambda` they carry:

# %%
lam = explorer.lambda_table
at15 = lam[(lam["layer"] == 15) & ~lam["is_header"]]
top = at15.nlargest(5, "lambda")[["position", "token", "lambda"]]
print(top.round(2).to_string(index=False))
print(f"share of the total lambda in these 5 of {len(at15)} tokens: {top['lambda'].sum() / at15['lambda'].sum():.2f}")

# %% [markdown]
# ## The strength knob
#
# `alpha` scales the whole intervention; `lambda` itself is read from the activations, which the
# steering at earlier layers has already changed. At `alpha = 0` the answer is exactly the plain
# model's (the hooks add nothing) and `lambda` is what the probe reads on unsteered text. Greedy
# decoding makes the failure mode plain: too strong, and the answer collapses into repeated pirate
# words; notebook 6 chooses the strength by coherence instead, on sampled answers.

# %%
from workbench.core.generation import SamplingConfig, generate_answers
from workbench.steering.lambda_tables import generation_lambda_table

greedy = SamplingConfig(max_new_tokens=40, temperature=0)
for alpha in (0.0, 1.0, 1.5, 1.75, 2.5):
    answer, = generate_answers(model, questions[4:5], steerers=[(a_psr, alpha)], config=greedy, progress=False)
    table = generation_lambda_table(answer, model.tokenizer, layers=a_psr.layers)
    mean15 = table[(table["layer"] == 15) & ~table["is_header"]]["lambda"].mean()
    score = data.attribute.judge.score(questions[4], answer.text).value
    print(f"alpha {alpha:4.2f}  mean lambda@15 {mean15:5.2f}  pirate {score:5.1f}  | {answer.text[:70]!r}")

# %% [markdown]
# ## Does the probe read where the prompt acts?
#
# Teacher-forced on the held-out prompt-steered answers (the model reads `x y'`, no steering): per
# layer, the rank correlation (Spearman) between the probe's `lambda` and the size of the prompt's
# local change `||D_loc[l, t]||` at the same token. 0 means no relation; 1 means the probe ranks the
# tokens exactly as the prompt rewrites them.

# %%
from workbench.steering.lambda_tables import lambda_vs_delta

agreement = lambda_vs_delta(model, a_psr, data.heldout_pairs)
print(agreement.iloc[::4].round(2).to_string(index=False))
print("median over layers:", round(float(agreement["spearman"].median()), 2))

# %%
single = lambda_vs_delta(model, s_psr, data.heldout_pairs)
print(f"S-PSR at layer {s_psr.layers[0]} against ||D_acc||: Spearman {single['spearman'].iloc[0]:.2f} "
      f"over {single['n_tokens'].iloc[0]} tokens")

# %% [markdown]
# A positive correlation means the probe has learned part of *where* the prompt acts, from the
# activations alone; it is far from perfect on this small model and this little data. A constant
# vector has no such notion at all (its `lambda` is 1 everywhere). Notebook 5 asks how close the
# resulting activations come to the prompt's, layer by layer.
