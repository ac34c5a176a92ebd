"""How well a policy gate works: its decisions, what gated steering writes, and what it costs.

On held-out prompts of both kinds (a topic the gate must flag, and the rest):

- :func:`gate_metrics`: precision, recall and F1 of the gate's flags, with percentile bootstrap
  intervals (precision and recall are means, of the truth over flagged prompts and of the flags
  over positive prompts, through :func:`workbench.evaluation.strength.bootstrap_ci`; F1 by
  resampling prompts the same way);
- :func:`evaluate_gating`: the attribute score and coherence of the answers on flagged and on
  unflagged prompts, gated against always steering and never steering (the goal: the attribute of
  always-steered answers where flagged, the coherence of unsteered answers where not), and the
  latency of gated steered generation as a ratio to ungated steered generation, timed in the same
  run (interleaved rounds, median).

:func:`load_scenario` reads a prompt set for a gate (``data/gating/<name>.json``: positive and
negative prompts, each split into train / validation / test).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from workbench.core.generation import SamplingConfig, generate_answers
from workbench.core.likelihood import logprob_fn
from workbench.core.models import LoadedModel
from workbench.data.attributes import data_dir
from workbench.evaluation.strength import bootstrap_ci
from workbench.judges.base import Judge
from workbench.judges.offline import CoherenceJudge
from workbench.steering.gates import GatedSteerer, precision_recall_f1, search_gate

SPLITS = ("train", "validation", "test")
CONDITIONS = ("never", "always", "gated")


@dataclass(frozen=True)
class GatingScenario:
    """Prompts a gate must flag (``positive``) and leave alone (``negative``), split by ``SPLITS``."""

    name: str
    description: str
    positive: Mapping[str, tuple[str, ...]]
    negative: Mapping[str, tuple[str, ...]]
    steerer: str | None = None

    def split(self, split: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(positive, negative)`` prompts of one split."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.positive[split], self.negative[split]


def load_scenario(name: str | Path = "sea_and_ships") -> GatingScenario:
    """A bundled scenario by name (``data/gating/<name>.json``) or a JSON file of the same shape."""
    path = Path(name)
    if not path.suffix:
        path = data_dir() / "gating" / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no gating scenario at {path}")
    raw = json.loads(path.read_text())
    sides = {}
    for side in ("positive", "negative"):
        splits = raw.get(side) or {}
        missing = [s for s in SPLITS if not splits.get(s)]
        if missing:
            raise ValueError(f"{path}: the {side} side has no prompts for split(s) {missing}")
        sides[side] = {s: tuple(splits[s]) for s in SPLITS}
    return GatingScenario(raw.get("name", path.stem), raw.get("description", ""), sides["positive"], sides["negative"],
                          raw.get("steerer"))


def _f1_ci(flags: np.ndarray, truth: np.ndarray, n_boot: int, level: float, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, flags.size, size=(n_boot, flags.size))
    f1s = [precision_recall_f1(flags[r], truth[r])[2] for r in rows]
    tail = (1 - level) / 2
    return float(np.quantile(f1s, tail)), float(np.quantile(f1s, 1 - tail))


def gate_metrics(flags: Sequence[bool], truth: Sequence[bool], *, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> pd.DataFrame:
    """Precision, recall and F1 of ``flags`` against ``truth`` with bootstrap intervals.

    Returns:
        one row per metric: ``metric, value, lo, hi, n`` (``n``: the prompts the metric averages over;
        ``lo``/``hi`` NaN where it has none).
    """
    flags, truth = np.asarray(flags, dtype=bool), np.asarray(truth, dtype=bool)
    if flags.shape != truth.shape or flags.ndim != 1 or flags.size == 0:
        raise ValueError(f"flags and truth must be two non-empty 1-D sequences of equal length, got {flags.shape} "
                         f"and {truth.shape}")
    precision, recall, f1 = precision_recall_f1(flags, truth)
    rows = []
    for metric, value, values in (("precision", precision, truth[flags]), ("recall", recall, flags[truth])):
        lo, hi = bootstrap_ci(values.astype(float), n_boot, level, seed) if values.size else (float("nan"),) * 2
        rows.append({"metric": metric, "value": value, "lo": lo, "hi": hi, "n": int(values.size)})
    lo, hi = _f1_ci(flags, truth, n_boot, level, seed)
    rows.append({"metric": "f1", "value": f1, "lo": lo, "hi": hi, "n": int(flags.size)})
    return pd.DataFrame(rows)


@dataclass
class GatingEvaluation:
    """What :func:`evaluate_gating` measured.

    Attributes:
        metrics: the gate's precision / recall / F1 (see :func:`gate_metrics`).
        table: ``group, condition, attribute, attribute_lo, attribute_hi, coherence, coherence_lo,
            coherence_hi, n``: group ``"flagged"`` / ``"not flagged"`` (by the gate), condition
            ``"never"``, ``"always"``, ``"gated"``.
        answers: one row per prompt and condition: question, truth, flagged, score, condition, response,
            attribute, coherence.
        latency: seconds per round of each condition (``gated``, ``always``) and ``ratio`` (gated / always).
    """

    metrics: pd.DataFrame
    table: pd.DataFrame
    answers: pd.DataFrame
    latency: dict


def _mean_ci(values: Sequence[float], seed: int) -> tuple[float, float, float, int]:
    data = [v for v in values if v is not None and not np.isnan(v)]
    if not data:
        return float("nan"), float("nan"), float("nan"), 0
    lo, hi = bootstrap_ci(data, seed=seed) if len(data) > 1 else (data[0], data[0])
    return float(np.mean(data)), lo, hi, len(data)


def time_gating(model: LoadedModel, questions: Sequence[str], rule: GatedSteerer, *, new_tokens: int = 16,
                batch_size: int = 16, rounds: int = 3) -> dict:
    """Seconds to answer ``questions`` with exactly ``new_tokens`` greedy tokens each, gated and ungated
    (the same steerer on every row), in interleaved rounds; the median of each and their ratio."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    config = SamplingConfig(max_new_tokens=new_tokens, temperature=0, stop_at_end_of_turn=False)
    runs = {"gated": [rule], "always": [rule.ungated()]}
    generate_answers(model, list(questions[:1]), steerers=runs["gated"], config=config, progress=False,
                     record_lambdas=False)  # warm-up
    seconds: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for name, steerers in runs.items():
            start = time.perf_counter()
            generate_answers(model, questions, steerers=steerers, config=config, batch_size=batch_size,
                             progress=False, record_lambdas=False)
            seconds[name].append(time.perf_counter() - start)
    out = {k: statistics.median(v) for k, v in seconds.items()}
    return {**out, "ratio": out["gated"] / out["always"], "rounds": rounds, "new_tokens": new_tokens,
            "n_prompts": len(questions), "batch_size": batch_size}


def evaluate_gating(model: LoadedModel, rule: GatedSteerer, positive: Sequence[str], negative: Sequence[str], *,
                    attribute_judge: Judge, coherence_judge: Judge | None = None,
                    config: SamplingConfig = SamplingConfig(max_new_tokens=40, temperature=0), batch_size: int = 16,
                    seed: int = 0, timing_tokens: int = 16, timing_rounds: int = 3) -> GatingEvaluation:
    """Evaluate a rule "if gate then steerer" on held-out ``positive`` and ``negative`` prompts.

    Answers every prompt three ways (never steered, always steered, gated), in the same batches, and
    judges them; the gate's decisions come from the gated run. ``coherence_judge`` defaults to the
    offline heuristics blended with the model's likelihood.
    """
    for what, texts in (("positive", positive), ("negative", negative)):
        if isinstance(texts, str) or not list(texts):
            raise ValueError(f"the {what} prompt set is empty; the evaluation needs prompts of both kinds")
    coherence_judge = coherence_judge or CoherenceJudge(logprob_fn=logprob_fn(model))
    questions = list(positive) + list(negative)
    truth = np.r_[np.ones(len(positive), bool), np.zeros(len(negative), bool)]
    common = dict(config=config, seed=seed, batch_size=batch_size, progress=False, record_lambdas=False)
    gated = generate_answers(model, questions, steerers=[rule], **common)
    flagged = np.array([a.decisions[0].steered for a in gated])
    scores = [a.decisions[0].score for a in gated]
    runs = {"never": generate_answers(model, questions, **common),
            "always": generate_answers(model, questions, steerers=[rule.ungated()], **common), "gated": gated}
    frames = {}
    for condition in CONDITIONS:
        texts = [a.text for a in runs[condition]]
        attr = [s.value for s in attribute_judge.score_batch(questions, texts)]
        coh = [s.value for s in coherence_judge.score_batch(questions, texts)]
        frames[condition] = pd.DataFrame({"question": questions, "truth": truth, "flagged": flagged, "score": scores,
                                          "condition": condition, "response": texts, "attribute": attr, "coherence": coh})
    answers = pd.concat(frames.values(), ignore_index=True)
    rows = []
    for group, mask in (("flagged", flagged), ("not flagged", ~flagged)):
        for condition in CONDITIONS:
            part = frames[condition][mask]
            a, a_lo, a_hi, n = _mean_ci(part["attribute"].tolist(), seed)
            c, c_lo, c_hi, _ = _mean_ci(part["coherence"].tolist(), seed)
            rows.append({"group": group, "condition": condition, "attribute": a, "attribute_lo": a_lo,
                         "attribute_hi": a_hi, "coherence": c, "coherence_lo": c_lo, "coherence_hi": c_hi,
                         "n": int(mask.sum()), "n_judged": n})
    latency = time_gating(model, questions, rule, new_tokens=timing_tokens, batch_size=batch_size,
                          rounds=timing_rounds) if timing_rounds else {}
    return GatingEvaluation(gate_metrics(flagged, truth, seed=seed), pd.DataFrame(rows), answers, latency)


def scenario_from_prompts(positive: Sequence[str], negative: Sequence[str], *, name: str = "prompts", seed: int = 0,
                          fractions: tuple[float, float] = (0.6, 0.2)) -> GatingScenario:
    """Shuffle each side (with ``seed``) and cut it into train / validation / test (60 / 20 / 20 by default).

    Each side needs at least three prompts, one per split.
    """
    sides = {}
    for what, texts in (("positive", positive), ("negative", negative)):
        texts = [t.strip() for t in texts if isinstance(t, str) and t.strip()]
        if len(texts) < 3:
            raise ValueError(f"the {what} prompt set has {len(texts)} prompt(s); it needs at least 3 (train, "
                             "validation and test get one or more each)")
        order = np.random.default_rng(seed).permutation(len(texts))
        n_train = max(1, int(round(fractions[0] * len(texts))))
        n_val = max(1, int(round(fractions[1] * len(texts))))
        n_train = min(n_train, len(texts) - n_val - 1)
        shuffled = [texts[i] for i in order]
        sides[what] = {"train": tuple(shuffled[:n_train]), "validation": tuple(shuffled[n_train:n_train + n_val]),
                       "test": tuple(shuffled[n_train + n_val:])}
    return GatingScenario(name, f"split with seed {seed}", sides["positive"], sides["negative"])


def read_prompt_file(path: str | Path) -> list[str]:
    """Prompts from a file: a JSON list of strings, or one prompt per line (blank lines and ``#`` lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no prompt file at {path}")
    text = path.read_text()
    if path.suffix == ".json":
        items = json.loads(text)
        if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
            raise ValueError(f"{path}: a JSON prompt file holds a list of strings")
        prompts = [t.strip() for t in items if t.strip()]
    else:
        prompts = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"{path} holds no prompts: the prompt set is empty")
    return prompts


def learn_gate(model: LoadedModel, scenario: GatingScenario, *, layers: Sequence[int] | None = None,
               pools: Sequence[str] = ("mean",), method: str = "mean-diff", name: str | None = None,
               seed: int = 0):
    """Search a gate on the scenario's train / validation prompts and measure it on its test prompts.

    Returns ``(search, metrics)``: the :class:`~workbench.steering.gates.GateSearch` and the held-out
    :func:`gate_metrics` table.
    """
    from_split = {s: scenario.split(s) for s in SPLITS}
    search = search_gate(model, *from_split["train"], *from_split["validation"], layers=layers, pools=pools,
                         method=method, name=name or scenario.name)
    pos, neg = from_split["test"]
    scores = search.gate.score_texts(model, list(pos) + list(neg))
    truth = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    return search, gate_metrics(search.gate.flags(scores), truth, seed=seed)
