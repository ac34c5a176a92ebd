"""One call from an attribute to the paper's two comparisons: TA@C and faithfulness.

:func:`run_experiment` chains the library's steps, each stored under one run directory and
resumed when it is there already (triplets, delta shards, steerers, every judged evaluation and the
faithfulness table):

1. **data** (:func:`prepare_data`): prompt-steered triplets on the attribute's training questions
   (kept when both judges pass), their Delta_PS at every layer (accumulated and local), and
   held-out triplets on the test questions with a paraphrased instruction ``x''`` beside them;
2. **steerers** (:func:`train_methods`): every method named in the config, e.g. Const-DiM,
   Const-MSE and S-PSR at one layer on the accumulated deltas, A-PSR at every layer on the local
   deltas (layer by layer, or ``"A-PSR (joint)"`` through the model), PSR-LL on the likelihood;
   and the weight-space methods ``"LoRA r<k>"`` and ``"Fine-tune"`` (:mod:`workbench.steering.weights`),
   trained on the same kept triplets with the same train / validation split (the prompt distilled
   into weights: ``x y'`` without the instruction, loss on ``y'``), ``weight_steps`` steps at most
   with early stopping, checkpointed and resumed under the run directory;
3. **steering at equal coherence** (:func:`workbench.evaluation.comparison.compare_methods`): no steering,
   the prompt, each steerer, and one steerer stacked on the prompt, at the strength whose
   validation coherence is 80 (TA@C80) and the prompt's own (TA@Cp), on the test questions;
4. **faithfulness** (:func:`workbench.evaluation.faithfulness.faithfulness`): relative RMSE per layer on the
   held-out triplets, each steerer at each triplet's soft label (the strength it was trained to
   match the prompt at; Const-DiM, the plain mean delta, and the weight-space adapters, trained at full
   strength, at 1), again at the strength its TA@C80
   search chose (rows ``"<name> @C80"``: the steerer as it is used), and the paraphrase reference.

Everything is seeded by ``config.seed``; the offline judges are the default, and any judge
(:mod:`workbench.judges.llm_judges`) can take their place.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.activations.deltas import extract_deltas, pairs_fingerprint
from workbench.activations.store import DeltaStore
from workbench.core.chat import AlignedPair
from workbench.core.cached import cached, read_cached, write_cached
from workbench.core.checks import check_field, check_instance, check_int, check_number, check_str_sequence
from workbench.core.files import atomic_write_bytes, atomic_write_json
from workbench.core.fingerprint import fingerprint
from workbench.core.locks import directory_lock
from workbench.core.models import LoadedModel
from workbench.core.tensor_files import CorruptFileError
from workbench.data.attributes import Attribute, load_attribute
from workbench.data.triplets import TripletConfig, TripletSet, build_triplets
from workbench.evaluation.comparison import (
    Comparison,
    EvalConfig,
    compare_methods,
    default_contrasts,
    standard_methods,
    steerer_fingerprint,
)
from workbench.evaluation.data_efficiency import efficiency_table, subset_sizes
from workbench.evaluation.faithfulness import faithfulness, paraphrase_pairs
from workbench.judges.base import Judge
from workbench.steering import Steerer, TrainConfig, train_steerer
from workbench.steering.names import WEIGHT_METHODS, parse_method
from workbench.steering.weights import WeightAdapter
from workbench.steering.weights_train import PeakMemory, WeightTrainConfig, train_weights

EXPERIMENT_VERSION = 1
STEERER_CACHE_VERSION = 1
WEIGHTS_CACHE_VERSION = 1


@dataclass(frozen=True)
class ExperimentConfig:
    """Sizes and choices of one experiment (see :meth:`quick` and :meth:`full`).

    Attributes:
        attribute: a bundled attribute name (or pass an :class:`Attribute` to :func:`run_experiment`).
        n_train: training questions (train split; ``None``: all), ``samples_per_question`` each.
        n_heldout: test questions whose prompt-steered answers measure faithfulness.
        max_new_tokens: length of the sampled responses ``y'``.
        layer: where single-layer methods act (``None``: the middle layer).
        methods: steerers to train and compare (names as :func:`~workbench.steering.names.parse_method` reads them).
        plus_prompt: the steerer also stacked on the prompt (``"PSR + prompt"``), or None.
        steps: optimizer steps of iterative fits; ``joint_steps`` for fits through the model.
        weight_steps: optimizer steps (at most; early stopping on validation) of the weight-space
            methods (LoRA, Fine-tune), each a forward and backward pass of the whole model;
            ``weight_lr``: their learning rate (``None``: 1e-3 for LoRA, 2e-5 for a fine-tune).
        evaluation: the strength search and TA@C settings.
    """

    attribute: str = "pirate"
    n_train: int | None = 60
    samples_per_question: int = 1
    n_heldout: int | None = 18
    max_new_tokens: int = 48
    layer: int | None = None
    methods: tuple[str, ...] = ("Const-DiM", "Const-MSE", "S-PSR", "A-PSR")
    plus_prompt: str | None = "A-PSR"
    steps: int = 300
    joint_steps: int = 30
    weight_steps: int = 10
    weight_lr: float | None = None
    seed: int = 0
    batch_size: int = 16
    evaluation: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(check_str_sequence("ExperimentConfig: methods", self.methods)))
        specs = [parse_method(m) for m in self.methods]
        if not specs:
            raise ValueError("an experiment needs at least one steering method")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"method names repeat: {names}")
        if self.plus_prompt is not None and self.plus_prompt not in names:
            raise ValueError(f"plus_prompt {self.plus_prompt!r} is not one of the methods {names}")
        for what in ("n_train", "n_heldout"):
            check_field(self, what, check_int, minimum=1, optional=True)
        for what in ("samples_per_question", "max_new_tokens", "batch_size"):
            check_field(self, what, check_int, minimum=1)
        check_field(self, "layer", check_int, minimum=0, optional=True)  # its depth is checked against the model
        for what in ("steps", "joint_steps", "weight_steps"):
            check_field(self, what, check_int, minimum=0)
        check_field(self, "weight_lr", check_number, above=0, optional=True)
        check_field(self, "seed", check_int)
        check_instance("ExperimentConfig: evaluation", self.evaluation, EvalConfig)
        if self.plus_prompt is not None and parse_method(self.plus_prompt).weight_space:
            raise ValueError(f"plus_prompt {self.plus_prompt!r}: stack a steerer on the prompt, not a weight-space adapter")

    @classmethod
    def quick(cls, **overrides) -> "ExperimentConfig":
        """The demo's size: minutes on a 2-core CPU."""
        return replace(cls(), **overrides)

    @classmethod
    def full(cls, **overrides) -> "ExperimentConfig":
        """Every training question twice, all validation and test questions, more methods
        (joint A-PSR, rank 4, PSR-LL, all-layer constants): an hour or more on a 2-core CPU."""
        base = cls(n_train=None, samples_per_question=2, n_heldout=None, max_new_tokens=64, steps=1000,
                   joint_steps=100,
                   methods=("Const-DiM", "Const-MSE", "A-Const-DiM", "S-PSR", "S-PSR-LL", "A-PSR", "A-PSR r4",
                            "A-PSR (joint)"),
                   evaluation=EvalConfig(n_validation=None, n_test=None, max_new_tokens=64, max_steps=10))
        return replace(base, **overrides)

    @classmethod
    def notebook(cls, **overrides) -> "ExperimentConfig":
        """The notebooks' size: small enough that all eight notebooks run in minutes on a 2-core CPU
        (40 training and 12 held-out questions, answers of 40 tokens, a short strength search)."""
        base = cls(n_train=40, n_heldout=12, max_new_tokens=40, steps=200,
                   evaluation=EvalConfig(n_validation=8, n_test=12, max_new_tokens=40, max_steps=8, tol=4.0,
                                         batch_size=12))
        return replace(base, **overrides)

    def single_layer(self, model: LoadedModel) -> int:
        layer = model.n_layers // 2 if self.layer is None else self.layer
        model.check_layers([layer])
        return layer

    @classmethod
    def from_dict(cls, values: Mapping) -> "ExperimentConfig":
        """The inverse of :meth:`to_dict` (e.g. from a run's ``experiment.json``)."""
        values = dict(values)
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown experiment setting(s) {unknown}: written by another version of the workbench?")
        evaluation = dict(values.pop("evaluation", {}))
        if "targets" in evaluation:
            evaluation["targets"] = tuple(evaluation["targets"])
        return cls(**{**values, "methods": tuple(values.get("methods", cls.methods)),
                      "evaluation": EvalConfig(**evaluation)})

    def to_dict(self) -> dict:
        out = asdict(self)
        out["evaluation"] = {**asdict(self.evaluation), "targets": list(self.evaluation.targets)}
        out["methods"] = list(self.methods)
        return out


# --------------------------------------------------------------------------------------------
# 1. data
# --------------------------------------------------------------------------------------------


@dataclass
class PreparedData:
    """The triplets and deltas an experiment trains and measures on.

    Attributes:
        triplets: training triplets (all samples; ``.kept`` are the training set).
        pairs: the kept training triplets, aligned; sample id ``i`` is ``pairs[i]``.
        store: their Delta_PS (accumulated and local, every layer).
        heldout: triplets on the test questions (faithfulness only).
        heldout_pairs: the kept held-out triplets, aligned ``x y'`` / ``x' y'``.
        paraphrase_pairs: the same responses after the paraphrase ``x''`` (or None when the
            attribute has no paraphrase).
    """

    attribute: Attribute
    triplets: TripletSet
    pairs: list[AlignedPair]
    store: DeltaStore
    heldout: TripletSet
    heldout_pairs: list[AlignedPair]
    paraphrase_pairs: list[AlignedPair] | None
    subset: tuple[int, ...] | None = None

    @property
    def soft_labels(self) -> list[float]:
        """Soft label of each training pair (attribute score / 100)."""
        labels = [float(v) for v in self.triplets.kept["soft_label"]]
        return labels if self.subset is None else [labels[i] for i in self.subset]

    @property
    def heldout_labels(self) -> list[float]:
        return [float(v) for v in self.heldout.kept["soft_label"]]


def prepare_data(model: LoadedModel, attribute: Attribute | str, directory: str | Path,
                 config: ExperimentConfig = ExperimentConfig(), *, triplet_coherence: Judge | None = None,
                 progress: bool = True) -> PreparedData:
    """Sample (or reload) the training and held-out triplets and extract the training deltas.

    ``triplet_coherence``: the coherence judge that decides which triplets are kept (default:
    the offline heuristics blended with the model's likelihood).
    """
    attribute = load_attribute(attribute)
    directory = Path(directory)
    common = dict(max_new_tokens=config.max_new_tokens, seed=config.seed, batch_size=config.batch_size)
    triplets = build_triplets(model, attribute, directory / "triplets",
                              TripletConfig(split="train", n_questions=config.n_train,
                                            samples_per_question=config.samples_per_question, **common),
                              coherence=triplet_coherence, progress=progress)
    pairs = triplets.pairs(model.tokenizer)
    if len(pairs) < 2:
        raise RuntimeError(f"only {len(pairs)} of {len(triplets.table)} prompt-steered samples of {attribute.name!r} "
                           "were kept (successful and coherent): too few to train a steerer on")
    store = extract_deltas(model, pairs, directory / "deltas", batch_size=8, progress=progress)
    heldout = build_triplets(model, attribute, directory / "heldout",
                             TripletConfig(split="test", n_questions=config.n_heldout, **common),
                             coherence=triplet_coherence, progress=progress)
    heldout_pairs = heldout.pairs(model.tokenizer)
    if not heldout_pairs:
        raise RuntimeError(f"no held-out prompt-steered sample of {attribute.name!r} was kept; faithfulness needs some")
    paraphrase = None
    if attribute.paraphrases:
        kept = heldout.kept
        paraphrase = paraphrase_pairs(model.tokenizer, list(zip(kept["question"], kept["instruction"], kept["response_ids"])),
                                      attribute.paraphrases[0], placement=heldout.meta["config"]["placement"])
    return PreparedData(attribute, triplets, pairs, store, heldout, heldout_pairs, paraphrase)


def subset_data(model: LoadedModel, data: PreparedData, n: int, directory: str | Path, *, seed: int = 0,
                progress: bool = True) -> PreparedData:
    """``data`` trained on ``n`` of its kept triplets only: the first ``n`` of a permutation seeded by
    ``seed`` (so the subsets of one seed are nested: the 8 are among the 16), with their deltas
    extracted again into ``directory`` (cheap: ``n`` pairs). The held-out data stay the same."""
    total = len(data.pairs) if data.subset is None else len(data.subset)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= total:
        raise ValueError(f"a subset needs 1 <= n <= {total} kept triplets, got {n!r}")
    if data.subset is not None:
        raise ValueError("subset_data takes the full prepared data, not a subset of it")
    order = sorted(torch.randperm(total, generator=torch.Generator().manual_seed(int(seed))).tolist()[:n])
    pairs = [data.pairs[i] for i in order]
    store = extract_deltas(model, pairs, Path(directory) / "deltas", batch_size=8, progress=progress)
    return replace(data, pairs=pairs, store=store, subset=tuple(order))


# --------------------------------------------------------------------------------------------
# 2. steerers
# --------------------------------------------------------------------------------------------


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def train_methods(model: LoadedModel, data: PreparedData, config: ExperimentConfig = ExperimentConfig(),
                  directory: str | Path | None = None, *, progress: bool = True,
                  costs: dict | None = None) -> dict[str, object]:
    """Train every method of ``config.methods``; with ``directory``, each steerer (or weight-space
    adapter) is saved there and reloaded on a later call made with the same data and settings.

    Weight-space methods checkpoint to ``<directory>/<name>.partial.safetensors`` while training
    and resume from it; one left by a training with other settings is refused (ValueError).
    ``costs``: filled with ``{name: {"seconds", "peak_memory_bytes", "peak_memory"}}``, the training
    time and peak memory measured when each was trained (kept beside the file, so a reload reports
    the numbers of the run that trained it).
    """
    layer = config.single_layer(model)
    out = {}
    bar = tqdm(config.methods, desc="training steerers", disable=not progress, leave=False)
    for name in bar:
        bar.set_postfix_str(name)
        spec = parse_method(name)
        if spec.weight_space:
            if not data.pairs:
                raise ValueError(f"{name}: no kept triplets to train on")
            train_config = WeightTrainConfig(steps=config.weight_steps, lr=config.weight_lr, seed=config.seed)
            key = fingerprint(WEIGHTS_CACHE_VERSION, model.model_id, spec, train_config, pairs_fingerprint(data.pairs))
        else:
            steps = config.joint_steps if spec.training == "joint" else config.steps
            train_config = TrainConfig(steps=steps, seed=config.seed)
            key = fingerprint(STEERER_CACHE_VERSION, model.model_id, spec, layer, train_config,
                              pairs_fingerprint(data.pairs), data.soft_labels)
        path = Path(directory) / f"{_slug(name)}-{key}.safetensors" if directory is not None else None

        def train(name=name, spec=spec, train_config=train_config):
            return _train_one(model, data, name, spec, train_config, layer, directory, progress)

        if path is None:
            out[name], cost = train()
        else:  # one trainer per steerer directory: a second process waits, then loads what the first saved
            with directory_lock(path.parent, purpose=f"training {name}"):
                out[name], cost = _stored_or_trained(path, model, spec.weight_space, train)
        if costs is not None and cost is not None:
            costs[name] = cost
    return out


def _train_one(model: LoadedModel, data: PreparedData, name: str, spec, train_config, layer: int, directory,
               progress: bool):
    """``(steerer or adapter, its measured cost)`` trained from scratch (or from its checkpoint)."""
    t0 = time.perf_counter()
    with PeakMemory(model.device) as memory:
        if spec.weight_space:
            checkpoint = Path(directory) / f"{_slug(name)}.partial.safetensors" if directory is not None else None
            trained = train_weights(model, data.pairs, spec.method, rank=spec.rank, config=train_config,
                                    attribute=data.attribute.name, checkpoint=checkpoint, progress=progress)
        else:
            trained = train_steerer(
                spec.method, model, data.soft_labels, layers=layer if spec.scope == "single" else None,
                store=data.store, pairs=data.pairs, rank=spec.rank, training=spec.training, config=train_config,
                attribute=data.attribute.name, progress=progress)
    cost = {"seconds": round(time.perf_counter() - t0, 2), "peak_memory_bytes": int(memory.peak),
            "peak_memory": memory.how}
    if spec.weight_space:  # a resumed training: its own clock and peak cover every part
        history = trained.info.history
        cost.update(seconds=history["seconds"], peak_memory_bytes=max(cost["peak_memory_bytes"],
                                                                      history["peak_memory_bytes"]))
    return trained, cost


def _stored_or_trained(path: Path, model: LoadedModel, weight_space: bool, train):
    """The steerer (or adapter) stored at ``path`` with its cost, else ``train()``'s, then stored. A file
    that fails its checks is trained again, with a warning naming it; the cost is read beside it."""
    measured = path.with_suffix(".costs.json")
    if path.is_file():
        try:
            return (WeightAdapter.load(path, model) if weight_space else Steerer.load(path, model)), read_cached(measured)
        except CorruptFileError as err:
            warnings.warn(f"{err}; training it again", RuntimeWarning, stacklevel=3)
            path.unlink(missing_ok=True)
    trained, cost = train()
    trained.save(path)
    write_cached(measured, cost)
    return trained, cost


# --------------------------------------------------------------------------------------------
# 3 + 4. the comparisons
# --------------------------------------------------------------------------------------------


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` measured.

    Attributes:
        comparison: TA@C80 / TA@Cp (``.results``), every evaluation (``.sweep``, ``.samples``).
        faithfulness: ``method, layer, rel_rmse`` on the held-out triplets.
        steerers: the trained steerers by method name.
        data: the triplets and deltas.
        meta: model, attribute, config, sizes, timings.
    """

    comparison: Comparison
    faithfulness: pd.DataFrame
    steerers: dict
    data: PreparedData
    meta: dict

    @property
    def results(self) -> pd.DataFrame:
        return self.comparison.results

    def save(self, directory: str | Path) -> Path:
        """``results.csv``, ``faithfulness.csv``, ``sweep.csv``, ``samples.csv``, ``comparison.json``
        and ``experiment.json`` in ``directory`` (each written atomically)."""
        out = self.comparison.save(directory)
        atomic_write_bytes(out / "faithfulness.csv",
                           self.faithfulness.to_csv(index=False, float_format="%.6g").encode("utf-8"))
        atomic_write_json(out / "experiment.json", self.meta)
        return out


def faithfulness_strengths(steerers: Mapping[str, object], labels: Sequence[float]) -> dict[str, tuple]:
    """``{name: (steerer, alpha)}`` for faithfulness: the held-out soft labels, except for
    Const-DiM, whose vector is the plain mean delta (strength 1 is the prompt's average), and the
    weight-space adapters (LoRA, Fine-tune), trained at full strength on every triplet (1)."""
    out = {}
    for name, steerer in steerers.items():
        full = steerer.info.method == "const-dim" or steerer.info.method in WEIGHT_METHODS
        out[name] = (steerer, 1.0 if full else list(labels))
    return out


def _stored_faithfulness(model: LoadedModel, data: PreparedData, measured: Mapping[str, tuple],
                         directory: Path) -> pd.DataFrame:
    """:func:`workbench.evaluation.faithfulness.faithfulness` of ``measured`` on the held-out triplets, kept in
    ``directory`` under a name made of everything it depends on, so a rerun reads it back."""
    key = fingerprint(STEERER_CACHE_VERSION, model.model_id, pairs_fingerprint(data.heldout_pairs),
                      pairs_fingerprint(data.paraphrase_pairs or []),
                      {name: [steerer_fingerprint(s), a if isinstance(a, float) else list(a)]
                       for name, (s, a) in sorted(measured.items())})
    return cached(directory / f"{key}.parquet",
                  lambda: faithfulness(model, data.heldout_pairs, measured, paraphrase=data.paraphrase_pairs))


def strengths_in_use(steerers: Mapping[str, object], results: pd.DataFrame, target: str = "C80") -> dict[str, tuple]:
    """``{"<name> @C80": (steerer, alpha)}``: each steerer at the strength the TA@C search chose for
    ``target``, i.e. as it is used to steer, which may be far from the strength it was trained at."""
    rows = results[(results["target"] == target) & results["method"].isin(list(steerers))]
    return {f"{row.method} @{target}": (steerers[row.method], float(row.alpha)) for row in rows.itertuples()
            if pd.notna(row.alpha)}


def run_experiment(
    model: LoadedModel,
    config: ExperimentConfig = ExperimentConfig(),
    directory: str | Path = "runs/experiment",
    *,
    attribute: Attribute | str | None = None,
    attribute_judge: Judge | None = None,
    coherence_judge: Judge | None = None,
    triplet_coherence: Judge | None = None,
    data: PreparedData | None = None,
    progress: bool = True,
) -> ExperimentResult:
    """Triplets -> deltas -> steerers -> TA@C table and faithfulness curves, resumable in ``directory``.

    Args:
        attribute: overrides ``config.attribute`` (e.g. an attribute made with ``make_attribute``).
        attribute_judge, coherence_judge: judges of the TA@C comparison (default: the offline
            ones); the training triplets are always judged offline, so that an LLM judge only
            changes the measurement, not what is trained.
        triplet_coherence: the coherence judge that keeps training triplets (see :func:`prepare_data`).
        data: what :func:`prepare_data` already returned for this model, attribute, directory and
            config (the demo's heat maps need it first); prepared here otherwise.
    Returns:
        An :class:`ExperimentResult`, also saved to ``directory`` (``results.csv``,
        ``faithfulness.csv``, ...).
    """
    check_instance("config", config, ExperimentConfig)
    config.single_layer(model)  # a layer past the model's depth is refused before anything is sampled
    directory = Path(directory)
    attribute = load_attribute(attribute if attribute is not None else config.attribute)
    times = {}
    t0 = time.perf_counter()
    if data is None:
        data = prepare_data(model, attribute, directory, config, triplet_coherence=triplet_coherence, progress=progress)
    elif data.attribute.name != attribute.name or data.store.model_id != model.model_id:
        raise ValueError(f"the prepared data is of {data.attribute.name!r} on {data.store.model_id!r}, but the "
                         f"experiment is {attribute.name!r} on {model.model_id!r}")
    times["data"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    costs: dict = {}
    steerers = train_methods(model, data, config, directory / "steerers", progress=progress, costs=costs)
    times["training"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    methods = standard_methods(steerers, plus_prompt=config.plus_prompt)
    comparison = compare_methods(model, attribute, methods, config.evaluation, attribute_judge=attribute_judge,
                                 coherence_judge=coherence_judge, progress=progress, cache_dir=directory / "evaluations")
    times["comparison"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    measured = faithfulness_strengths(steerers, data.heldout_labels)
    numeric = [label for label in comparison.meta["targets"] if label != "Cp"]
    if numeric:
        measured.update(strengths_in_use(steerers, comparison.results, numeric[0]))
    faith = _stored_faithfulness(model, data, measured, directory / "faithfulness")
    times["faithfulness"] = time.perf_counter() - t0
    meta = {
        "version": EXPERIMENT_VERSION, "model": model.model_id, "attribute": attribute.name,
        "config": config.to_dict(), "single_layer": config.single_layer(model),
        "n_train_samples": int(len(data.triplets.table)), "n_train_kept": len(data.pairs),
        "n_train_tokens": int(data.store.n_tokens), "n_heldout_kept": len(data.heldout_pairs),
        "paraphrase": attribute.paraphrases[0] if attribute.paraphrases else None,
        "steerers": {name: {"name": s.name, "layers": list(s.layers), "rank": s.rank, "history": s.info.history,
                            "trained_params": sum(int(t.numel()) for t in s.params().values()),
                            "training": costs.get(name)}
                     for name, s in steerers.items()},
        "comparison": comparison.meta, "seconds": {k: round(v, 1) for k, v in times.items()},
    }
    result = ExperimentResult(comparison, faith, steerers, data, meta)
    result.save(directory)
    return result


# --------------------------------------------------------------------------------------------
# 5. data efficiency
# --------------------------------------------------------------------------------------------

EFFICIENCY_METHODS = ("Const-DiM", "A-PSR", "LoRA r8", "Fine-tune")


def run_data_efficiency(model: LoadedModel, data: PreparedData, config: ExperimentConfig = ExperimentConfig(),
                        directory: str | Path = "runs/experiment/efficiency", *,
                        sizes: Sequence[int | None] = (8, 16, 32, None), methods: Sequence[str] = EFFICIENCY_METHODS,
                        target: float = 80.0, attribute_judge: Judge | None = None,
                        coherence_judge: Judge | None = None, progress: bool = True,
                        shared_run: str | Path | None = None) -> pd.DataFrame:
    """TA@C (``target``) of the prompt and of each of ``methods`` trained on ``sizes`` kept triplets.

    Each size below the number kept trains every method on a nested subset of the kept triplets
    (:func:`subset_data`, seeded by ``config.seed``: the same seeds and settings at every size; a
    size above the number kept is left out, ``None`` is all of them), then compares them with no
    steering and the prompt at equal coherence on ``config.evaluation``'s questions. Everything is
    stored under ``directory`` and resumed (steerers, adapters, evaluations shared across sizes).

    ``shared_run``: the :func:`run_experiment` directory these data were prepared for. Its steerers
    (for all kept triplets) and its evaluation cache are used instead of new ones, so that what
    the experiment already measured (no steering, the prompt, its methods on all triplets) is read,
    not recomputed: files are named by content, so only identical work is shared.

    Returns:
        :func:`workbench.evaluation.data_efficiency.efficiency_table` (method, n_train, TA and its
        interval, coherence, n); ``attrs["training"]`` holds ``{n_train: {method: cost}}`` and
        ``attrs["differences"]`` the paired differences at each size (every method minus the
        prompt, A-PSR minus every other method; :meth:`Comparison.differences` columns plus
        ``n_train``), also written as ``differences.csv`` beside ``efficiency.csv``.
    """
    if data.subset is not None:
        raise ValueError("run_data_efficiency takes the full prepared data, not a subset of it")
    if not data.pairs:
        raise ValueError("no kept triplets to train on")
    directory = Path(directory)
    chosen = subset_sizes(len(data.pairs), sizes)
    evaluations = Path(shared_run) / "evaluations" if shared_run is not None else directory / "evaluations"
    run_config = replace(config, methods=tuple(methods), plus_prompt=None,
                         evaluation=replace(config.evaluation, targets=(float(target),)))
    results, training, differences = {}, {}, []
    for size in tqdm(chosen, desc="data efficiency", disable=not progress, leave=False):
        part = data if size == len(data.pairs) else subset_data(model, data, size, directory / f"n{size}",
                                                                seed=config.seed, progress=progress)
        costs: dict = {}
        everything = size == len(data.pairs) and shared_run is not None
        steerer_dir = Path(shared_run) / "steerers" if everything else directory / f"n{size}" / "steerers"
        steerers = train_methods(model, part, run_config, steerer_dir, progress=progress, costs=costs)
        comparison = compare_methods(model, data.attribute, standard_methods(steerers), run_config.evaluation,
                                     attribute_judge=attribute_judge, coherence_judge=coherence_judge,
                                     progress=progress, cache_dir=evaluations)
        results[size], training[size] = comparison.results, costs
        names = list(dict.fromkeys(comparison.results["method"]))
        against_psr = [("A-PSR", m) for m in names if m not in ("A-PSR", "prompt", "no steering")] \
            if "A-PSR" in names else []
        contrasts = list(dict.fromkeys(default_contrasts(names) + against_psr))
        differences.append(comparison.differences(contrasts).assign(n_train=size))
    table = efficiency_table(results, len(data.pairs), target=f"C{float(target):g}")
    table.attrs["training"] = training
    table.attrs["differences"] = pd.concat(differences, ignore_index=True)
    atomic_write_bytes(directory / "differences.csv",
                       table.attrs["differences"].to_csv(index=False, float_format="%.6g").encode("utf-8"))
    buffer = table.to_csv(index=False, float_format="%.6g").encode("utf-8")
    atomic_write_bytes(directory / "efficiency.csv", buffer)
    return table
