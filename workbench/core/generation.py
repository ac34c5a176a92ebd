"""Batched generation through the bridge: left padding, attention masks, KV cache.

The loop is written here rather than taken from ``TransformerBridge.generate`` so that hooks see
exactly one new position per decode step (what a steerer acting "on every generated token"
needs), so that sampling is seeded per row (the same row seed gives the same sample whatever the
batch it lands in), and so that rows stop independently at end of turn.

Gated steerers (any :class:`~workbench.core.intervention.GatedIntervention`, e.g.
:class:`workbench.steering.gates.GatedSteerer`: ``decide(inputs) -> [RowDecision]``, ``steerer`` and
``alpha``) are decided per row before the
first generated token, from the unsteered prompt activations (one extra forward, stopped after the
deepest layer a gate reads) or the prompt text; each row is then steered with its own weight, at
prefill and at every decode step, in the same batch with the KV cache. A row whose weight is 0
gets exactly the tokens of unsteered generation, a row whose weight is 1 those of the ungated
steerer.
"""

from __future__ import annotations

import inspect
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from typing import Sequence

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from workbench.core.chat import end_of_turn_ids, prompt_ids
from workbench.core.checks import check_field, check_instance, check_int, check_number, check_str_sequence, is_int
from workbench.core.fingerprint import sample_seed
from workbench.core.models import LoadedModel
from workbench.core.native_path import native_model
from workbench.core.sampling import can_decide_in_float64, float64_weights, pick_from_float64, pick_tokens
from workbench.core.intervention import GatedIntervention, GateInputs, Intervention, RowDecision
from workbench.core.span import Span, prefill_span_mask

#: Bumped when the same prompts, seeds and settings can give other tokens; every cache of generated
#: text (triplets, evaluations, claims) is keyed on it. 2: near-ties decided in float64
#: (:mod:`workbench.core.sampling`).
GENERATION_VERSION = 2


@dataclass(frozen=True)
class SamplingConfig:
    """How to decode. ``temperature == 0`` is greedy; otherwise nucleus sampling with ``top_p``.

    ``stop_at_end_of_turn=False`` generates exactly ``max_new_tokens`` per row (e.g. to time
    methods on answers of equal length).
    """

    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 0.95
    stop_at_end_of_turn: bool = True

    def __post_init__(self) -> None:
        check_sampling_fields(self)


def check_sampling_fields(config) -> None:
    """Check the decoding fields ``max_new_tokens`` (>= 1), ``temperature`` (finite, >= 0) and
    ``top_p`` (in (0, 1]) of any config holding them (:class:`SamplingConfig`, and the triplet and
    comparison configs that build one), naming that config."""
    check_field(config, "max_new_tokens", check_int, minimum=1)
    check_field(config, "temperature", check_number, minimum=0)
    check_field(config, "top_p", check_number, above=0, maximum=1)


def stop_token_ids(tokenizer, generation_config=None) -> set[int]:
    """End-of-turn ids, from the model itself: the tokenizer's eos, the generation config's eos ids,
    and the special tokens its chat template writes between an answer and the next question (see
    :func:`workbench.core.chat.end_of_turn_ids`)."""
    return end_of_turn_ids(tokenizer, generation_config)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token id lists. Returns ``(ids [batch, len], attention_mask [batch, len])``."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if len(prompt):
            ids[row, width - len(prompt) :] = torch.as_tensor(list(prompt), dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
    return ids, mask


def new_kv_cache(model: LoadedModel):
    """An empty Hugging Face KV cache for ``model``, filled in place by each forward it is given to."""
    try:
        return DynamicCache(config=model.bridge.original_model.config)
    except TypeError:  # older transformers: no config argument
        return DynamicCache()


def _kv_argument(model: LoadedModel) -> str:
    """The name under which the wrapped HF model takes its KV cache: ``cache`` (transformers >= 5.2x)
    or ``past_key_values`` (before)."""
    return _kv_argument_of(type(model.bridge.original_model))


@lru_cache(maxsize=None)
def _kv_argument_of(model_class: type) -> str:
    # once per model class, not once per decode step
    params = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def forward_with_cache(model: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                       cache, last_only: bool = False, native: torch.nn.Module | None = None) -> torch.Tensor:
    """One forward through the bridge (hooks fire) that reads and extends ``cache`` in place.

    ``native``: the same model without the bridge's wrapping (:func:`workbench.core.native_path.native_model`),
    through which the residual hook points still fire; same logits, less Python per step.

    We hold the cache object ourselves instead of taking it from the bridge's
    ``return_type="logits_and_cache"``: with transformers >= 5.2x the output field is named
    ``cache``, the bridge still reads ``past_key_values`` and returns None, and decoding would then
    silently run without context. Returns ``logits [batch, len, vocab]``, or ``[batch, 1, vocab]``
    with ``last_only`` (the prefill of a generation: the unembedding of every prompt position
    would cost a fifth of a small model's prefill, as Hugging Face ``generate`` also avoids).
    """
    extra = {"logits_to_keep": 1} if last_only and _takes_logits_to_keep(type(model.bridge.original_model)) else {}
    if native is not None:
        logits = native(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                        **{_kv_argument(model): cache}, **extra).logits
    else:
        logits = model.bridge(ids, attention_mask=mask, position_ids=positions, use_cache=True,
                              return_type="logits", **{_kv_argument(model): cache}, **extra)
    return logits[:, -1:] if last_only else logits


@lru_cache(maxsize=None)
def _takes_logits_to_keep(model_class: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def _check_cache_filled(cache, length: int) -> None:
    """Fail loudly when the model did not write its KV cache: decoding would ignore the prompt."""
    if cache.get_seq_length() != length:
        raise RuntimeError(
            f"the KV cache holds {cache.get_seq_length()} positions after a {length}-token prefill: this "
            f"transformers ({version('transformers')}) and transformer-lens ({version('transformer-lens')}) do not "
            "agree on the cache argument, and generation would ignore the prompt. Install the versions "
            "pyproject.toml names (transformers<5.24 with transformer-lens 4.3)."
        )


@torch.no_grad()
def generate_batch(
    model: LoadedModel,
    prompts: Sequence[Sequence[int]],
    config: SamplingConfig = SamplingConfig(),
    row_seeds: Sequence[int] | None = None,
    steerers: Sequence[tuple] = (),
    header_lens: Sequence[int] | None = None,
    texts: Sequence[str] | None = None,
) -> list[list[int]]:
    """Generate continuations of one batch of prompts (token id lists).

    Returns, per prompt, the generated ids up to and including the first end-of-turn token (or
    ``max_new_tokens`` ids when none came). Rows are seeded by ``row_seeds`` when sampling.

    Args:
        steerers: ``(steerer, alpha)`` pairs applied on the steered span: the assistant header
            at prefill (the last ``header_lens[i]`` prompt positions of row i) and every
            generated token (one position per decode step, with the KV cache).
        header_lens: the assistant header length of each prompt (from
            :func:`workbench.core.chat.prompt_ids`); required with steerers.
        texts: what a text gate reads for each prompt (default: the decoded prompt).
    """
    return _generate_batch(model, prompts, config, row_seeds, steerers, header_lens, record=False, texts=texts)[0]


def _is_gated(item) -> bool:
    return isinstance(item, GatedIntervention)


def _is_steerer(item) -> bool:
    """Whether ``item`` steers a model by itself: an :class:`Intervention`, or one at a strength (a SteererAt)."""
    return isinstance(item, Intervention) or isinstance(getattr(item, "steerer", None), Intervention)


def check_steerers(steerers: Sequence) -> list:
    """``steerers`` as a list whose entries each give a strength (see :func:`check_steering_entry`), or a
    gated steerer; one steerer in place of the list is refused with how to give it."""
    if _is_gated(steerers) or _is_steerer(steerers):
        raise TypeError(f"steerers must be a list, got one {type(steerers).__name__}: pass steerers=[steerer.at(1.5)]")
    items = list(steerers)
    for i, item in enumerate(items):
        if not _is_gated(item):
            check_steering_entry(f"steerers[{i}]", item)
    return items


def check_steering_entry(name: str, entry) -> None:
    """Refuse an entry that is not a steerer at a strength, a SteererAt or a ``(steerer, alpha)`` pair:
    a bare steerer is told how to give its strength (the strength itself is checked where it is applied)."""
    try:
        steerer, _ = entry
    except (TypeError, ValueError):
        raise TypeError(f"{name} is a {type(entry).__name__} without a strength: give steerer.at(1.5) or "
                        "(steerer, 1.5)") from None
    if not _is_steerer(steerer):
        raise TypeError(f"{name} holds a {type(steerer).__name__} where the steerer goes: give steerer.at(alpha) or "
                        "(steerer, alpha)")


def _steering_items(steerers: Sequence) -> list[tuple]:
    """``(steerer, alpha, gated or None)`` for each entry of ``steerers`` (a SteererAt, a
    ``(steerer, alpha)`` pair, or a gated steerer; see :func:`check_steerers`)."""
    out = []
    for item in check_steerers(steerers):
        if _is_gated(item):
            out.append((item.steerer, float(item.alpha), item))
        else:
            steerer, alpha = item
            out.append((steerer, alpha, None))
    return out


class _StopForward(Exception):
    """Raised by a hook once the deepest layer a gate reads has been seen: the rest of the forward is skipped."""


@torch.no_grad()
def read_prompt_resid(model: LoadedModel, ids: torch.Tensor, mask: torch.Tensor,
                      layers: Sequence[int]) -> dict[int, torch.Tensor]:
    """The unsteered residual stream of left-padded prompts at ``layers``: ``{layer: [batch, width, d]}``.

    One forward (no KV cache), stopped after the deepest layer asked for; the positions are those
    of the generation prefill.
    """
    layers = model.check_layers(layers)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    seen: dict[int, torch.Tensor] = {}
    last = max(layers)

    def reader(layer: int):
        def hook(resid, hook=None):
            seen[layer] = resid.detach()
            if layer == last:
                raise _StopForward
            return resid

        return hook

    try:
        with model.bridge.hooks(fwd_hooks=[(model.resid_hook(l), reader(l)) for l in layers]):
            model.bridge(ids.to(model.device), attention_mask=mask.to(model.device),
                         position_ids=positions.to(model.device), return_type=None)
    except _StopForward:
        pass
    return {l: seen[l] for l in layers}


def _decide(model: LoadedModel, gated: Sequence, ids: torch.Tensor, mask: torch.Tensor,
            texts: Sequence[str]) -> list[list[RowDecision]]:
    """Each gated steerer's decisions on the batch, ``[gated][row]``, checked."""
    prefetch = tuple(sorted({int(l) for g in gated for l in getattr(g, "gate_layers", ())}))
    inputs = GateInputs(list(texts), ids, mask, model, lambda layers: read_prompt_resid(model, ids, mask, layers),
                        prefetch)
    out = []
    for g in gated:
        rows = list(g.decide(inputs))
        if len(rows) != ids.shape[0] or not all(isinstance(r, RowDecision) for r in rows):
            raise ValueError(f"{g!r}.decide returned {len(rows)} decisions for a batch of {ids.shape[0]} rows; "
                             "a gate answers one RowDecision per row")
        bad = [r for r in rows if not 0.0 <= r.weight <= 1.0]
        if bad:
            raise ValueError(f"gate weight {bad[0].weight} of {bad[0].rule!r} is outside [0, 1]")
        out.append(rows)
    return out


@torch.no_grad()  # generation never trains: a graph kept across decode steps costs ~150 MB per step at batch 16
def _generate_batch(model, prompts, config, row_seeds, steerers, header_lens, record: bool, texts=None):
    """:func:`generate_batch`, also returning per-row lambdas when ``record`` (see :class:`_LambdaRecorder`)
    and per-row gate decisions (``None`` without gated steerers)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt must hold at least one token")
    longest = max(len(p) for p in prompts) + config.max_new_tokens
    if longest > model.n_ctx:
        raise ValueError(f"prompt plus max_new_tokens ({longest}) exceeds the model's context length {model.n_ctx}")
    sampling = config.temperature > 0
    if sampling and (row_seeds is None or len(row_seeds) != len(prompts)):
        raise ValueError("sampling needs one seed per prompt (row_seeds)")
    if steerers and (header_lens is None or len(header_lens) != len(prompts)):
        raise ValueError("steering needs header_lens: the assistant header length of each prompt")
    if texts is not None and len(texts) != len(prompts):
        raise ValueError(f"{len(texts)} texts for {len(prompts)} prompts")
    items = _steering_items(steerers)
    generators = None
    if sampling:
        generators = [torch.Generator().manual_seed(int(s)) for s in row_seeds]
    pad_id = model.tokenizer.pad_token_id
    device = model.device
    ids, mask = left_pad(prompts, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    gated = [g for _, _, g in items if g is not None]
    decisions = None
    if gated:
        for g in gated:
            if callable(getattr(g, "check_model", None)):
                g.check_model(model)
        if texts is None:
            texts = [model.tokenizer.decode(list(p), skip_special_tokens=True) for p in prompts]
        decisions = _decide(model, gated, ids, mask, texts)
    recorder = _LambdaRecorder(model, [s for s, _, _ in items]) if record and items else None
    with ExitStack() as stack:
        spans = []
        if recorder is not None:
            stack.enter_context(recorder.hooks())  # first, so readers see each layer before steering
        shared = Span() if any(g is None for _, _, g in items) else None
        if shared is not None:
            spans.append(shared)
        k = 0
        for steerer, alpha, g in items:
            if g is None:
                stack.enter_context(steerer.apply(model, alpha, shared))
                continue
            rows = torch.tensor([d.weight for d in decisions[k]], dtype=torch.float32, device=device)
            k += 1
            if not bool((rows > 0).any()):
                continue  # no row steered: no hooks at all
            span = Span(rows=rows)
            spans.append(span)
            stack.enter_context(steerer.apply(model, alpha, span))
        if items:
            prefill = prefill_span_mask(mask, list(header_lens)).to(device)
            for span in spans:
                span.mask = prefill
        native = native_model(model)  # after the hooks are in: it checks which hook points carry them
        cache = new_kv_cache(model)
        logits = forward_with_cache(model, ids, mask, positions, cache, last_only=True, native=native)
        _check_cache_filled(cache, ids.shape[1])
        for span in spans:
            span.mask = None  # decode steps: every generated token is in the steered span (rows weights stay)
        exact = _Float64Decider(model, prompts, header_lens, spans, recorder, native) \
            if can_decide_in_float64(model.hf_model) else None
        out = _decode(model, logits, cache, mask, positions, config, generators, len(prompts),
                      feed_last=recorder is not None, native=native, exact=exact)
    lambdas = recorder.per_row(header_lens, [len(o) for o in out]) if recorder is not None else None
    per_row = [tuple(d[row] for d in decisions) for row in range(len(prompts))] if decisions is not None else None
    return out, lambdas, per_row


class _LambdaRecorder:
    """Reads each steerer's per-token lambda at its layers during generation.

    Every forward (prefill, then one per decode step) appends ``[batch, seq, rank]`` per steerer
    and layer; :meth:`per_row` keeps, for each row, the assistant header positions of the
    prefill and one position per generated token.
    """

    def __init__(self, model: LoadedModel, steerers: Sequence) -> None:
        self.model, self.steerers = model, list(steerers)
        self.paused = False  # while a near-tie is decided again (:class:`_Float64Decider`)
        self.records: dict[tuple[int, int], list[torch.Tensor]] = {
            (i, l): [] for i, s in enumerate(self.steerers) for l in s.layers}

    @contextmanager
    def hooks(self):
        def reader(index: int, layer: int):
            def hook(resid, hook=None):
                if self.paused:
                    return resid
                self.records[(index, layer)].append(self.steerers[index].lambdas_from_acts(layer, resid.float()).detach().cpu())
                return resid

            return hook

        with self.model.bridge.hooks(fwd_hooks=[(self.model.resid_hook(l), reader(i, l)) for i, l in self.records]):
            yield

    def per_row(self, header_lens: Sequence[int], n_generated: Sequence[int]) -> list[tuple[torch.Tensor, ...]]:
        """Per row, per steerer: ``[n_layers, header_len + n_generated, rank]``."""
        rows = []
        for row, (h, n) in enumerate(zip(header_lens, n_generated)):
            per_steerer = []
            for i, steerer in enumerate(self.steerers):
                layers = []
                for l in steerer.layers:
                    steps = self.records[(i, l)]
                    header = steps[0][row, -h:]
                    generated = [step[row, -1] for step in steps[1 : 1 + n]]
                    layers.append(torch.cat([header, torch.stack(generated)]) if generated else header)
                per_steerer.append(torch.stack(layers))
            rows.append(tuple(per_steerer))
        return rows


class _Float64Decider:
    """The float64 logits of one row of a generating batch, for a near-tie (:mod:`workbench.core.sampling`).

    The row's prompt without padding and its tokens so far go through the model once, its weights
    in float64, with the batch's hooks in place: each span is set to that row (its gate weight, the
    assistant header and every generated token), lambda recording paused; all is put back after.
    """

    def __init__(self, model, prompts, header_lens, spans, recorder, native) -> None:
        self.model, self.prompts, self.header_lens = model, prompts, header_lens
        self.spans, self.recorder, self.native = spans, recorder, native

    def logits(self, rows: Sequence[int], generated: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """``[vocab]`` float64 next-token logits of each of ``rows`` after its ``generated`` tokens."""
        device = self.model.device
        saved = [(span.mask, span.rows) for span in self.spans]
        if self.recorder is not None:
            self.recorder.paused = True
        out = []
        try:
            with float64_weights(self.model.hf_model):
                for row, tokens in zip(rows, generated):
                    prompt = list(self.prompts[row])
                    ids = torch.tensor([prompt + list(tokens)], device=device)
                    mask = torch.ones_like(ids)
                    if self.spans:
                        steered = torch.zeros_like(ids, dtype=torch.bool)
                        steered[0, len(prompt) - int(self.header_lens[row]):] = True
                        for span, (_, weights) in zip(self.spans, saved):
                            span.mask = steered
                            span.rows = None if weights is None else weights[row : row + 1]
                    positions = torch.arange(ids.shape[1], device=device)[None]
                    logits = forward_with_cache(self.model, ids, mask, positions, new_kv_cache(self.model),
                                                last_only=True, native=self.native)
                    out.append(logits[0, -1].double())
        finally:
            for span, (mask, weights) in zip(self.spans, saved):
                span.mask, span.rows = mask, weights
            if self.recorder is not None:
                self.recorder.paused = False
        return out


def _next_tokens(logits: torch.Tensor, config: SamplingConfig, generators, exact: _Float64Decider | None,
                 out: list[list[int]], done: torch.Tensor) -> torch.Tensor:
    """One token per row from ``logits [batch, vocab]``; near-ties decided in float64 when ``exact``."""
    temperature = config.temperature if generators is not None else 0.0
    tokens, tied, draws = pick_tokens(logits, temperature, config.top_p, generators)
    rows = torch.nonzero(tied & ~done.cpu()).flatten().tolist()
    if exact is not None and rows:
        for row, row_logits in zip(rows, exact.logits(rows, [out[row] for row in rows])):
            tokens[row] = pick_from_float64(row_logits, temperature, config.top_p, None if draws is None else draws[row])
    return tokens


def _decode(model, logits, cache, mask, positions, config, generators, n_rows, feed_last: bool = False,
            native: torch.nn.Module | None = None, exact: _Float64Decider | None = None) -> list[list[int]]:
    """The decode loop after prefill: one new token per row per step, KV cache reused.

    ``feed_last``: run the final tokens through the model too (their logits are unused), so that
    hooks see every generated token, e.g. to read lambda on it. ``exact``: decides near-ties in float64.
    """
    stops = stop_token_ids(model.tokenizer, getattr(model.bridge.original_model, "generation_config", None)) \
        if config.stop_at_end_of_turn else set()
    pad_id = model.tokenizer.pad_token_id
    out: list[list[int]] = [[] for _ in range(n_rows)]
    done = torch.zeros(n_rows, dtype=torch.bool, device=logits.device)
    next_pos = positions[:, -1:] + 1
    for step in range(config.max_new_tokens):
        token = _next_tokens(logits[:, -1, :], config, generators, exact, out, done)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        for row in torch.nonzero(~done).flatten().tolist():
            out[row].append(int(token[row]))
            if int(token[row]) in stops:
                done[row] = True
        if (bool(done.all()) or step == config.max_new_tokens - 1) and not feed_last:
            break
        # Finished rows keep decoding padding (their output is ignored) so the batch stays rectangular.
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        logits = forward_with_cache(model, token[:, None], mask, next_pos, cache, native=native)
        next_pos = next_pos + 1
        if bool(done.all()):
            break
    return out


def generate(
    model: LoadedModel,
    prompts: Sequence[Sequence[int]],
    config: SamplingConfig = SamplingConfig(),
    row_seeds: Sequence[int] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    steerers: Sequence[tuple] = (),
    header_lens: Sequence[int] | None = None,
    texts: Sequence[str] | None = None,
) -> list[list[int]]:
    """:func:`generate_batch` over many prompts, in batches, with a progress bar.

    Prompts are batched in order of length so that padding stays small; results come back in
    the order given. ``texts``: what text gates read for each prompt (default: the decoded prompt).
    """
    return _generate(model, prompts, config, row_seeds, batch_size, progress, steerers, header_lens, record=False,
                     texts=texts)[0]


def _generate(model, prompts, config, row_seeds, batch_size, progress, steerers, header_lens, record: bool,
              texts=None):
    check_instance("config", config, SamplingConfig)
    check_int("batch_size", batch_size, minimum=1)
    if any(is_int(p) for p in prompts):
        raise TypeError("prompts must be a list of token id lists, one per prompt, got a flat list of ids: pass [ids]")
    if row_seeds is not None:
        row_seeds = [check_int(f"row_seeds[{i}]", s) for i, s in enumerate(row_seeds)]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list = [None] * len(prompts)
    lambdas: list = [None] * len(prompts)
    decisions: list = [None] * len(prompts)
    if texts is not None and len(texts) != len(prompts):
        raise ValueError(f"{len(texts)} texts for {len(prompts)} prompts")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="generating", disable=not progress, leave=False):
        seeds = [row_seeds[i] for i in batch] if row_seeds is not None else None
        heads = [header_lens[i] for i in batch] if header_lens is not None else None
        words = [texts[i] for i in batch] if texts is not None else None
        ids, lams, decs = _generate_batch(model, [prompts[i] for i in batch], config, seeds, steerers, heads, record,
                                          texts=words)
        for k, i in enumerate(batch):
            results[i] = ids[k]
            lambdas[i] = lams[k] if lams is not None else None
            decisions[i] = decs[k] if decs is not None else None
    return results, lambdas, decisions


@dataclass(frozen=True)
class Generation:
    """One generated answer.

    Attributes:
        ids: generated token ids, with the end-of-turn token when one came.
        text: the decoded answer (special tokens dropped, stripped).
        header_len: length of the assistant header, the first positions of the steered span.
        lambdas: with steerers, one ``[n_layers, header_len + len(ids), rank]`` tensor per
            steerer: the per-token lambda read at each of its layers on the header and on every
            generated token (what a heat map of the answer draws); ``None`` without steerers.
        decisions: with gated steerers, one :class:`~workbench.core.intervention.RowDecision` per gated
            steerer (in the order given): whether and how strongly this answer was steered, the
            gate's score, and why a gate failed; ``None`` without gated steerers.
    """

    question: str
    instruction: str | None
    ids: list[int]
    text: str
    header_len: int
    lambdas: tuple[torch.Tensor, ...] | None = None
    decisions: tuple[RowDecision, ...] | None = None

    @property
    def steered(self) -> bool | None:
        """Whether any gated steerer acted on this answer (``None`` without gated steerers)."""
        return None if self.decisions is None else any(d.steered for d in self.decisions)


def answer_seed(seed: int, question: str) -> int:
    """The sampling seed of a question's answer: the same for every method and strength, so that
    comparisons across ``alpha`` use common random numbers."""
    return sample_seed(seed, question, "<answer>", 0)


def generate_answers(
    model: LoadedModel,
    questions: Sequence[str],
    *,
    instruction: str | None = None,
    steerers: Sequence[tuple] = (),
    config: SamplingConfig = SamplingConfig(),
    seed: int = 0,
    placement: str = "auto",
    base_system: str | None = None,
    batch_size: int = 16,
    record_lambdas: bool = True,
    progress: bool = True,
) -> list[Generation]:
    """Answer ``questions``, optionally with ``instruction`` and steerers; the user-level entry point.

    Builds the chat prompts, generates in batches (seeded per question with :func:`answer_seed`,
    so sampling needs no seeds from the caller; greedy when ``config.temperature == 0``), decodes,
    and with steerers returns per-token lambda (``record_lambdas``). Runs without autograd.

    Args:
        steerers: steerers at a strength, ``[a_psr.at(1.0)]`` (or ``1.0 * a_psr``, or the older
            ``(steerer, alpha)`` pairs); several stack. Gated steerers (``gate.then(a_psr.at(1.0))``)
            act only on the rows their gate accepts; the text gates read the question.
        placement, base_system: where the instruction goes and the base system prompt (see
            :func:`workbench.core.chat.build_messages`).

    Example:
        >>> from workbench.core.models import load_model
        >>> model = load_model("tiny-random-llama", n_layers=2)
        >>> [a] = generate_answers(model, ["How do I boil an egg?"], instruction="Talk like a pirate.",
        ...                        config=SamplingConfig(max_new_tokens=5), progress=False)
        >>> a.instruction, len(a.ids) <= 5, a.lambdas is None
        ('Talk like a pirate.', True, True)
    """
    questions = check_str_sequence("questions", questions)
    if not questions:
        raise ValueError("no questions to answer")
    seed = check_int("seed", seed)
    steerers = check_steerers(steerers)
    built = [prompt_ids(model.tokenizer, q, instruction, placement, base_system) for q in questions]
    seeds = [answer_seed(seed, q) for q in questions]
    ids, lambdas, decisions = _generate(model, [p for p, _ in built], config, seeds, batch_size, progress,
                                        steerers, [h for _, h in built], record=record_lambdas and bool(steerers),
                                        texts=questions)
    return [
        Generation(q, instruction, out, model.tokenizer.decode(out, skip_special_tokens=True).strip(), h, lam, dec)
        for q, (_, h), out, lam, dec in zip(questions, built, ids, lambdas, decisions)
    ]
