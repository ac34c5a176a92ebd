"""Steering among the other ways to adapt a model: what each one costs, measured side by side.

Prompting (the instruction in the system message), constant steering vectors (Const-DiM,
Const-MSE), PSR (S-PSR, A-PSR), PSR stacked on the prompt, and the weight-space adapters (a LoRA
and a full fine-tune trained on the same triplets, :mod:`workbench.steering.weights`) all change
what the model writes.
:func:`compare_adaptations` puts them on the axes a user weighs, one row per way plus the
``"no adaptation"`` baseline:

- **extra prompt tokens** per answer: ``len(prompt_ids(q, instruction)) - len(prompt_ids(q))``,
  averaged over the questions (0 for steerers alone). With a chat template that inserts a default
  system message when there is none (SmolLM2's), the instruction *replaces* that message, so the
  difference can be smaller than the instruction's own length, or even negative.
- **latency**: every way generates the same questions greedily with exactly ``new_tokens`` new
  tokens (end of turn does not stop it: equal lengths make the comparison fair), timed over whole
  passes (prefill + every decode step, steering hooks included, tokenization excluded), in a
  seeded random order per round over ``repeats`` rounds after one warm-up; the median pass is kept.
  ``seconds_per_answer`` = median pass / questions; ``ms_per_token`` = that / ``new_tokens``;
  ``relative_latency`` is against the baseline measured in the same rounds.
- **memory**: the adaptation's parameters in bytes, plus the KV cache its extra prompt tokens
  need, from the model config: ``2 (K and V) * n_layers * n_kv_heads * head_dim * bytes per value
  * extra tokens`` per sequence in flight (it scales with the batch). Measured peaks are reported
  on CUDA only (``torch.cuda.max_memory_allocated``, reset per pass); on CPU there is no reliable
  per-pass measure: ``ru_maxrss`` is a process-lifetime high-water mark that never goes down, and
  ``tracemalloc`` sees Python's heap, not torch's tensor allocations, so the column is NaN.
- **trained parameters** (sum of ``numel`` of ``steerer.params()``; 0 for prompting; a fine-tune's
  are every block parameter, stored as its weight change) and **data** (training triplets, given per
  way as ``n_train``: steerers record a hash of their data, not a count; a weight adapter records
  its count, the default).
- **training cost**: ``train_seconds`` and ``train_peak_bytes``, as measured when the way was
  trained (given per way, e.g. from :func:`workbench.app.experiment.train_methods`' ``costs``; by
  default a steerer's or adapter's own training history, NaN where it holds none).
- **reversibility**, measured rather than asserted: the logits of a probe (question 0 with the plain
  model's answer) taken before any adaptation ran are compared with its logits after each way was
  applied to it and removed, one way after the other; the maximum absolute difference must be
  exactly 0. A way that left hooks behind shows on its row and on every later one. The probe is
  checked once more after the timing rounds (``table.attrs["restored_after_timing"]``, with a
  warning when False).
  Prompting is reversed by dropping the text; the same check runs for it.
- **knob**: whether the strength is continuous (a steerer's ``alpha``, a LoRA's update scale, a
  fine-tune's interpolation; a prompt has none). ``weight_space`` marks the adapters that change
  weights: they act on every position and cannot be gated per row.

:func:`radar_axes` turns the table into the arguments of :func:`workbench.viz.curves.radar_chart`.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from statistics import median
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.core.chat import PLACEMENTS, prompt_ids
from workbench.core.generation import SamplingConfig, generate_batch
from workbench.core.intervention import Intervention
from workbench.core.models import LoadedModel
from workbench.core.native_path import forward
from workbench.steering import Steerer, check_alpha
from workbench.steering.weights import WeightAdapter

BASELINE = "no adaptation"

COLUMNS = [
    "method", "extra_prompt_tokens", "seconds_per_answer", "relative_latency", "ms_per_token", "prefill_ms",
    "tokens_per_answer", "adaptation_bytes", "extra_kv_bytes", "extra_memory_bytes", "cuda_peak_bytes",
    "trained_params", "train_triplets", "train_seconds", "train_peak_bytes", "weight_space", "alpha",
    "continuous_strength", "exact_removal", "removal_max_abs_diff", "logit_effect",
]


@dataclass(frozen=True)
class Adaptation:
    """One way to adapt the model: an instruction, a steerer, or both (PSR + prompt).

    Attributes:
        name: the row's label, e.g. ``"prompt"``, ``"Const-DiM"``, ``"A-PSR"``, ``"PSR + prompt"``.
        instruction: the steering instruction, placed as the system message (``placement``) or
            ``None`` for a steerer alone.
        steerer: a trained :class:`~workbench.steering.Steerer` or weight-space adapter
            (:class:`~workbench.steering.weights.WeightAdapter`), or ``None`` for prompting alone.
        alpha: the steerer's strength (only with a steerer; a prompt has no knob).
        n_train: how many training triplets the steerer was fitted on (required with a steerer;
            defaults to 0 for prompting alone).
        placement: ``"system"`` (default) or ``"user"`` (a prefix of the user message).
        train_seconds, train_peak_bytes: the measured training cost (default: from the steerer's
            training history where it holds them, else NaN; 0 for prompting alone).
    """

    name: str
    instruction: str | None = None
    steerer: Intervention | None = None
    alpha: float = 1.0
    n_train: int | None = None
    placement: str = "system"
    train_seconds: float | None = None
    train_peak_bytes: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"an adaptation needs a non-empty name, got {self.name!r}")
        if self.name == BASELINE:
            raise ValueError(f"the name {BASELINE!r} is reserved for the baseline row, which compare_adaptations adds")
        if self.instruction is not None and (not isinstance(self.instruction, str) or not self.instruction.strip()):
            raise ValueError(f"adaptation {self.name!r}: instruction must be a non-empty string or None, "
                             f"got {self.instruction!r}")
        if self.steerer is not None and not isinstance(self.steerer, Intervention):
            raise TypeError(f"adaptation {self.name!r}: steerer must be a workbench.steering.Steerer or a "
                            f"WeightAdapter (an Intervention), got {type(self.steerer).__name__}")
        if self.instruction is None and self.steerer is None:
            raise ValueError(f"adaptation {self.name!r} has neither an instruction nor a steerer; the "
                             f"{BASELINE!r} row is added by compare_adaptations")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"adaptation {self.name!r}: unknown placement {self.placement!r}; "
                             f"expected one of {PLACEMENTS}")
        if self.steerer is None:
            if self.alpha != 1.0:
                raise ValueError(f"adaptation {self.name!r}: alpha {self.alpha!r} is a steerer's strength, "
                                 "and this adaptation has no steerer (a prompt has no knob)")
        else:
            object.__setattr__(self, "alpha", check_alpha(self.alpha))
            if self.n_train is None and isinstance(self.steerer, WeightAdapter):
                object.__setattr__(self, "n_train", self.steerer.info.n_train)
            if self.n_train is None:
                raise ValueError(f"adaptation {self.name!r}: give n_train, the number of training triplets the "
                                 "steerer was fitted on (a steerer records a hash of its data, not a count)")
        n_train = 0 if self.n_train is None else self.n_train
        if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 0:
            raise ValueError(f"adaptation {self.name!r}: n_train must be an integer >= 0, got {self.n_train!r}")
        object.__setattr__(self, "n_train", n_train)
        history = {} if self.steerer is None else dict(self.steerer.info.history)
        for field_, key in (("train_seconds", "seconds"), ("train_peak_bytes", "peak_memory_bytes")):
            value = getattr(self, field_)
            if value is None:
                value = 0.0 if self.steerer is None else history.get(key, math.nan)
            object.__setattr__(self, field_, float(value))

    @property
    def weight_space(self) -> bool:
        """Whether this way changes the model's weights (a LoRA or a fine-tune)."""
        return isinstance(self.steerer, WeightAdapter)

    @property
    def trained_params(self) -> int:
        """Number of trained parameters: ``sum(numel)`` of the steerer's tensors, 0 without one."""
        return 0 if self.steerer is None else sum(int(t.numel()) for t in self.steerer.params().values())

    @property
    def adaptation_bytes(self) -> int:
        """Bytes of the steerer's tensors as held (``numel * element_size``), 0 without one."""
        if self.steerer is None:
            return 0
        return sum(int(t.numel()) * t.element_size() for t in self.steerer.params().values())


def kv_bytes_per_token(model: LoadedModel) -> int:
    """KV-cache bytes one prompt token costs one sequence:
    ``2 * n_layers * n_kv_heads * head_dim * bytes per value`` (K and V, every layer, the model's dtype).

    Read from the wrapped Hugging Face config (``num_key_value_heads``, ``head_dim``; falling back to
    ``num_attention_heads`` and ``hidden_size / num_attention_heads`` where a config lacks them).
    """
    config = model.hf_config
    n_layers = int(config.num_hidden_layers)
    n_heads = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // n_heads)
    bytes_per_value = torch.empty((), dtype=model.dtype).element_size()
    return 2 * n_layers * n_kv * head_dim * bytes_per_value


@dataclass(frozen=True)
class TimedRun:
    """One pass of fixed-length greedy generation over the questions.

    Attributes:
        ids: per question (in the order given), exactly ``new_tokens`` generated ids.
        seconds: wall time of the pass (prefill + decode, steering hooks included), in seconds.
        prefill_seconds: the time of a one-token pass over the same prompts (prefill and the first token).
        cuda_peak_bytes: on CUDA, the peak of allocated memory above what was allocated at the start
            of the pass; NaN on other devices.
    """

    ids: list[list[int]]
    seconds: float
    prefill_seconds: float
    cuda_peak_bytes: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fixed_batch(model: LoadedModel, prompts: Sequence[Sequence[int]], header_lens: Sequence[int],
                 steerer: Intervention | None, alpha: float, new_tokens: int) -> tuple[list[list[int]], float, float]:
    """Greedy generation of exactly ``new_tokens`` per prompt (no stop at end of turn) with
    :func:`workbench.core.generation.generate_batch`, timed. The prefill alone is timed by a second,
    one-token pass. Returns ``(ids, seconds, prefill_seconds)``."""
    steerers = [(steerer, alpha)] if steerer is not None else []

    def timed(n: int) -> tuple[list[list[int]], float]:
        config = SamplingConfig(max_new_tokens=n, temperature=0, stop_at_end_of_turn=False)
        _sync(model.device)
        start = time.perf_counter()
        with torch.no_grad():
            out = generate_batch(model, prompts, config, steerers=steerers, header_lens=header_lens)
        _sync(model.device)
        return out, time.perf_counter() - start

    out, seconds = timed(new_tokens)
    _, prefill = timed(1)
    return out, seconds, prefill


def timed_generation(model: LoadedModel, questions: Sequence[str], adaptation: Adaptation | None, *,
                     new_tokens: int = 32, batch_size: int = 1) -> TimedRun:
    """Answer ``questions`` greedily with exactly ``new_tokens`` tokens each under ``adaptation``
    (``None``: the plain model), timed. Prompts are built before the clock starts and batched in
    order of length, as :func:`workbench.core.generation.generate` does; ``ids`` come back in the order given.
    """
    _check_run_args(new_tokens, 1, batch_size)
    if not questions:
        raise ValueError("no questions to answer")
    instruction, placement = (None, "system") if adaptation is None else (adaptation.instruction, adaptation.placement)
    steerer, alpha = (None, 0.0) if adaptation is None else (adaptation.steerer, adaptation.alpha)
    built = [prompt_ids(model.tokenizer, q, instruction, placement) for q in questions]
    longest = max(len(p) for p, _ in built) + new_tokens
    if longest > model.n_ctx:
        raise ValueError(f"the longest prompt plus new_tokens ({longest} tokens) exceeds the model's "
                         f"context length {model.n_ctx}")
    order = sorted(range(len(built)), key=lambda i: len(built[i][0]))
    ids: list = [None] * len(built)
    seconds = prefill = 0.0
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(model.device)
        at_start = torch.cuda.memory_allocated(model.device)
    for k in range(0, len(order), batch_size):
        batch = order[k : k + batch_size]
        out, secs, pre = _fixed_batch(model, [built[i][0] for i in batch], [built[i][1] for i in batch],
                                      steerer, alpha, new_tokens)
        seconds, prefill = seconds + secs, prefill + pre
        for i, row in zip(batch, out):
            ids[i] = row
    peak = float(torch.cuda.max_memory_allocated(model.device) - at_start) if cuda else math.nan
    return TimedRun(ids, seconds, prefill, peak)


@torch.no_grad()
def _logits(model: LoadedModel, ids: Sequence[int], span_len: int, steerer: Steerer | None,
            alpha: float) -> torch.Tensor:
    """``[span_len, vocab]`` float32 logits on the last ``span_len`` positions of ``ids``, steered
    there by ``steerer`` at ``alpha`` when given (its hooks are gone when this returns)."""
    tokens = torch.tensor([list(ids)], device=model.device)
    with ExitStack() as stack:
        if steerer is not None:
            span = stack.enter_context(steerer.apply(model, alpha))
            span.mask = torch.zeros(tokens.shape, dtype=torch.bool, device=model.device)
            span.mask[0, -span_len:] = True
        logits = forward(model, tokens)
    return logits[0, -span_len:].float().cpu()


def _check_run_args(new_tokens: int, repeats: int, batch_size: int) -> None:
    for name, value in (("new_tokens", new_tokens), ("repeats", repeats), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def compare_adaptations(
    model: LoadedModel,
    adaptations: Sequence[Adaptation],
    questions: Sequence[str],
    *,
    new_tokens: int = 32,
    repeats: int = 3,
    batch_size: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Measure each way to adapt ``model`` on cost, data, reversibility and knob, side by side.

    Args:
        adaptations: the ways to compare (distinct names); the ``"no adaptation"`` baseline is added.
        questions: the user questions every way answers (the same for all).
        new_tokens: tokens generated per answer, exactly (greedy; end of turn does not stop it).
        repeats: timing rounds; each way runs once per round, in a random order drawn from ``seed``,
            after one warm-up pass each; the median round is kept.
        batch_size: answers generated together (latency per answer is then the batch's share).
    Returns:
        One row per way, baseline first, with the columns of :data:`COLUMNS` (see the module
        docstring): ``extra_prompt_tokens`` (tokens per answer), ``seconds_per_answer``,
        ``relative_latency`` (baseline = 1), ``ms_per_token``, ``prefill_ms`` (per answer),
        ``tokens_per_answer`` (equals ``new_tokens``), ``adaptation_bytes`` (parameters),
        ``extra_kv_bytes`` (per sequence), ``extra_memory_bytes`` (their sum), ``cuda_peak_bytes``
        (measured peak above the pass's start, CUDA only, else NaN), ``trained_params``,
        ``train_triplets``, ``alpha`` (NaN without a steerer), ``continuous_strength``,
        ``exact_removal`` (``removal_max_abs_diff == 0``), ``removal_max_abs_diff`` (max |logit
        change| on a probe after the way was removed), ``logit_effect`` (max |logit change| on
        the same probe's answer while adapted: what the removal undid). The raw timings of every
        round are in ``table.attrs["timings"]``; ``table.attrs["restored_after_timing"]`` says
        whether the plain model's logits were still exact after every timing round.
    """
    adaptations = list(adaptations)
    if not adaptations:
        raise ValueError("no adaptations to compare; give at least one Adaptation")
    for a in adaptations:
        if not isinstance(a, Adaptation):
            raise TypeError(f"adaptations must be Adaptation objects, got {type(a).__name__}")
    names = [a.name for a in adaptations]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"adaptation names must be distinct; {duplicates} appear more than once")
    for a in adaptations:
        if a.steerer is not None:
            try:
                a.steerer.check_model(model)
            except ValueError as err:
                raise ValueError(f"adaptation {a.name!r}: {err}") from None
    questions = list(questions)
    if not questions:
        raise ValueError("no questions to answer")
    _check_run_args(new_tokens, repeats, batch_size)

    ways: list[Adaptation | None] = [None, *adaptations]
    labels = [BASELINE, *names]
    kv_per_token = kv_bytes_per_token(model)
    prompt_lens = [[len(prompt_ids(model.tokenizer, q, None if w is None else w.instruction,
                                   "system" if w is None else w.placement)[0]) for q in questions] for w in ways]
    extra_tokens = [float(np.mean(np.subtract(lens, prompt_lens[0]))) for lens in prompt_lens]
    longest = max(max(lens) for lens in prompt_lens) + new_tokens
    if longest > model.n_ctx:
        raise ValueError(f"the longest prompt plus new_tokens ({longest} tokens) exceeds the model's "
                         f"context length {model.n_ctx}")

    # The probe of the reversibility check: question 0 with the plain model's answer, its logits on
    # the span (assistant header + answer) taken before any adaptation ran. This pass also warms
    # the baseline up.
    probe_q = questions[0]
    answer = timed_generation(model, [probe_q], None, new_tokens=new_tokens).ids[0]
    base_prompt, header = prompt_ids(model.tokenizer, probe_q)
    span_len = header + len(answer)
    reference = _logits(model, base_prompt + answer, span_len, None, 0.0)

    # Reversibility, before any timing: each way in turn adapts the probe (its own prompt, the same
    # answer ids, steered on the span), is removed, and the plain probe's logits are compared with
    # the reference; a way that leaves hooks behind shows on its row and every later one.
    removal, effect = [], []
    for way in ways:
        if way is None:
            during = _logits(model, base_prompt + answer, span_len, None, 0.0)
        else:
            prompt, _ = prompt_ids(model.tokenizer, probe_q, way.instruction, way.placement)
            during = _logits(model, prompt + answer, span_len, way.steerer, way.alpha)
        after = _logits(model, base_prompt + answer, span_len, None, 0.0)
        effect.append(float((during - reference).abs().max()))
        removal.append(float((after - reference).abs().max()))

    # Warm-up (one batch each), then interleaved rounds in a seeded random order.
    for way in ways[1:]:
        timed_generation(model, questions[:batch_size], way, new_tokens=new_tokens, batch_size=batch_size)
    rng = np.random.default_rng(seed)
    runs: dict[int, list[TimedRun]] = {i: [] for i in range(len(ways))}
    records = []
    with tqdm(total=repeats * len(ways), desc="timing", disable=not progress, leave=False) as bar:
        for round_ in range(repeats):
            for i in rng.permutation(len(ways)).tolist():
                run = timed_generation(model, questions, ways[i], new_tokens=new_tokens, batch_size=batch_size)
                runs[i].append(run)
                records.append({"round": round_, "method": labels[i], "seconds": run.seconds,
                                "prefill_seconds": run.prefill_seconds})
                bar.update()

    restored = float((_logits(model, base_prompt + answer, span_len, None, 0.0) - reference).abs().max())
    if restored != 0.0:
        warnings.warn(f"the model is not restored after the timing rounds (max |logit difference| {restored:.3g} "
                      "on the probe): some adaptation left hooks behind, and its timings are not to be trusted")

    n = len(questions)
    rows = []
    for i, (label, way) in enumerate(zip(labels, ways)):
        seconds = median(r.seconds for r in runs[i]) / n
        lengths = {len(ids) for r in runs[i] for ids in r.ids}
        extra_kv = extra_tokens[i] * kv_per_token
        params = 0 if way is None else way.adaptation_bytes
        rows.append({
            "method": label,
            "extra_prompt_tokens": extra_tokens[i],
            "seconds_per_answer": seconds,
            "relative_latency": math.nan,
            "ms_per_token": 1000.0 * seconds / new_tokens,
            "prefill_ms": 1000.0 * median(r.prefill_seconds for r in runs[i]) / n,
            "tokens_per_answer": min(lengths) if len(lengths) == 1 else math.nan,
            "adaptation_bytes": params,
            "extra_kv_bytes": extra_kv,
            "extra_memory_bytes": params + extra_kv,
            "cuda_peak_bytes": median(r.cuda_peak_bytes for r in runs[i]),
            "trained_params": 0 if way is None else way.trained_params,
            "train_triplets": 0 if way is None else way.n_train,
            "train_seconds": 0.0 if way is None else way.train_seconds,
            "train_peak_bytes": 0.0 if way is None else way.train_peak_bytes,
            "weight_space": way is not None and way.weight_space,
            "alpha": math.nan if way is None or way.steerer is None else way.alpha,
            "continuous_strength": way is not None and way.steerer is not None,
            "exact_removal": removal[i] == 0.0,
            "removal_max_abs_diff": removal[i],
            "logit_effect": effect[i],
        })
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["relative_latency"] = table["seconds_per_answer"] / table["seconds_per_answer"].iloc[0]
    table.attrs["timings"] = pd.DataFrame(records)
    table.attrs["restored_after_timing"] = restored == 0.0
    table.attrs["new_tokens"], table.attrs["batch_size"], table.attrs["repeats"] = new_tokens, batch_size, repeats
    return table


RADAR_AXES = {
    # column: (higher is better, unit, log axis)
    "extra_prompt_tokens": (False, "tokens", False),
    "relative_latency": (False, "x baseline", False),
    "extra_memory_bytes": (False, "bytes", True),
    "trained_params": (False, "params", True),
    "train_triplets": (False, "triplets", True),
    "train_seconds": (False, "s", True),
    "exact_removal": (True, "0/1", False),
    "continuous_strength": (True, "0/1", False),
}


def radar_axes(table: pd.DataFrame, *, include_baseline: bool = False) -> dict:
    """The keyword arguments of :func:`workbench.viz.curves.radar_chart` for a
    :func:`compare_adaptations` table: ``radar_chart(**radar_axes(table))``.

    Axes: extra prompt tokens, relative latency, extra memory (parameters + KV cache, log),
    trained parameters (log), training triplets (log), training seconds (log; left out when some
    row has no measured time) (all lower is better), exact removal and a continuous strength knob
    (0/1, higher is better). The baseline row is left out unless
    ``include_baseline`` (it costs nothing and adapts nothing, so it would win every cost axis).
    A log axis holding a negative value (memory saved by an instruction shorter than the
    template's default system message) is drawn linear instead.
    """
    axes = {c: v for c, v in RADAR_AXES.items()
            if c != "train_seconds" or (c in table.columns and table[c].notna().all())}
    missing = [c for c in ["method", *axes] if c not in table.columns]
    if missing:
        raise ValueError(f"radar_axes: the table lacks columns {missing}; pass the table compare_adaptations returns")
    rows = table if include_baseline else table[table["method"] != BASELINE]
    if len(rows) == 0:
        raise ValueError("radar_axes: no rows to draw")
    if "train_seconds" in axes and not rows["train_seconds"].notna().all():
        del axes["train_seconds"]
    out = rows[["method", *axes]].reset_index(drop=True).copy()
    for column in ("exact_removal", "continuous_strength"):
        out[column] = out[column].astype(int)
    log_axes = [c for c, (_, _, log) in axes.items() if log and (out[c] >= 0).all()]
    return {
        "table": out,
        "axes": list(axes),
        "higher_is_better": {c: hib for c, (hib, _, _) in axes.items()},
        "units": {c: unit for c, (_, unit, _) in axes.items()},
        "log_axes": log_axes,
    }
