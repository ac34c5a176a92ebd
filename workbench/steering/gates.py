"""Policy gates: per conversation, whether a steerer acts (conditional steering, as CAST does).

A gate looks at each row of a batch before the first generated token and answers one
:class:`~workbench.core.intervention.RowDecision` per row: a weight in [0, 1] (0: leave this row alone),
the gate's score, and an error when it failed on that row. Built in:

- :class:`ActivationGate`: a condition direction read at one layer (``blocks.{l}.hook_resid_post``)
  from the prompt's activations pooled over its tokens (``"mean"`` of every real prompt token, or
  the ``"last"`` one, the end of the assistant header); the score is the cosine similarity of the
  pooled activation, centred between the two classes, with the direction; the row is flagged when
  ``score > threshold`` (comparator ``">"``) or ``score < threshold`` (``"<"``). The direction is
  learned from two sets of prompts by :func:`learn_direction` (difference of the class means, or the
  first principal component as CAST does), and :func:`search_gate` chooses layer x threshold x
  comparator by F1 on validation prompts;
- :class:`TextGate`: any callable on the prompt text (a keyword rule, an offline judge, an LLM
  judge) returning a bool or a strength in [0, 1]; a call that raises fails that row only;
- :class:`AnyGate` / :class:`AllGate` (``g1 | g2``, ``g1 & g2``): composition.

``gate.then(steerer.at(alpha))`` is a rule, "if gate G then steerer S": a :class:`GatedSteerer`
that :func:`workbench.core.generation.generate` takes in ``steerers=[...]`` like a steerer at a
strength; several rules act at once. Activation gates save as one safetensors file (the direction
and centre, plus JSON metadata with the model and the format version); a rule saves as a directory
with the gate, the steerer and the strength.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from workbench.core.chat import prompt_ids
from workbench.core.checked_files import read_json, write_json
from workbench.core.files import package_version
from workbench.core.tensor_files import TensorFile, write_tensor_file
from workbench.core.generation import left_pad, read_prompt_resid
from workbench.core.intervention import GateInputs, RowDecision, pool_prompt
from workbench.steering.steerer import Steerer, SteererAt, load_steerer

GATE_FORMAT_VERSION = 2  # 2: checksums
META_KEY = "workbench_gate"
RULE_FORMAT_VERSION = 2  # 2: checksum
COMPARATORS = (">", "<")
POOLS = ("mean", "last")
DIRECTION_METHODS = ("mean-diff", "pca")


# --------------------------------------------------------------------------------------------
# the interface and composition
# --------------------------------------------------------------------------------------------


class Gate:
    """A policy: one :class:`RowDecision` per row of a batch. Subclasses define :meth:`decide`."""

    name: str = "gate"

    def decide(self, inputs: GateInputs) -> list[RowDecision]:
        raise NotImplementedError

    @property
    def gate_layers(self) -> tuple[int, ...]:
        """The layers whose prompt activations this gate reads (read in one forward per batch)."""
        return ()

    def models(self) -> set[tuple]:
        """``(model_id, d_model, n_layers)`` of every model this gate was made for (empty: any)."""
        return set()

    def check_model(self, model) -> None:
        """Refuse a model other than the one the gate was learned on, naming both."""
        theirs = (model.model_id, model.d_model, model.n_layers)
        for ours in self.models():
            if ours != theirs:
                raise ValueError(f"gate {self.name!r} was learned on {ours[0]!r} (d_model {ours[1]}, {ours[2]} layers) "
                                 f"but the model is {theirs[0]!r} (d_model {theirs[1]}, {theirs[2]} layers)")

    def then(self, steerer: SteererAt | tuple, name: str | None = None) -> "GatedSteerer":
        """The rule "if this gate then ``steerer``" (a steerer at a strength: ``a_psr.at(1.0)``)."""
        return GatedSteerer(self, steerer, name)

    def __or__(self, other: "Gate") -> "AnyGate":
        return AnyGate([self, other])

    def __and__(self, other: "Gate") -> "AllGate":
        return AllGate([self, other])


class _Composite(Gate):
    combine: Callable[[list[float]], float] = max

    def __init__(self, gates: Sequence[Gate], name: str | None = None) -> None:
        gates = list(gates)
        if not gates or not all(isinstance(g, Gate) for g in gates):
            raise ValueError(f"{type(self).__name__} needs one or more gates, got {gates!r}")
        self.gates = gates
        word = " or " if isinstance(self, AnyGate) else " and "
        self.name = name or "(" + word.join(g.name for g in gates) + ")"

    @property
    def gate_layers(self) -> tuple[int, ...]:
        return tuple(sorted({l for g in self.gates for l in g.gate_layers}))

    def models(self) -> set[tuple]:
        return set().union(*(g.models() for g in self.gates))

    def decide(self, inputs: GateInputs) -> list[RowDecision]:
        parts = [g.decide(inputs) for g in self.gates]
        out = []
        for row in zip(*parts):
            errors = [f"{g.name}: {d.error}" for g, d in zip(self.gates, row) if d.error]
            scores = [d.score for d in row if d.score is not None]
            out.append(RowDecision(self.name, float(type(self).combine([d.weight for d in row])),
                                   float(type(self).combine(scores)) if len(scores) == len(row) else None,
                                   "; ".join(errors) or None))
        return out


class AnyGate(_Composite):
    """Steers a row when any of its gates does (weight: the largest); a failed gate counts as no."""

    combine = max


class AllGate(_Composite):
    """Steers a row only when all of its gates do (weight: the smallest); a failed gate counts as no."""

    combine = min


# --------------------------------------------------------------------------------------------
# text gates
# --------------------------------------------------------------------------------------------


class TextGate(Gate):
    """A gate from any callable on the prompt text: ``fn(text) -> bool | float in [0, 1]``.

    The text is the user question when generation knows it (:func:`generate_answers`), else the
    decoded prompt. A call that raises, or returns something else, fails that row only: its
    decision says why, and the row is not steered.

    Example:
        >>> gate = TextGate(lambda text: "ship" in text.lower(), name="ships")
        >>> [d.steered for d in gate.decide_texts(["A ship!", "A cake."])]
        [True, False]
    """

    def __init__(self, fn: Callable[[str], bool | float], name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"a text gate needs a callable on the prompt text, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "text gate")

    def _one(self, text: str) -> RowDecision:
        try:
            value = self.fn(text)
        except Exception as err:  # a failing rule or judge loses its row, never the batch
            return RowDecision(self.name, 0.0, None, f"{type(err).__name__}: {err}")
        if isinstance(value, (bool, np.bool_)):
            return RowDecision(self.name, float(bool(value)), float(bool(value)))
        if isinstance(value, (int, float, np.number)) and math.isfinite(float(value)) and 0 <= float(value) <= 1:
            return RowDecision(self.name, float(value), float(value))
        return RowDecision(self.name, 0.0, None, f"returned {value!r}; a text gate returns a bool or a number in [0, 1]")

    def decide_texts(self, texts: Sequence[str]) -> list[RowDecision]:
        return [self._one(t) for t in texts]

    def decide(self, inputs: GateInputs) -> list[RowDecision]:
        return self.decide_texts(inputs.texts)


# --------------------------------------------------------------------------------------------
# activation gates
# --------------------------------------------------------------------------------------------


def _check_threshold(threshold: float) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return value


class ActivationGate(Gate):
    """Flags a prompt whose pooled activation at ``layer`` lies along a condition direction.

    ``score = cos(pool(A_layer(prompt)) - center, direction)``, flagged when ``score > threshold``
    (comparator ``">"``) or ``< threshold`` (``"<"``).

    Args:
        direction, center: ``[d_model]``.
        layer: ``blocks.{layer}.hook_resid_post`` (= Hugging Face ``hidden_states[layer + 1]``).
        pool: ``"mean"`` over every real prompt token, or ``"last"`` (the assistant header's end).
        model_id, d_model, n_layers: the model the direction was learned on (checked).
        meta: how it was learned (plain JSON values), saved with it.
    """

    def __init__(self, direction: torch.Tensor, center: torch.Tensor, layer: int, threshold: float,
                 comparator: str = ">", pool: str = "mean", *, model_id: str, d_model: int, n_layers: int,
                 name: str = "activation gate", meta: dict | None = None) -> None:
        if comparator not in COMPARATORS:
            raise ValueError(f"comparator must be one of {COMPARATORS}, got {comparator!r}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if not 0 <= int(layer) < int(n_layers):
            raise ValueError(f"gate layer {layer} is out of range for {model_id!r}, which has layers 0..{n_layers - 1}")
        for what, t in (("direction", direction), ("center", center)):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != (int(d_model),):
                raise ValueError(f"{what} must be a [{d_model}] tensor, got "
                                 f"{list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
        if not bool(torch.isfinite(direction).all()) or float(direction.norm()) == 0:
            raise ValueError("the condition direction must be finite and non-zero")
        self.direction = direction.detach().float().cpu()
        self.center = center.detach().float().cpu()
        self.layer, self.threshold, self.comparator, self.pool = int(layer), _check_threshold(threshold), comparator, pool
        self.model_id, self.d_model, self.n_layers = str(model_id), int(d_model), int(n_layers)
        self.name = name
        self.meta = dict(meta or {})

    def __repr__(self) -> str:
        return (f"<ActivationGate {self.name!r} layer={self.layer} pool={self.pool} score {self.comparator} "
                f"{self.threshold:.4g} model={self.model_id!r}>")

    @property
    def gate_layers(self) -> tuple[int, ...]:
        return (self.layer,)

    def models(self) -> set[tuple]:
        return {(self.model_id, self.d_model, self.n_layers)}

    def with_threshold(self, threshold: float, comparator: str | None = None) -> "ActivationGate":
        """The same direction with another threshold (and comparator)."""
        return ActivationGate(self.direction, self.center, self.layer, threshold, comparator or self.comparator,
                              self.pool, model_id=self.model_id, d_model=self.d_model, n_layers=self.n_layers,
                              name=self.name, meta=self.meta)

    def scores_from_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """``[n, d_model] -> [n]``: the cosine similarity with the direction, after centring."""
        return direction_scores(pooled, self.direction, self.center)

    def flags(self, scores) -> np.ndarray:
        """``[n]`` bool: which scores the gate flags."""
        scores = np.asarray(scores, dtype=float)
        return scores > self.threshold if self.comparator == ">" else scores < self.threshold

    def decide(self, inputs: GateInputs) -> list[RowDecision]:
        scores = self.scores_from_pooled(inputs.pooled(self.layer, self.pool)).tolist()
        return [RowDecision(self.name, float(flag), float(s)) for s, flag in zip(scores, self.flags(scores))]

    def score_texts(self, model, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        """``[n]`` scores of questions (formatted as generation formats them)."""
        self.check_model(model)
        acts = prompt_activations(model, texts, [self.layer], self.pool, batch_size)[:, 0]
        return self.scores_from_pooled(acts).numpy()

    def save(self, path: str | Path) -> Path:
        """One safetensors file (direction, center) with JSON metadata and checksums; written atomically."""
        meta = {"kind": "activation", "name": self.name, "layer": self.layer, "threshold": self.threshold,
                "comparator": self.comparator, "pool": self.pool, "model_id": self.model_id, "d_model": self.d_model,
                "n_layers": self.n_layers, "meta": self.meta}
        try:
            return write_tensor_file(path, {"direction": self.direction, "center": self.center}, meta,
                                     meta_key=META_KEY, format_version=GATE_FORMAT_VERSION)
        except ValueError as err:
            raise ValueError(f"the gate's metadata cannot be saved as JSON ({err}); keep meta plain") from err

    @staticmethod
    def load(path: str | Path, model=None) -> "ActivationGate":
        return load_gate(path, model)


def direction_scores(pooled: torch.Tensor, direction: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """``cos(pooled - center, direction)``: ``[n, d] -> [n]`` float32."""
    x = pooled.float() - center.float()
    return torch.nn.functional.cosine_similarity(x, direction.float()[None], dim=-1)


def load_gate(path: str | Path, model=None) -> ActivationGate:
    """Load an activation gate; with ``model``, refuse one learned on another model.

    Raises:
        FileNotFoundError: no file. ValueError: not a gate file, another format version, or a model mismatch.
    """
    path = Path(path)
    with TensorFile(path, meta_key=META_KEY, format_version=GATE_FORMAT_VERSION, finite=True, what="gate") as fh:
        meta, tensors = fh.meta, fh.read_all()
    if meta.get("kind") != "activation" or set(tensors) != {"direction", "center"}:
        raise ValueError(f"{path} holds a gate of kind {meta.get('kind')!r} with tensors {sorted(tensors)}; expected an "
                         "activation gate with direction and center")
    gate = ActivationGate(tensors["direction"], tensors["center"], meta["layer"], meta["threshold"], meta["comparator"],
                          meta["pool"], model_id=meta["model_id"], d_model=meta["d_model"], n_layers=meta["n_layers"],
                          name=meta["name"], meta=meta.get("meta", {}))
    if model is not None:
        gate.check_model(model)
    return gate


# --------------------------------------------------------------------------------------------
# learning the direction and searching the gate
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def prompt_activations(model, texts: Sequence[str], layers: Sequence[int] | None = None, pool: str = "mean",
                       batch_size: int = 16) -> torch.Tensor:
    """Pooled prompt activations of questions, formatted as generation formats them (no instruction).

    Returns:
        ``[n, len(layers), d_model]`` float32 on the CPU (``layers=None``: every layer).
    """
    texts = list(texts)
    if not texts:
        raise ValueError("no prompts to read activations from")
    layers = model.check_layers(layers)
    prompts = [prompt_ids(model.tokenizer, t)[0] for t in texts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out = torch.zeros((len(texts), len(layers), model.d_model))
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        ids, mask = left_pad([prompts[i] for i in batch], model.tokenizer.pad_token_id)
        resid = read_prompt_resid(model, ids.to(model.device), mask.to(model.device), layers)
        for k, layer in enumerate(layers):
            out[batch, k] = pool_prompt(resid[layer], mask, pool).cpu()
    return out


def learn_direction(positive: torch.Tensor, negative: torch.Tensor, method: str = "mean-diff") -> tuple[torch.Tensor, torch.Tensor]:
    """The condition direction and centre from pooled activations ``[n, d]`` of the two sides.

    ``"mean-diff"``: ``mean(positive) - mean(negative)``; ``"pca"``: the first principal component
    of both sides centred on their common mean (CAST), signed so that positives score higher.
    The centre is the midpoint of the two class means. Returns ``(direction [d], center [d])``.
    """
    if method not in DIRECTION_METHODS:
        raise ValueError(f"method must be one of {DIRECTION_METHODS}, got {method!r}")
    for what, side in (("positive", positive), ("negative", negative)):
        if side.ndim != 2 or side.shape[0] == 0:
            raise ValueError(f"the {what} prompt set is empty (need [n >= 1, d_model] activations)")
    mu_p, mu_n = positive.float().mean(0), negative.float().mean(0)
    center = (mu_p + mu_n) / 2
    diff = mu_p - mu_n
    if method == "mean-diff":
        return diff, center
    both = torch.cat([positive.float(), negative.float()])
    _, _, v = torch.pca_lowrank(both - both.mean(0), q=1, center=False)
    direction = v[:, 0]
    return (direction if float(direction @ diff) >= 0 else -direction), center


def precision_recall_f1(predicted, truth) -> tuple[float, float, float]:
    """Precision, recall and F1 of bool predictions against bool truth (0 where undefined)."""
    p, t = np.asarray(predicted, dtype=bool), np.asarray(truth, dtype=bool)
    tp = float((p & t).sum())
    precision = tp / p.sum() if p.sum() else 0.0
    recall = tp / t.sum() if t.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(precision), float(recall), float(f1)


def _best_threshold(scores: np.ndarray, truth: np.ndarray, comparators: Sequence[str]) -> dict:
    """Grid over thresholds (midpoints of sorted scores) x comparators; the F1-best, the middle of ties."""
    values = np.unique(scores)
    grid = np.concatenate([[values[0] - 1e-3], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-3]])
    best = None
    for comparator in comparators:
        f1s = np.array([precision_recall_f1(scores > t if comparator == ">" else scores < t, truth)[2] for t in grid])
        tied = np.flatnonzero(f1s == f1s.max())
        threshold = float(grid[tied[len(tied) // 2]])
        if best is None or f1s.max() > best["f1"]:
            pred = scores > threshold if comparator == ">" else scores < threshold
            p, r, f = precision_recall_f1(pred, truth)
            best = {"threshold": threshold, "comparator": comparator, "precision": p, "recall": r, "f1": f}
    return best


@dataclass(frozen=True)
class GateSearch:
    """The outcome of :func:`search_gate`.

    Attributes:
        gate: the best gate (layer, threshold, comparator by validation F1).
        table: one row per layer (and pool): its best threshold and comparator, validation precision,
            recall, F1 and separation (the difference of the class mean scores over their pooled sd).
    """

    gate: ActivationGate
    table: pd.DataFrame


def search_gate(model, positive: Sequence[str], negative: Sequence[str], val_positive: Sequence[str],
                val_negative: Sequence[str], *, layers: Sequence[int] | None = None, pools: Sequence[str] = ("mean",),
                method: str = "mean-diff", comparators: Sequence[str] = COMPARATORS, name: str = "activation gate",
                batch_size: int = 16) -> GateSearch:
    """Learn the condition direction at each layer from the training prompts, and choose
    layer x threshold x comparator (x pool) by F1 on the validation prompts (ties: the larger separation).

    Each prompt set must be non-empty; ``layers=None`` searches every layer.
    """
    sets = {"positive": positive, "negative": negative, "validation positive": val_positive,
            "validation negative": val_negative}
    for what, texts in sets.items():
        if isinstance(texts, str) or not list(texts):
            raise ValueError(f"the {what} prompt set is empty; every side needs prompts (a list of questions)")
    bad = [c for c in comparators if c not in COMPARATORS]
    if bad or not comparators:
        raise ValueError(f"comparators must be among {COMPARATORS}, got {list(comparators)}")
    layers = model.check_layers(layers)
    rows, best = [], None
    for pool in pools:
        acts = {k: prompt_activations(model, v, layers, pool, batch_size) for k, v in sets.items()}
        truth = np.r_[np.ones(len(val_positive), bool), np.zeros(len(val_negative), bool)]
        for k, layer in enumerate(layers):
            direction, center = learn_direction(acts["positive"][:, k], acts["negative"][:, k], method)
            val = torch.cat([acts["validation positive"][:, k], acts["validation negative"][:, k]])
            scores = direction_scores(val, direction, center).numpy().astype(float)
            pos, neg = scores[truth], scores[~truth]
            sd = math.sqrt((pos.var() + neg.var()) / 2) or 1e-12
            row = {"layer": layer, "pool": pool, **_best_threshold(scores, truth, comparators),
                   "separation": float((pos.mean() - neg.mean()) / sd)}
            rows.append(row)
            if best is None or (row["f1"], abs(row["separation"])) > (best[0]["f1"], abs(best[0]["separation"])):
                best = (row, direction, center)
    row, direction, center = best
    meta = {"method": method, "n_train": [len(positive), len(negative)],
            "n_validation": [len(val_positive), len(val_negative)],
            "validation": {k: row[k] for k in ("precision", "recall", "f1", "separation")}}
    gate = ActivationGate(direction, center, row["layer"], row["threshold"], row["comparator"], row["pool"],
                          model_id=model.model_id, d_model=model.d_model, n_layers=model.n_layers, name=name, meta=meta)
    return GateSearch(gate, pd.DataFrame(rows))


def fit_gate(model, positive: Sequence[str], negative: Sequence[str], layer: int, *, pool: str = "mean",
             method: str = "mean-diff", threshold: float | None = None, comparator: str = ">",
             name: str = "activation gate", batch_size: int = 16) -> ActivationGate:
    """An activation gate at one layer; ``threshold=None`` puts it halfway between the class mean scores."""
    for what, texts in (("positive", positive), ("negative", negative)):
        if isinstance(texts, str) or not list(texts):
            raise ValueError(f"the {what} prompt set is empty; every side needs prompts (a list of questions)")
    (layer,) = model.check_layers([layer])
    pos = prompt_activations(model, positive, [layer], pool, batch_size)[:, 0]
    neg = prompt_activations(model, negative, [layer], pool, batch_size)[:, 0]
    direction, center = learn_direction(pos, neg, method)
    if threshold is None:
        threshold = float((direction_scores(pos, direction, center).mean() + direction_scores(neg, direction, center).mean()) / 2)
    return ActivationGate(direction, center, layer, threshold, comparator, pool, model_id=model.model_id,
                          d_model=model.d_model, n_layers=model.n_layers, name=name,
                          meta={"method": method, "n_train": [len(positive), len(negative)]})


# --------------------------------------------------------------------------------------------
# rules: if gate G then steerer S
# --------------------------------------------------------------------------------------------


class GatedSteerer:
    """The rule "if ``gate`` then ``steerer`` at ``alpha``", taken by generation in ``steerers=[...]``.

    Each row gets the gate's weight times ``alpha`` (0: exactly the unsteered tokens, 1: exactly
    the ungated steerer's). Refuses a gate and a steerer made for different models.
    """

    def __init__(self, gate: Gate, steerer: SteererAt | tuple, name: str | None = None) -> None:
        if not isinstance(gate, Gate):
            raise TypeError(f"a rule needs a Gate, got {type(gate).__name__}")
        if isinstance(steerer, Steerer):
            raise TypeError("give the steerer at a strength: gate.then(steerer.at(alpha))")
        s, alpha = steerer
        at = SteererAt(s, alpha)
        info = at.steerer.info
        ours = (info.model_id, info.d_model, info.n_layers)
        for theirs in gate.models():
            if theirs != ours:
                raise ValueError(f"gate {gate.name!r} was learned on {theirs[0]!r} (d_model {theirs[1]}, {theirs[2]} "
                                 f"layers) but steerer {at.steerer.name} was trained on {info.describe_model()}")
        self.gate, self.steerer, self.alpha = gate, at.steerer, at.alpha
        self.name = name or f"if {gate.name} then {at.steerer.name}"

    def __repr__(self) -> str:
        return f"<GatedSteerer {self.name!r}: {self.alpha:g} * {self.steerer!r}>"

    @property
    def gate_layers(self) -> tuple[int, ...]:
        return self.gate.gate_layers

    def check_model(self, model) -> None:
        self.gate.check_model(model)
        self.steerer.check_model(model)

    def decide(self, inputs: GateInputs) -> list[RowDecision]:
        return [RowDecision(self.name, d.weight, d.score, d.error) for d in self.gate.decide(inputs)]

    def ungated(self) -> SteererAt:
        """The same steerer at the same strength, on every row."""
        return self.steerer.at(self.alpha)

    def save(self, directory: str | Path) -> Path:
        """``gate.safetensors``, ``steerer.safetensors`` and ``rule.json`` (strength, name, format) in ``directory``."""
        if not isinstance(self.gate, ActivationGate):
            raise TypeError(f"only activation gates can be saved; {self.gate.name!r} is a {type(self.gate).__name__} "
                            "(a text gate holds Python code: rebuild it and load the steerer)")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.gate.save(directory / "gate.safetensors")
        self.steerer.save(directory / "steerer.safetensors")
        write_json(directory / "rule.json", {"format_version": RULE_FORMAT_VERSION, "alpha": self.alpha,
                                             "name": self.name, "package_version": package_version()})
        return directory

    @staticmethod
    def load(directory: str | Path, model=None) -> "GatedSteerer":
        """Load a saved rule; with ``model``, refuse a gate or steerer made for another model."""
        directory = Path(directory)
        if not (directory / "rule.json").is_file():
            raise FileNotFoundError(f"no saved rule in {directory} (rule.json is missing)")
        meta = read_json(directory / "rule.json")
        if meta.get("format_version") != RULE_FORMAT_VERSION:
            raise ValueError(f"{directory} is rule format {meta.get('format_version')!r}; this workbench reads format "
                             f"{RULE_FORMAT_VERSION}")
        gate = load_gate(directory / "gate.safetensors", model)
        steerer = load_steerer(directory / "steerer.safetensors", model)
        return GatedSteerer(gate, steerer.at(meta["alpha"]), meta.get("name"))
