"""Does prompting visibly work? The per-attribute success table (README "Attributes").

For each attribute, on held-out questions (validation then test), sample one response per
question under each positive instruction, under the first paraphrase, and with no instruction,
and score them with the attribute judge and the pipeline's coherence judge (heuristics blended
with the model's likelihood). Success = both >= 50, the rule that decides which triplets are kept.
Sampling uses the same per-sample seeds as :func:`workbench.data.triplets.build_triplets`.
"""

from __future__ import annotations

import statistics
from typing import Sequence

import pandas as pd
from tqdm.auto import tqdm

from workbench.core.chat import prompt_ids
from workbench.core.checks import check_int
from workbench.core.fingerprint import sample_seed
from workbench.core.generation import SamplingConfig, generate
from workbench.core.likelihood import logprob_fn
from workbench.core.models import LoadedModel
from workbench.data.attributes import Attribute, load_attribute
from workbench.judges.base import Score, success
from workbench.judges.offline import CoherenceJudge


def _condition(model: LoadedModel, attribute: Attribute, questions: Sequence[str], instruction: str | None,
               coherence: CoherenceJudge, config: SamplingConfig, seed: int, batch_size: int) -> dict:
    prompts = [prompt_ids(model.tokenizer, q, instruction)[0] for q in questions]
    seeds = [sample_seed(seed, q, instruction or "", 0) for q in questions]
    ids = generate(model, prompts, config, row_seeds=seeds, batch_size=batch_size, progress=False)
    texts = [model.tokenizer.decode(r, skip_special_tokens=True).strip() for r in ids]
    attr: list[Score] = attribute.judge.score_batch(list(questions), texts)
    coh: list[Score] = coherence.score_batch(list(questions), texts)
    return {
        "success": statistics.mean(success(a, c) for a, c in zip(attr, coh)),
        "attr": statistics.mean(a.value or 0.0 for a in attr),
        "coh": statistics.mean(c.value or 0.0 for c in coh),
    }


def check_attributes(
    model: LoadedModel,
    attributes: Sequence[str | Attribute],
    n_questions: int = 20,
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.7,
    top_p: float = 0.95,
    seed: int = 0,
    batch_size: int = 20,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per attribute: success rates and mean scores with and without the instruction.

    Columns: ``attribute, n, success_first, success_mean, success_per_instruction,
    success_paraphrase, success_unsteered, attr_steered, attr_unsteered, coh_steered,
    coh_unsteered``; rates in [0, 1], scores 0-100.
    """
    check_int("n_questions", n_questions, minimum=1)
    config = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
    coherence = CoherenceJudge(logprob_fn=logprob_fn(model))
    rows = []
    for attribute in tqdm([load_attribute(a) for a in attributes], desc="attributes", disable=not progress):
        questions = (attribute.questions("validation") + attribute.questions("test"))[:n_questions]
        run = lambda instruction: _condition(model, attribute, questions, instruction, coherence, config, seed, batch_size)  # noqa: E731
        steered = [run(i) for i in attribute.instructions]
        paraphrase = run(attribute.paraphrases[0]) if attribute.paraphrases else None
        unsteered = run(None)
        rows.append({
            "attribute": attribute.name,
            "n": len(questions),
            "success_first": steered[0]["success"],
            "success_mean": statistics.mean(s["success"] for s in steered),
            "success_per_instruction": [round(s["success"], 3) for s in steered],
            "success_paraphrase": paraphrase["success"] if paraphrase else float("nan"),
            "success_unsteered": unsteered["success"],
            "attr_steered": statistics.mean(s["attr"] for s in steered),
            "attr_unsteered": unsteered["attr"],
            "coh_steered": statistics.mean(s["coh"] for s in steered),
            "coh_unsteered": unsteered["coh"],
        })
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame) -> str:
    """The README's attribute table."""
    pct = lambda x: f"{100 * x:.0f}%"  # noqa: E731
    lines = [
        "| attribute | success, first instruction | success, each instruction | success, paraphrase | success, no instruction "
        "| attribute score with / without | coherence with / without |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.attribute} | {pct(r.success_first)} | {' / '.join(pct(s) for s in r.success_per_instruction)} "
            f"| {pct(r.success_paraphrase)} | {pct(r.success_unsteered)} | {r.attr_steered:.0f} / {r.attr_unsteered:.0f} "
            f"| {r.coh_steered:.0f} / {r.coh_unsteered:.0f} |"
        )
    n = int(table["n"].iloc[0]) if len(table) else 0
    return "\n".join(lines) + f"\n\n({n} held-out questions per condition, one sample each, temperature 0.7.)"
