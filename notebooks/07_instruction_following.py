# %% [markdown]
# # 7. Instruction following: can a probe carry a format instruction?
#
# Personas are one thing; instructions about *form* are another: "write only in lowercase",
# "answer in fewer than 30 words", "never use commas". They are checked by code (IFEval-style
# verifiable instructions, with the IFEval checkers of the `if-verifiable` package), so the score is
# exact: **strict accuracy**, the share of answers that pass. To the rest of the workbench such a
# checker is just a judge that scores 100 or 0, so an instruction is an attribute like any other:
# the same triplet builder samples its training answers and the same evaluator as the
# equal-coherence comparison generates and judges its test answers.
#
# The paper's fifth finding: a rank-1 PSR cannot carry composite format instructions on its own,
# stacking PSR on top of the prompt adds a few points, and higher rank is the open direction. Here,
# per instruction:
#
# 1. sample answers with the instruction in the system message on training questions
#    (`build_triplets`); keep those that pass the checker (score 100) and read as coherent text;
# 2. train an all-layer PSR of rank 1 and of rank 4 on them (layer by layer on the local deltas);
# 3. answer held-out test questions (greedy) with no steering, the prompt, each PSR, and PSR on top
#    of the prompt, and check every answer.

# %%
from workbench import load_model
from workbench.viz.notebook import use_notebook_renderer
from workbench.data.instructions import load_instructions

use_notebook_renderer()  # figures stored with a description for viewers without plotly

model = load_model()
instructions = {ins.id: ins for ins in load_instructions()}
for ins in instructions.values():
    print(f"{ins.id:13s} {'*' if ins.default else ' '} {ins.checker:35s} {ins.notes}")

# %% [markdown]
# The set is the project's own (`data/instructions.json`); `*` marks the instructions the 135M model
# follows when prompted (measured, in the notes). Several it cannot follow at all even when asked
# (capitals, JSON, a fixed ending): a steerer distilled from failing prompts would learn nothing.
#
# The checkers are exact; for instance:

# %%
lowercase = instructions["lowercase"]
judge = lowercase.judge()  # the checker as a judge: 100 if the answer follows the instruction, 0 if not
for text in ("the sky is blue because air scatters blue light.", "The sky is blue."):
    print(f"{text!r:52} strict {lowercase.check(text)}  judge {judge.score('Why is the sky blue?', text).value:.0f}")

# %% [markdown]
# ## The comparison
#
# Two instructions the model follows, at notebook size (24 training questions, 10 test questions,
# answers of 48 tokens). `alpha = 1` is the strength each steerer was trained to imitate the prompt
# at.

# %%
from workbench.evaluation.instruction_following import run_instruction_following
from workbench.steering import TrainConfig

run = run_instruction_following(model, ["lowercase", "max_words_30"], n_train=24, n_test=10, rank=4, layers=None,
                                max_new_tokens=48, train_config=TrainConfig(steps=200, seed=0), seed=0,
                                progress=False)
summary = run.summary[["instruction", "method", "strict_accuracy", "ci_lo", "ci_hi", "n", "n_train"]]
print(summary.round(2).to_string(index=False))

# %%
import plotly.express as px

from workbench.viz.theme import TEMPLATE, method_colors

colours = method_colors(run.summary["method"])
px.bar(run.summary, x="instruction", y="strict_accuracy", color="method", barmode="group",
       error_y=run.summary["ci_hi"] - run.summary["strict_accuracy"],
       error_y_minus=run.summary["strict_accuracy"] - run.summary["ci_lo"], color_discrete_map=colours,
       template=TEMPLATE, title="Strict accuracy per instruction (95% bootstrap CI)")

# %% [markdown]
# A few answers side by side, for the lowercase instruction:

# %%
answers = run.responses[(run.responses["instruction"] == "lowercase")]
for question, group in list(answers.groupby("question", sort=False))[:2]:
    print("Q:", question)
    for row in group.itertuples():
        print(f"  {row.method:13s} {'pass' if row.strict else 'FAIL'}  {row.response[:90]!r}")

# %% [markdown]
# **Reading it.** Strict accuracy is exact but the test set is small, so the intervals are wide.
# Compare each steerer with the prompt, and rank 1 with rank 4: where the prompt succeeds and a
# steerer does not, the instruction's effect is not something one direction per layer, switched on
# by a probe, can carry. Stacking PSR on the prompt shows whether the steerer adds to what the
# prompt already does. `run_instruction_following` takes every knob (instructions, sizes, layers,
# rank, `psr-ll` training, a list of `alpha` values chosen on validation questions, or
# `coherence_target=80` for the strength at which each steerer's answers are as coherent as the
# target, found by the equal-coherence search of notebook 6), and `directory=` keeps the triplets
# and the judged answers so that a rerun samples and generates nothing again.
