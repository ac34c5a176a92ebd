# %% [markdown]
# # 1. Quick start: a prompt is an intervention on the model's activations
#
# A steering instruction such as *"You are a pirate. Speak like a pirate: say Arr and matey."*
# changes what a language model writes. This workbench looks at **how** it does so from the inside:
# the instruction changes the residual stream at every layer, and we can measure that change token
# by token. Following *Steer Like the LLM* (Heyman and Vandeputte, ICML 2026), we call it
# **Delta_PS**, the activation change caused by prompt steering.
#
# This notebook:
# 1. loads the embedded model (SmolLM2-135M-Instruct, shipped inside a PyPI package: no network);
# 2. asks one question with and without the pirate instruction and compares the answers;
# 3. draws the first Delta_PS heat map: which tokens of the answer the instruction rewrites, and
#    at which layers.
#
# Everything runs on a CPU in well under a minute.

# %%
from workbench import load_model
from workbench.viz.notebook import use_notebook_renderer
from workbench.core.generation import SamplingConfig, generate_answers
from workbench.data.attributes import load_attribute

use_notebook_renderer()  # figures stored with a description for viewers without plotly

model = load_model()  # the embedded SmolLM2-135M-Instruct; the first call builds a float32 cache (~20 s)
print(model.model_id, "|", model.n_layers, "layers | d_model", model.d_model)

# %% [markdown]
# ## Notation
#
# - `x`: the user's question alone; `x'`: the same conversation with the steering instruction as the
#   system message; `y'`: an answer the model writes given `x'`.
# - **Layer l** is the residual stream *after* transformer block `l`: the TransformerLens hook
#   `blocks.{l}.hook_resid_post`. In Hugging Face terms that is `hidden_states[l + 1]`
#   (`hidden_states[0]` is the embedding output): an off-by-one that trips up many tools.
# - The **steered span** is the assistant turn: the assistant header the chat template adds, then
#   the answer. That is where the instruction's effect is measured, and where steerers act.
#
# The bundled *attributes* are instruction sets the 135M model actually follows, each with an
# offline judge. Here is the pirate one:

# %%
pirate = load_attribute("pirate")
instruction = pirate.instructions[1]
print("instruction:", instruction)
print("judge:", pirate.judge.name, "| questions (train/validation/test):",
      [len(pirate.questions(s)) for s in ("train", "validation", "test")])

# %% [markdown]
# ## The same question, with and without the instruction
#
# Greedy decoding (temperature 0), so the answers are reproducible.

# %%
question = "How do I make a cup of tea?"
greedy = SamplingConfig(max_new_tokens=48, temperature=0)
plain, = generate_answers(model, [question], config=greedy, progress=False)
steered, = generate_answers(model, [question], instruction=instruction, config=greedy, progress=False)
print("x  ->", plain.text)
print()
print("x' ->", steered.text)

# %%
scores = {name: pirate.judge.score(question, answer.text).value for name, answer in
          (("without", plain), ("with", steered))}
print("pirate judge (0-100):", {k: round(v) for k, v in scores.items()})

# %% [markdown]
# ## Delta_PS: what the instruction changed inside
#
# To compare the two runs token by token, the answer `y'` is tokenized **once** and the same token
# ids are appended to both prompts: `x y'` and `x' y'` (tokenizing `x + y'` as one string could
# merge tokens across the boundary and misalign the runs). Then, at every layer `l` and every token
# `t` of the steered span:
#
# `D_acc[l, t] = A_l(x' y')[t] - A_l(x y')[t]`
#
# is the change the instruction caused. `pair_magnitudes` runs both passes and returns its norm per
# token and layer, and the norm relative to the activation itself.

# %%
from workbench.activations.deltas import pair_magnitudes
from workbench.core.chat import align

pair = align(model.tokenizer, question, instruction, steered.ids)
table = pair_magnitudes(model, [pair])
print(f"{pair.span_len} span tokens ({pair.header_len} header + {pair.span_len - pair.header_len} answer) x "
      f"{model.n_layers} layers = {len(table)} rows")
table.head().round(3)

# %% [markdown]
# The heat map: one row per layer, each token coloured by `||D_acc[l, t]||` on a log scale. Residual
# norms grow with depth, so each layer is divided by its own median (1x = a typical token of that
# layer). Hover a token for its raw value; the italic tokens are the assistant header.

# %%
from workbench.viz.figures import shown_layers
from workbench.viz.token_maps import token_heatmap

layers = shown_layers(model.n_layers)  # five layers from first to last
token_heatmap(table, "norm", layers=layers, per_layer=True, title="||Delta_PS|| per token (x layer median)")

# %% [markdown]
# Which tokens moved most? At the middle row of the heat map, the five largest changes against the
# median answer token of that layer:

# %%
layer = layers[len(layers) // 2]  # the heat map's middle row
middle = table[(table["layer"] == layer) & ~table["is_header"]]
top = middle.nlargest(5, "norm")[["position", "token", "norm"]].astype({"norm": float}).assign(
    x_median=lambda d: d["norm"] / middle["norm"].median())
print(f"layer {layer} (heat-map rows: {layers}):")
print(top.round(2).to_string(index=False))

# %% [markdown]
# The instruction does not change every token alike: some tokens, often the persona's own words,
# move several times more than a typical one, and the effect grows with depth. A *constant*
# steering vector, by contrast, adds the same change to every token.
#
# **Next:** notebook 2 measures this on many answers: how wide the spread is, accumulated vs local
# deltas, and which kinds of tokens move most.
