"""Prompt-steered triplets ``(x, x', y')``: sampled, judged, stored, resumable.

For an attribute and a split, every question is paired with one of the attribute's instructions
(rotating through them), ``y'`` is sampled from ``x'`` in batches, and both judges score it. All
samples are stored, with a ``kept`` flag for the successful coherent ones (both judges >= the
threshold, 50 by default) that do not merely echo the instruction (:mod:`workbench.judges.echo`:
weak and base models often write the instruction out again, which a word-list judge scores as a
perfect persona): their attribute scores become the soft labels ``alpha`` of training. Every other
sample says why in ``rejected`` (``"empty"``, ``"attribute"``, ``"coherence"`` or ``"echo"``, the
first that applies), and :func:`summarize` counts them.

The table (``triplets.parquet``, one row per sample) holds everything needed to rebuild the run:
questions, instructions, placement, prompt and response token ids, scores, seeds and model id.
Each sample has its own seed derived from (seed, question, instruction, sample index), so a
re-run resumes where it stopped and draws the same samples whatever the batching.

The run records the fingerprint of each judge's behaviour (:func:`workbench.judges.base.judge_fingerprint`):
a run directory met again with a changed judge (an edited scorer, another coherence model) keeps
its sampled responses, says which judge changed, and scores them again. Both files are written
atomically with checksums and verified when read; a build holds the directory's lock, so a second
process building the same run waits for the first and then reads its samples.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from workbench.core.chat import PLACEMENTS, AlignedPair, align, base_prompt_text, prompt_ids, resolve_placement
from workbench.core.checked_files import read_frame, read_json, write_frame, write_json
from workbench.core.checks import check_field, check_instance, check_int, check_number
from workbench.core.fingerprint import sample_seed
from workbench.core.generation import GENERATION_VERSION, SamplingConfig, check_sampling_fields, generate
from workbench.core.likelihood import logprob_fn
from workbench.core.locks import directory_lock
from workbench.core.models import LoadedModel
from workbench.core.tensor_files import CorruptFileError
from workbench.data.attributes import SPLITS, Attribute, load_attribute
from workbench.data.echoes import REJECTIONS, VERDICTS, mark_verdicts, rejection
from workbench.judges.base import judge_fingerprint
from workbench.judges.echo import EchoFilter
from workbench.judges.offline import CoherenceJudge

log = logging.getLogger(__name__)

TRIPLETS_FORMAT_VERSION = 1
TABLE_NAME = "triplets.parquet"
META_NAME = "triplets.json"


@dataclass(frozen=True)
class TripletConfig:
    """What to sample. ``n_questions=None`` takes the whole split.

    ``placement``: where the instruction goes, ``"system"``, ``"user"`` or ``"auto"`` (the system
    turn where the chat template has one, else the user turn); the run records the resolved one.
    ``base_system`` is the system message of the base prompt ``x``: ``None`` (default) leaves the
    chat template's own default (SmolLM2 then inserts "You are a helpful AI assistant named SmolLM,
    trained by Hugging Face"), ``""`` sends an explicit empty one; the rendered ``x`` is recorded in
    the run's metadata as ``base_prompt``.
    """

    split: str = "train"
    n_questions: int | None = None
    samples_per_question: int = 1
    placement: str = "auto"
    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    batch_size: int = 16
    threshold: float = 50.0
    base_system: str | None = None

    #: Fields that only say how much to sample: a run directory grows or shrinks along them and
    #: reuses every stored sample (each sample's seed depends on its question, instruction and index).
    GROWABLE = ("n_questions", "samples_per_question", "batch_size")

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"TripletConfig: unknown split {self.split!r}; expected one of {SPLITS}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"unknown instruction placement {self.placement!r}; expected one of {PLACEMENTS}")
        check_field(self, "n_questions", check_int, minimum=1, optional=True)
        check_field(self, "samples_per_question", check_int, minimum=1)
        check_field(self, "seed", check_int)
        check_field(self, "batch_size", check_int, minimum=1)
        check_field(self, "threshold", check_number, minimum=0, maximum=100)
        check_sampling_fields(self)
        if self.base_system is not None and not isinstance(self.base_system, str):
            raise TypeError(f"TripletConfig: base_system must be a string or None, got "
                            f"{type(self.base_system).__name__}")

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.max_new_tokens, self.temperature, self.top_p)


@dataclass
class TripletSet:
    """The triplets of one run: a table with one row per sample, and the run's metadata."""

    table: pd.DataFrame
    meta: dict = field(default_factory=dict)

    @property
    def kept(self) -> pd.DataFrame:
        """The successful, coherent samples (the training data)."""
        return self.table[self.table["kept"]].reset_index(drop=True)

    @property
    def success_rate(self) -> float:
        return float(self.table["kept"].mean()) if len(self.table) else float("nan")

    def pairs(self, tokenizer, only_kept: bool = True) -> list[AlignedPair]:
        """Aligned base / prompt-steered token sequences, one per (kept) row."""
        rows = self.kept if only_kept else self.table
        return [
            align(tokenizer, r.question, r.instruction, list(r.response_ids), placement=r.placement,
                  base_system=self.base_system)
            for r in rows.itertuples()
        ]

    @property
    def base_system(self) -> str | None:
        """The base prompt's system message the run used (None: the chat template's default)."""
        return self.meta.get("config", {}).get("base_system")

    def to_dataset(self):
        """The table as a Hugging Face ``datasets.Dataset``."""
        import datasets  # optional heavy dependency: imported only when this runs

        return datasets.Dataset.from_pandas(self.table, preserve_index=False)

    @classmethod
    def load(cls, directory: str | Path) -> "TripletSet":
        directory = Path(directory)
        meta_path = directory / META_NAME
        if not meta_path.is_file():
            raise FileNotFoundError(f"{directory} holds no triplets ({META_NAME} is missing)")
        meta = read_json(meta_path, legacy_ok=True)  # runs written before checksums are read as they are
        if meta.get("format_version") != TRIPLETS_FORMAT_VERSION:
            raise ValueError(f"{meta_path} is triplet format {meta.get('format_version')!r}, expected {TRIPLETS_FORMAT_VERSION}")
        table_path = directory / TABLE_NAME
        table = read_frame(table_path, legacy_ok=True) if table_path.exists() else _empty_table()
        if "echo" not in table.columns:  # a run stored before the echo filter: its verdicts are redone
            table = mark_verdicts(table, EchoFilter(), meta.get("config", {}).get("threshold", 50.0))
        return cls(table, meta)


_COLUMNS = [
    "attribute", "split", "question_index", "question", "instruction_index", "instruction", "placement",
    "sample_index", "seed", "sample_seed", "model_id", "base_prompt_ids", "steered_prompt_ids", "header_len",
    "response_ids", "response", "attr_score", "attr_reason", "coh_score", "coh_reason", "kept", "soft_label",
    "echo", "rejected",
]
def _empty_table() -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in _COLUMNS})


def _check_same_run(directory: Path, stored: dict, wanted: dict) -> None:
    """Refuse a directory holding another run, naming only what differs; a run may grow or shrink
    along :attr:`TripletConfig.GROWABLE` (its stored samples are reused)."""
    defaults = asdict(TripletConfig())
    differ = [f"{key}: {stored.get(key)!r} there, {wanted[key]!r} here" for key in ("attribute", "model_id", "generation")
              if stored.get(key) != wanted[key]]
    before = {**defaults, **stored.get("config", {})}  # runs written before a field existed used its default
    differ += [f"config.{f.name}: {before.get(f.name)!r} there, {wanted['config'][f.name]!r} here"
               for f in fields(TripletConfig) if f.name not in TripletConfig.GROWABLE
               and before.get(f.name) != wanted["config"][f.name]]
    if differ:
        raise ValueError(f"{directory} holds triplets of another run ({'; '.join(differ)}); use another directory "
                         f"(only {', '.join(TripletConfig.GROWABLE)} may change between calls on one directory)")


def build_triplets(
    model: LoadedModel,
    attribute: str | Attribute,
    directory: str | Path,
    config: TripletConfig = TripletConfig(),
    *,
    coherence: CoherenceJudge | None = None,
    echoes: EchoFilter | None = EchoFilter(),
    progress: bool = True,
) -> TripletSet:
    """Sample, judge and store prompt-steered triplets; resume an interrupted run.

    Args:
        attribute: a bundled attribute name or an :class:`Attribute` (e.g. from ``make_attribute``).
        directory: where ``triplets.parquet`` and ``triplets.json`` go.
        coherence: the coherence judge (default: heuristics blended with the response's
            likelihood under ``model``; pass ``CoherenceJudge(logprob_fn=logprob_fn(other))`` for
            an independent judge model).
        echoes: the filter that rejects responses repeating the instruction (``None``: off). The
            verdicts of stored samples are worked out again with it.
    """
    check_instance("config", config, TripletConfig)
    if echoes is not None:
        check_instance("echoes", echoes, EchoFilter)
    attribute = load_attribute(attribute)
    config = replace(config, placement=resolve_placement(model.tokenizer, config.placement, announce=True))
    directory = Path(directory)
    coherence = coherence or CoherenceJudge(logprob_fn=logprob_fn(model))
    with directory_lock(directory, purpose=f"building {attribute.name} triplets"):
        return _build(model, attribute, directory, config, coherence, echoes, progress)


def _stored_run(directory: Path, meta: dict) -> TripletSet:
    """The samples already in ``directory`` for this run (refusing another run's); an unreadable
    run is sampled again, with a warning naming the file."""
    if not (directory / META_NAME).exists():
        return TripletSet(_empty_table())
    try:
        previous = TripletSet.load(directory)
    except CorruptFileError as err:
        warnings.warn(f"{err}; sampling these triplets again", RuntimeWarning, stacklevel=4)
        return TripletSet(_empty_table())
    _check_same_run(directory, previous.meta, meta)
    return previous


def _judge_again(table: pd.DataFrame, stored: dict, judges: dict, attribute_judge, coherence, echoes, threshold: float,
                 directory: Path) -> pd.DataFrame:
    """The stored samples scored again by every judge whose fingerprint differs from the one that
    scored them (a run written before judges were recorded: every judge), kept flags made again."""
    changed = [kind for kind in judges if stored.get(kind) != judges[kind]]
    if not changed or not len(table):
        return table
    log.warning("%s: the %s changed since these %d triplets were judged (%s); judging them again", directory,
                " and ".join(f"{kind} judge" for kind in changed), len(table),
                "; ".join(f"{stored.get(kind, 'not recorded')} -> {judges[kind]}" for kind in changed))
    table = table.copy()
    questions, texts = table["question"].tolist(), table["response"].tolist()
    for kind, judge, column in (("attribute", attribute_judge, "attr"), ("coherence", coherence, "coh")):
        if kind in changed:
            scores = judge.score_batch(questions, texts)
            table[f"{column}_score"] = [s.value for s in scores]
            table[f"{column}_reason"] = [s.reason for s in scores]
    table = mark_verdicts(table, echoes, threshold)
    table["soft_label"] = [a / 100.0 if a is not None and a == a else None for a in table["attr_score"]]
    return table


def _build(model: LoadedModel, attribute: Attribute, directory: Path, config: TripletConfig,
           coherence, echoes: EchoFilter | None, progress: bool) -> TripletSet:
    judges = {"attribute": judge_fingerprint(attribute.judge), "coherence": judge_fingerprint(coherence)}
    meta = {
        "format_version": TRIPLETS_FORMAT_VERSION,
        "generation": GENERATION_VERSION,
        "attribute": attribute.name,
        "model_id": model.model_id,
        "config": asdict(config),
        "base_prompt": base_prompt_text(model.tokenizer, config.base_system),
        "judges": judges,
    }
    previous = _stored_run(directory, meta)
    existing = _judge_again(previous.table, previous.meta.get("judges", {}), judges, attribute.judge, coherence,
                            echoes, config.threshold, directory)
    if existing is not previous.table:
        write_frame(directory / TABLE_NAME, existing)
    write_json(directory / META_NAME, meta)

    questions = attribute.questions(config.split)
    if config.n_questions is not None:
        questions = questions[: config.n_questions]
    work = []
    for qi, question in enumerate(questions):
        for s in range(config.samples_per_question):
            ii = (qi + s) % len(attribute.instructions)
            work.append((qi, question, ii, attribute.instructions[ii], s))
    done = set(zip(existing["question"], existing["instruction"], existing["sample_index"]))
    todo = [w for w in work if (w[1], w[3], w[4]) not in done]

    rows = existing.to_dict("records")
    batches = [todo[i : i + config.batch_size] for i in range(0, len(todo), config.batch_size)]
    for batch in tqdm(batches, desc=f"triplets ({attribute.name})", disable=not progress):
        base_prompts = [prompt_ids(model.tokenizer, q, None, config.placement, config.base_system) for _, q, _, _, _ in batch]
        steered_prompts = [prompt_ids(model.tokenizer, q, ins, config.placement, config.base_system)
                           for _, q, _, ins, _ in batch]
        seeds = [sample_seed(config.seed, q, ins, s) for _, q, _, ins, s in batch]
        responses = generate(model, [p for p, _ in steered_prompts], config.sampling, row_seeds=seeds,
                             batch_size=config.batch_size, progress=False)
        texts = [model.tokenizer.decode(r, skip_special_tokens=True).strip() for r in responses]
        qs = [w[1] for w in batch]
        attr_scores = attribute.judge.score_batch(qs, texts)
        coh_scores = coherence.score_batch(qs, texts)
        for (qi, q, ii, ins, s), (bp, header_len), (sp, _), seed, ids, text, a, c in zip(
            batch, base_prompts, steered_prompts, seeds, responses, texts, attr_scores, coh_scores
        ):
            echo = echoes is not None and bool(text) and echoes.is_echo(ins, text)
            rejected = rejection(a.value, c.value, text, echo, config.threshold)
            rows.append({
                "attribute": attribute.name, "split": config.split, "question_index": qi, "question": q,
                "instruction_index": ii, "instruction": ins, "placement": config.placement,
                "sample_index": s, "seed": config.seed, "sample_seed": seed, "model_id": model.model_id,
                "base_prompt_ids": bp, "steered_prompt_ids": sp, "header_len": header_len,
                "response_ids": ids, "response": text,
                "attr_score": a.value, "attr_reason": a.reason, "coh_score": c.value, "coh_reason": c.reason,
                "kept": rejected == "", "soft_label": (a.value / 100.0) if a.value is not None else None,
                "echo": echo, "rejected": rejected,
            })
        table = pd.DataFrame(rows, columns=_COLUMNS)
        write_frame(directory / TABLE_NAME, table)
    stored = pd.DataFrame(rows, columns=_COLUMNS)
    table = mark_verdicts(stored, echoes, config.threshold)  # stored samples judged by this call's echo filter
    if not table[list(VERDICTS)].equals(stored[list(VERDICTS)]):
        write_frame(directory / TABLE_NAME, table)
    order = {(w[1], w[3], w[4]): i for i, w in enumerate(work)}
    keys = zip(table["question"], table["instruction"], table["sample_index"])
    table = table.assign(_order=[order.get(k, -1) for k in keys])
    table = table[table["_order"] >= 0].sort_values("_order").drop(columns="_order")
    return TripletSet(table.reset_index(drop=True), meta)


def summarize(triplets: TripletSet) -> dict:
    """Summary numbers of a run: samples, kept, success rate, mean scores."""
    t = triplets.table
    return {
        "samples": int(len(t)),
        "kept": int(t["kept"].sum()) if len(t) else 0,
        "success_rate": triplets.success_rate,
        "attr_mean": float(pd.to_numeric(t["attr_score"]).mean()) if len(t) else float("nan"),
        "coh_mean": float(pd.to_numeric(t["coh_score"]).mean()) if len(t) else float("nan"),
        "rejected": {reason: int((t["rejected"] == reason).sum()) if "rejected" in t else 0 for reason in REJECTIONS},
    }
