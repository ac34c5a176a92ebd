"""Steering at equal coherence: every method compared where its text is equally coherent.

A steering method has a strength knob ``alpha``: more steering raises the attribute and, past some
point, breaks the text. Comparing methods at one fixed ``alpha`` says little, so (DESIGN.md
section 5), for each method with a knob:

1. on the validation questions, :func:`workbench.evaluation.strength.find_alpha` finds the strongest
   ``alpha`` whose mean coherence is within a tolerance of the target (80 by default), and the
   one matching the prompt's own mean coherence ``C_p``;
2. on the held-out test questions, the attribute score at those strengths is ``TA@C80`` and
   ``TA@Cp``, with bootstrap confidence intervals.

Methods without a knob (no steering, the prompt) are measured once on the test questions and
appear under both targets. Answers are sampled with one seed per question shared by every
method and strength (common random numbers), so differences between methods are not sampling
noise between runs; every evaluation is kept (``Comparison.sweep`` and ``.samples``), which is
what the attribute-vs-coherence curves draw. Because the answers are paired by question, the
differences between methods (each method minus the prompt, PSR minus the constant vector) are
reported as paired bootstrap intervals that resample questions (``Comparison.differences``,
:mod:`workbench.evaluation.statistics`); a difference is called only when its interval excludes 0.
``EvalConfig.samples_per_question`` draws several answers per question (the intervals still
resample questions, over the per-question means).

Judges are the offline ones by default (the attribute's own judge and the coherence proxy
blended with the model's log-likelihood); pass :mod:`workbench.judges.llm_judges` judges to use an LLM.
A judge that cannot score a response returns ``None``; such responses are left out of the means
and counted in ``n_missing``. Missing judgements never stop the sweep: when the coherence judge
scores none of the answers a search needs, that method's row has no ``alpha``, a ``note`` saying
why and every test answer counted in ``n_missing``, and a warning names the count. A judgement
that failed (``Score.failed``: an endpoint down, an HTTP error) is stored on disk only as "to be
judged again": a rerun with the same ``cache_dir`` judges those answers again, without generating
them again.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from workbench.core.cached import read_cached, write_cached
from workbench.core.checks import check_field, check_instance, check_int, check_number
from workbench.core.files import atomic_write_bytes, atomic_write_json
from workbench.core.locks import directory_lock
from workbench.core.fingerprint import fingerprint
from workbench.core.intervention import Intervention
from workbench.core.generation import GENERATION_VERSION, SamplingConfig, check_sampling_fields, generate_answers
from workbench.core.likelihood import logprob_fn
from workbench.core.models import LoadedModel
from workbench.data.attributes import Attribute, load_attribute
from workbench.evaluation.statistics import paired_bootstrap, per_question
from workbench.evaluation.strength import SearchResult, bootstrap_ci, find_alpha
from workbench.judges.base import Judge, describe_judge, judge_fingerprint
from workbench.judges.offline import CoherenceJudge
from workbench.steering import MAX_ABS_ALPHA, layers_label

DIFFERENCE_COLUMNS = ["target", "a", "b", "metric", "alpha_a", "alpha_b", "difference", "lo", "hi", "n", "verdict"]
RESULT_COLUMNS = [
    "method", "target", "target_coherence", "layers", "alpha", "reached", "attribute", "attribute_lo",
    "attribute_hi", "coherence", "coherence_lo", "coherence_hi", "n", "n_missing", "seed", "note",
]


@dataclass(frozen=True)
class Method:
    """One way to steer: a steerer (with the strength knob), the attribute instruction, or both."""

    name: str
    steerer: Intervention | None = None
    prompt: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("a method needs a non-empty name")
        if self.steerer is not None and not isinstance(self.steerer, Intervention):
            raise TypeError(f"method {self.name!r}: steerer must be a steerer or a weight adapter (an Intervention: "
                            f"name, layers, info, check_model, apply), got {type(self.steerer).__name__}")

    @property
    def has_knob(self) -> bool:
        return self.steerer is not None

    @property
    def layers(self) -> str:
        """Where it acts: ``""`` (no steerer), ``"15"``, or ``"0-29"`` / ``"3,7"``."""
        return "" if self.steerer is None else layers_label(self.steerer.layers)


def standard_methods(steerers: Mapping[str, object], plus_prompt: str | None = None) -> list[Method]:
    """No steering, the prompt, each steerer alone, and (optionally) one steerer on top of the prompt.

    Args:
        steerers: ``{name: steerer}``, e.g. ``{"Const-DiM": ..., "S-PSR": ..., "A-PSR": ...}``.
        plus_prompt: the name of the steerer to stack on the prompt as ``"PSR + prompt"``.
    """
    if plus_prompt is not None and plus_prompt not in steerers:
        raise ValueError(f"plus_prompt {plus_prompt!r} is not one of the steerers {list(steerers)}")
    methods = [Method("no steering"), Method("prompt", prompt=True)]
    methods += [Method(name, steerer) for name, steerer in steerers.items()]
    if plus_prompt is not None:
        methods.append(Method("PSR + prompt", steerers[plus_prompt], prompt=True))
    return methods


@dataclass(frozen=True)
class EvalConfig:
    """Sizes, sampling and search settings of a comparison.

    ``n_validation`` / ``n_test``: how many questions of each split (``None``: all).
    ``targets``: coherence targets; ``"prompt"`` stands for the prompt's own coherence ``C_p``.
    ``instruction``: which of the attribute's instructions the prompt methods use.
    ``samples_per_question``: answers sampled per question (sample 0 with the seed every
    comparison uses, sample ``j`` with ``seed + 1_000_003 * j``); means and intervals are taken over
    per-question means, so the intervals resample questions. The default 1 leaves every stored
    evaluation valid (its cache key does not include it).
    """

    n_validation: int | None = 12
    n_test: int | None = 18
    max_new_tokens: int = 48
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    targets: tuple = (80.0, "prompt")
    tol: float = 3.0
    max_steps: int = 8
    alpha_start: float = 1.0
    alpha_max: float = 32.0
    instruction: int = 0
    batch_size: int = 18
    n_boot: int = 2000
    samples_per_question: int = 1

    def __post_init__(self) -> None:
        check_field(self, "samples_per_question", check_int, minimum=1)
        for name in ("n_validation", "n_test"):
            check_field(self, name, check_int, minimum=1, optional=True)
        object.__setattr__(self, "targets", _checked_targets(self.targets))
        check_sampling_fields(self)
        check_field(self, "seed", check_int, minimum=0)  # it seeds numpy's bootstrap, which takes no negative seed
        check_field(self, "tol", check_number, above=0)
        check_field(self, "max_steps", check_int, minimum=2)  # the search evaluates alpha 0 and alpha_start at least
        check_field(self, "alpha_start", check_number, above=0, maximum=MAX_ABS_ALPHA)
        check_field(self, "alpha_max", check_number, minimum=self.alpha_start, maximum=MAX_ABS_ALPHA)
        check_field(self, "instruction", check_int, minimum=0)
        check_field(self, "batch_size", check_int, minimum=1)
        check_field(self, "n_boot", check_int, minimum=1)

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.max_new_tokens, self.temperature, self.top_p)


def _checked_targets(targets) -> tuple:
    """The coherence targets of an :class:`EvalConfig`: numbers in [0, 100] or ``"prompt"``, at least one."""
    if isinstance(targets, str) or not isinstance(targets, Iterable):
        raise TypeError(f"EvalConfig: targets must be a tuple of coherence targets (numbers in [0, 100] or 'prompt'), "
                        f"got {targets!r}: pass ({targets!r},)")
    checked = []
    for i, target in enumerate(targets):
        if isinstance(target, str) and target != "prompt":
            raise ValueError(f"EvalConfig: targets[{i}] must be a coherence target, a number in [0, 100] or "
                             f"'prompt', got {target!r}")
        checked.append(target if target == "prompt" else
                       check_number(f"EvalConfig: targets[{i}] (a coherence target)", target, minimum=0, maximum=100))
    if not checked:
        raise ValueError("EvalConfig: targets is empty; give at least one coherence target")
    return tuple(checked)


SAMPLE_SEED_STRIDE = 1_000_003


def sample_seeds(config: EvalConfig) -> list[int]:
    """The generation seed of each sample index: ``config.seed`` first (so one sample per question
    is exactly the single-sample comparison), then ``seed + 1_000_003 * j``."""
    return [config.seed + SAMPLE_SEED_STRIDE * j for j in range(config.samples_per_question)]


def default_contrasts(names: Sequence[str]) -> list[tuple[str, str]]:
    """The differences a comparison reports: every method minus the prompt, then each PSR minus
    the constant vector acting at the same layers (S-PSR and A-PSR minus Const-DiM, A-PSR minus
    A-Const-DiM), where both are present."""
    names = list(names)
    out = [(m, "prompt") for m in names if m != "prompt"] if "prompt" in names else []
    for a, b in (("S-PSR", "Const-DiM"), ("A-PSR", "Const-DiM"), ("A-PSR", "A-Const-DiM")):
        if a in names and b in names:
            out.append((a, b))
    return out


def target_label(target) -> str:
    """``80.0 -> "C80"``, ``"prompt" -> "Cp"``."""
    return "Cp" if target == "prompt" else f"C{target:g}"


@dataclass
class Comparison:
    """What :func:`compare_methods` measured.

    Attributes:
        results: the TA@C table, one row per method and target (columns :data:`RESULT_COLUMNS`).
        sweep: one row per evaluation: ``method, split, alpha, attribute, coherence, n, n_missing``.
        samples: one row per answer: ``method, split, alpha, question, response, attribute,
            coherence, attribute_reason, coherence_reason, attribute_failed, coherence_failed`` (``*_failed``:
            the judgement was not made, see :class:`workbench.judges.base.Score`).
        searches: ``{(method, target label): SearchResult}`` with each search's trace.
        meta: model, attribute, judges, configuration, prompt coherence.
    """

    results: pd.DataFrame
    sweep: pd.DataFrame
    samples: pd.DataFrame
    searches: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def table(self, target: str | None = None) -> pd.DataFrame:
        """The results as ``method, layers, alpha, attribute [lo, hi], coherence`` for reading."""
        rows = self.results if target is None else self.results[self.results["target"] == target]
        return rows[["method", "target", "layers", "alpha", "attribute", "attribute_lo", "attribute_hi",
                     "coherence", "reached"]].reset_index(drop=True)

    def test_scores(self, method: str, target: str, metric: str = "attribute") -> pd.Series:
        """Per-question mean ``metric`` of ``method`` on the test questions at the strength chosen for
        ``target`` (index: the questions, in the order they were asked); empty when not measured."""
        if metric not in JUDGED:
            raise ValueError(f"metric must be one of {JUDGED}, got {metric!r}")
        rows = self.results[(self.results["method"] == method) & (self.results["target"] == target)]
        if rows.empty:
            raise ValueError(f"no result for method {method!r} at target {target!r}; methods: "
                             f"{sorted(set(self.results['method']))}, targets: {sorted(set(self.results['target']))}")
        alpha = rows["alpha"].iloc[0]
        if pd.isna(alpha):
            if rows["layers"].iloc[0]:  # a steerer whose search found no strength
                return pd.Series(dtype=float)
            alpha = 0.0
        part = self.samples[(self.samples["method"] == method) & (self.samples["split"] == "test")
                            & (self.samples["alpha"] == float(alpha))]
        questions = list(dict.fromkeys(part["question"]))
        return pd.Series(per_question(part[metric].astype(float).to_numpy(), part["question"].tolist()),
                         index=questions, dtype=float)

    def differences(self, contrasts: Sequence[tuple[str, str]] | None = None, metric: str = "attribute") -> pd.DataFrame:
        """Paired bootstrap intervals of ``a - b`` for each contrast at each target.

        Both methods answered the same test questions with the same seeds; each question's
        difference of per-question means is one unit, and the bootstrap resamples questions
        (:func:`workbench.evaluation.statistics.paired_bootstrap`, ``n_boot`` and ``seed`` of the
        comparison's config).

        Args:
            contrasts: ``(a, b)`` method names (default :func:`default_contrasts`: every method
                minus the prompt, PSR minus the constant vector).
            metric: ``"attribute"`` (default) or ``"coherence"``.
        Returns:
            Columns :data:`DIFFERENCE_COLUMNS`; ``verdict`` is ``"<a> beats <b>"``, ``"<b> beats <a>"``,
            ``"not separable at this n"`` or ``"not measured"``.
        """
        names = list(dict.fromkeys(self.results["method"]))
        contrasts = default_contrasts(names) if contrasts is None else [tuple(c) for c in contrasts]
        for pair in contrasts:
            unknown = [m for m in pair if m not in names]
            if len(pair) != 2 or unknown:
                raise ValueError(f"a contrast is two method names of {names}; got {pair!r}")
        config = self.meta.get("config", {})
        n_boot, seed = int(config.get("n_boot", 2000)), int(config.get("seed", 0))
        rows = []
        for target in dict.fromkeys(self.results["target"]):
            for a, b in contrasts:
                sa, sb = self.test_scores(a, target, metric), self.test_scores(b, target, metric)
                if len(sa) and len(sb) and list(sa.index) != list(sb.index):
                    raise ValueError(f"{a!r} and {b!r} were not scored on the same test questions; "
                                     "a paired difference needs the same questions in the same order")
                if len(sa) and len(sb):
                    diff = paired_bootstrap(sa.to_numpy(), sb.to_numpy(), names=(a, b), n_boot=n_boot, seed=seed)
                else:
                    diff = paired_bootstrap([math.nan], [math.nan], names=(a, b), n_boot=1)
                alphas = [self.results[(self.results["method"] == m) & (self.results["target"] == target)]["alpha"].iloc[0]
                          for m in (a, b)]
                rows.append({"target": target, "a": a, "b": b, "metric": metric, "alpha_a": alphas[0],
                             "alpha_b": alphas[1], "difference": diff.mean, "lo": diff.lo, "hi": diff.hi, "n": diff.n,
                             "verdict": diff.verdict})
        return pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)

    def save(self, directory: str | Path) -> Path:
        """Write ``results.csv``, ``differences.csv`` (paired intervals, :meth:`differences`),
        ``sweep.csv``, ``samples.csv`` and ``comparison.json`` (atomically)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        differences = self.differences() if len(self.samples) else pd.DataFrame(columns=DIFFERENCE_COLUMNS)
        for name, frame in (("results", self.results), ("differences", differences), ("sweep", self.sweep),
                            ("samples", self.samples)):
            atomic_write_bytes(out / f"{name}.csv", frame.to_csv(index=False, float_format="%.6g").encode("utf-8"))
        searches = {f"{m} @ {t}": {**asdict(r), "trace": [list(p) for p in r.trace]} for (m, t), r in self.searches.items()}
        atomic_write_json(out / "comparison.json", {"meta": self.meta, "searches": searches})
        return out


EVAL_CACHE_VERSION = 2  # 2: judges keyed by their behaviour's fingerprint


def steerer_fingerprint(steerer) -> str:
    """A short hash of a steerer's parameters and description (what its answers depend on)."""
    params = {name: tensor.detach().float().cpu() for name, tensor in steerer.params().items()}
    return fingerprint(steerer.info.method, steerer.info.scope, list(steerer.layers), params)


def _mean(values: Sequence[float | None]) -> float:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(present)) if present else math.nan


JUDGED = ("attribute", "coherence")


def _failed(score) -> bool:
    """Whether a judge made no judgement (``Score.failed``), as opposed to judging "no score"."""
    return bool(getattr(score, "failed", False))


class Unscored(ValueError):
    """The coherence judge scored none of the answers of an evaluation: there is no mean to search on."""


class Evaluator:
    """Generates and judges answers for methods at strengths, remembering every evaluation.

    ``evaluate(method, alpha, split)`` is cached by ``(method name, alpha, split)``, so the two
    searches of a method (C80 and Cp) share their evaluations, and a notebook can call it freely.
    """

    def __init__(self, model: LoadedModel, attribute: Attribute | str, config: EvalConfig = EvalConfig(), *,
                 attribute_judge: Judge | None = None, coherence_judge: Judge | None = None,
                 cache_dir: str | Path | None = None) -> None:
        self.model = model
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.attribute = load_attribute(attribute)
        self.config = check_instance("config", config, EvalConfig)
        if not 0 <= config.instruction < len(self.attribute.instructions):
            raise ValueError(f"instruction index {config.instruction} is out of range: attribute "
                             f"{self.attribute.name!r} has {len(self.attribute.instructions)} instructions")
        self.attribute_judge = attribute_judge or self.attribute.judge
        self.coherence_judge = coherence_judge or CoherenceJudge(logprob_fn=logprob_fn(model))
        # what stands for the judges in every evaluation's key, computed once (it reads their code)
        self.judge_keys = (judge_fingerprint(self.attribute_judge), judge_fingerprint(self.coherence_judge))
        self.questions = {
            "validation": self._questions("validation", config.n_validation),
            "test": self._questions("test", config.n_test),
        }
        self._cache: dict[tuple[str, float, str], pd.DataFrame] = {}  # by (method name, alpha, split)
        self._runs: dict[tuple, pd.DataFrame] = {}  # the generations behind them, shared where identical
        self._names: dict[str, Method] = {}

    def _questions(self, split: str, n: int | None) -> tuple[str, ...]:
        questions = self.attribute.questions(split)
        if not questions:
            raise ValueError(f"attribute {self.attribute.name!r} has no {split} questions")
        return questions if n is None else questions[:n]

    @property
    def instruction(self) -> str:
        return self.attribute.instructions[self.config.instruction]

    def evaluate(self, method: Method, alpha: float, split: str) -> pd.DataFrame:
        """Answers and judge scores for ``method`` at ``alpha`` on ``split`` (one row per question)."""
        if split not in self.questions:
            raise ValueError(f"unknown split {split!r}; expected 'validation' or 'test'")
        seen = self._names.setdefault(method.name, method)
        if seen is not method and (seen.steerer is not method.steerer or seen.prompt != method.prompt):
            raise ValueError(f"two different methods are both called {method.name!r}")
        alpha = float(alpha) if method.has_knob else 0.0
        key = (method.name, alpha, split)
        if key not in self._cache:
            if method.has_knob and alpha != 0:
                frame = self._load_or_run(method, alpha, split)
            else:  # no steerer acting (alpha 0 is exactly the unsteered model): one run shared by every method
                frame = self._load_or_run(Method("prompt" if method.prompt else "no steering", prompt=method.prompt),
                                          0.0, split)
            self._cache[key] = frame.assign(method=method.name, alpha=alpha)
        return self._cache[key]

    def _load_or_run(self, method: Method, alpha: float, split: str) -> pd.DataFrame:
        key = (method.name, method.prompt, alpha, split)
        if key not in self._runs:
            path = self._disk_path(method, alpha, split)
            if path is None:
                self._runs[key] = self._run(method, alpha, split)
                return self._runs[key]
            # one writer per evaluation directory: a second process waits, then reads what the first stored
            with directory_lock(path.parent, purpose=f"evaluating {method.name} at alpha {alpha:g} ({split})"):
                stored = read_cached(path)
                if stored is not None:
                    frame, rejudged = self._judge_failed_again(stored)
                    if rejudged:
                        write_cached(path, frame)
                else:
                    frame = self._run(method, alpha, split)
                    write_cached(path, frame)
            self._runs[key] = frame
        return self._runs[key]

    def _judge_failed_again(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
        """A stored evaluation with the judgements that failed last time made again (the answers
        are kept). In a file written before failures were flagged, every missing score is judged
        again: an LLM judge's own "no score" comes back from its HTTP cache without a request."""
        frame = frame.copy()
        rejudged = False
        for column, judge in zip(JUDGED, (self.attribute_judge, self.coherence_judge)):
            flag = f"{column}_failed"
            if flag in frame:
                todo = frame.index[frame[flag].astype(bool)]
            else:
                todo = frame.index[frame[column].isna()]
                frame[flag] = False
            if len(todo) == 0:
                continue
            scores = judge.score_batch(frame.loc[todo, "question"].tolist(), frame.loc[todo, "response"].tolist())
            frame[column] = frame[column].astype(object)
            for row, score in zip(todo, scores):
                frame.at[row, column] = score.value
                frame.at[row, f"{column}_reason"] = score.reason
                frame.at[row, flag] = _failed(score)
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
            rejudged = True
        return frame, rejudged

    def _disk_path(self, method: Method, alpha: float, split: str) -> Path | None:
        """Where an evaluation is kept on disk: named by everything that determines its answers
        and scores (model, attribute, steerer parameters, prompt, alpha, questions, sampling, judges)."""
        if self.cache_dir is None:
            return None
        c = self.config
        digest = fingerprint(
            EVAL_CACHE_VERSION, GENERATION_VERSION, self.model.model_id, self.attribute.name, method.name, method.prompt,
            steerer_fingerprint(method.steerer) if method.steerer is not None else None, alpha, split,
            list(self.questions[split]), self.instruction if method.prompt else None,
            [c.max_new_tokens, c.temperature, c.top_p, c.seed],
            *self.judge_keys,
            *([c.samples_per_question] if c.samples_per_question != 1 else []), length=20,
        )
        return self.cache_dir / f"{digest}.parquet"

    def _run(self, method: Method, alpha: float, split: str) -> pd.DataFrame:
        asked = list(self.questions[split])
        steerers = [(method.steerer, alpha)] if method.has_knob and alpha != 0 else []
        questions, texts, sample = [], [], []
        for j, seed in enumerate(sample_seeds(self.config)):  # sample-major: sample 0 is the 1-sample run
            answers = generate_answers(
                self.model, asked, instruction=self.instruction if method.prompt else None, steerers=steerers,
                config=self.config.sampling, seed=seed, batch_size=self.config.batch_size,
                record_lambdas=False, progress=False,
            )
            questions += asked
            texts += [a.text for a in answers]
            sample += [j] * len(asked)
        attr = self.attribute_judge.score_batch(questions, texts)
        coh = self.coherence_judge.score_batch(questions, texts)
        extra = {"sample": sample} if self.config.samples_per_question > 1 else {}
        return pd.DataFrame({
            "method": method.name, "split": split, "alpha": alpha, "question": questions, **extra, "response": texts,
            "attribute": [s.value for s in attr], "coherence": [s.value for s in coh],
            "attribute_reason": [s.reason for s in attr], "coherence_reason": [s.reason for s in coh],
            "attribute_failed": [_failed(s) for s in attr], "coherence_failed": [_failed(s) for s in coh],
        })

    def mean_coherence(self, method: Method, alpha: float, split: str = "validation") -> float:
        """Mean coherence of an evaluation; :class:`Unscored` (a ``ValueError``) when no answer has one."""
        frame = self.evaluate(method, alpha, split)
        mean = _mean(frame["coherence"].tolist())
        if math.isnan(mean):
            reasons = sorted(set(frame["coherence_reason"]))
            raise Unscored(f"the coherence judge scored none of the {len(frame)} answers of {method.name!r} at "
                           f"alpha={alpha}: {reasons[:3]}")
        return mean

    def search(self, method: Method, target: float) -> SearchResult:
        """The strongest ``alpha`` with validation coherence within ``tol`` of ``target``."""
        if not method.has_knob:
            raise ValueError(f"{method.name!r} has no strength to search (no steerer)")
        c = self.config
        return find_alpha(lambda a: self.mean_coherence(method, a), target, alpha_start=c.alpha_start,
                          alpha_max=c.alpha_max, tol=c.tol, max_steps=c.max_steps)

    def summary_row(self, method: Method, alpha: float, split: str = "test") -> dict:
        """Means and bootstrap CIs of the attribute and coherence scores of one evaluation, over
        per-question means (``n``: questions; ``n_missing``: answers without a judgement)."""
        frame = self.evaluate(method, alpha, split)
        several = "sample" in frame  # one answer per question: each answer is its question's unit
        row = {"n": frame["question"].nunique() if several else len(frame)}
        missing = 0
        for column in ("attribute", "coherence"):
            scores = pd.to_numeric(frame[column], errors="coerce").astype(float)
            missing = max(missing, int(scores.isna().sum()))
            means = per_question(scores.to_numpy(), frame["question"].tolist()) if several else scores.to_numpy()
            values = [float(v) for v in means if not math.isnan(v)]
            lo, hi = bootstrap_ci(values, self.config.n_boot, seed=self.config.seed) if values else (math.nan, math.nan)
            row.update({column: _mean(values), f"{column}_lo": lo, f"{column}_hi": hi})
        row["n_missing"] = missing
        return row

    def sweep(self) -> pd.DataFrame:
        """Every evaluation made so far, one row each (means over its questions)."""
        rows = []
        for (name, alpha, split), frame in self._cache.items():
            rows.append({"method": name, "split": split, "alpha": alpha, "attribute": _mean(frame["attribute"].tolist()),
                         "coherence": _mean(frame["coherence"].tolist()),
                         "n": frame["question"].nunique() if "sample" in frame else len(frame),
                         "n_missing": max(int(frame[column].isna().sum()) for column in JUDGED)})
        return pd.DataFrame(rows, columns=["method", "split", "alpha", "attribute", "coherence", "n", "n_missing"])

    def samples(self) -> pd.DataFrame:
        return pd.concat(list(self._cache.values()), ignore_index=True) if self._cache else pd.DataFrame()

    def unmeasured_row(self) -> dict:
        """The summary of a method that could not be measured: no scores, every test answer missing."""
        n = len(self.questions["test"])
        row = {"n": n, "n_missing": n * self.config.samples_per_question}
        for column in JUDGED:
            row.update({column: math.nan, f"{column}_lo": math.nan, f"{column}_hi": math.nan})
        return row

    @property
    def n_failed(self) -> int:
        """Judgements that failed (not made) in the evaluations of this run; a rerun makes them again."""
        return sum(int(frame[f"{c}_failed"].sum()) for frame in self._runs.values() for c in JUDGED
                   if f"{c}_failed" in frame)


def compare_methods(
    model: LoadedModel,
    attribute: Attribute | str,
    methods: Sequence[Method] | Mapping[str, object],
    config: EvalConfig = EvalConfig(),
    *,
    attribute_judge: Judge | None = None,
    coherence_judge: Judge | None = None,
    plus_prompt: str | None = None,
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> Comparison:
    """TA@C80 and TA@Cp of every method, in one call.

    Args:
        methods: :class:`Method` objects, or ``{name: steerer}`` (then :func:`standard_methods`
            adds no steering, the prompt and, with ``plus_prompt``, that steerer on the prompt).
        attribute_judge, coherence_judge: default to the offline judges; any
            :class:`workbench.judges.base.Judge` (e.g. :class:`workbench.judges.llm_judges.ScoreJudge`) works;
            missing judgements are counted in ``n_missing`` and warned about, never raised.
        cache_dir: keep every evaluation (answers and scores) there, so that a rerun, or a
            notebook after the demo, judges nothing twice.
    Returns:
        A :class:`Comparison`; ``.results`` is the tidy table.
    """
    if isinstance(methods, Mapping):
        methods = standard_methods(methods, plus_prompt=plus_prompt)
    methods = [check_instance(f"methods[{i}]", m, Method) for i, m in enumerate(methods)]
    if not methods:
        raise ValueError("no methods to compare")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be distinct, got {names}")
    evaluator = Evaluator(model, attribute, config, attribute_judge=attribute_judge,
                          coherence_judge=coherence_judge, cache_dir=cache_dir)
    targets, unmeasured = {}, {}
    for target in config.targets:
        if target == "prompt":
            try:
                targets["Cp"] = evaluator.mean_coherence(Method("prompt", prompt=True) if "prompt" not in names
                                                         else methods[names.index("prompt")], 0.0)
            except Unscored as err:  # no target to search for; the sweep goes on
                targets["Cp"] = math.nan
                unmeasured["Cp"] = f"the prompt's own coherence could not be measured ({err})"
        else:
            targets[target_label(target)] = float(target)
    rows, searches, problems = [], {}, []
    bar = tqdm(methods, desc="comparing methods", disable=not progress, leave=False)
    for method in bar:
        bar.set_postfix_str(method.name)
        for label, value in targets.items():
            note, alpha, reached, summary = "", 0.0, True, None
            if method.has_knob:
                try:
                    if label in unmeasured:
                        raise Unscored(unmeasured[label])
                    found = evaluator.search(method, value)
                except Unscored as err:  # reported in the row and warned about, not raised
                    alpha, reached, note, summary = math.nan, False, f"not measured: {err}", evaluator.unmeasured_row()
                    problems.append(f"{method.name} @ {label}")
                else:
                    searches[(method.name, label)] = found
                    alpha, reached, note = found.alpha, found.reached, found.reason
            rows.append({"method": method.name, "target": label, "target_coherence": value, "layers": method.layers,
                         "alpha": alpha if method.has_knob else math.nan, "reached": reached,
                         **(summary or evaluator.summary_row(method, alpha)), "seed": config.seed, "note": note})
    results = pd.DataFrame(rows)[RESULT_COLUMNS]
    failed = evaluator.n_failed
    if failed or problems:
        told = [f"{int(results['n_missing'].sum())} answers of the results table have no judgement (column n_missing)"]
        if failed:
            told.append(f"{failed} judgements failed (the judge was unreachable or answered with an error; see the "
                        "reasons in .samples); they are not stored as results, and a rerun with the same cache_dir "
                        "judges those answers again")
        if problems:
            told.append("the coherence judge scored none of the answers needed, so these have no alpha (see their "
                        "note): " + ", ".join(problems))
        warnings.warn("; ".join(told), RuntimeWarning, stacklevel=2)
    meta = {
        "model": model.model_id, "attribute": evaluator.attribute.name, "instruction": evaluator.instruction,
        "attribute_judge": describe_judge(evaluator.attribute_judge),
        "coherence_judge": describe_judge(evaluator.coherence_judge),
        "judge_fingerprints": dict(zip(("attribute", "coherence"), evaluator.judge_keys)),
        "targets": targets, "config": {**asdict(config), "targets": list(config.targets)},
        "n_validation": len(evaluator.questions["validation"]), "n_test": len(evaluator.questions["test"]),
    }
    return Comparison(results, evaluator.sweep(), evaluator.samples(), searches, meta)
