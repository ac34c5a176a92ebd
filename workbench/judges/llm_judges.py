"""LLM judges on any OpenAI-compatible chat-completions endpoint (DESIGN.md section 5).

Both implement the :class:`~workbench.judges.base.Judge` protocol and talk to the endpoint through a
:class:`~workbench.judges.llm_client.ChatClient` (retries, disk cache, circuit breaker):

* :class:`ScoreJudge` (persona-style 0-100). The judge model is asked for one integer 0-100 with
  ``logprobs: true, top_logprobs: 20, max_tokens: 3``. The score is the probability-weighted mean
  of the integer answers (tokens ``"0"`` .. ``"100"``, surrounding whitespace ignored) among the
  top log-probs of the *first* generated token, renormalised over the integer mass; when that
  mass is below ``min_integer_mass`` (0.25) there is no score. When the endpoint returns no
  log-probs, the first integer in the reply text is used (none, or outside 0-100: no score).
  Built for an attribute (given its description) or, with ``attribute=None``, for coherence.

  Tokenizers that split numbers into digits (SmolLM2, Qwen2.5, Llama 2 and many other open judges
  generate "85" as "8", "5") would put that first-token mean on a 0-9 scale. With
  ``scale="auto"`` (the default) the judge watches for it: when a reply's number came out over
  several tokens, it asks the same rubric on **one digit from 0 to 9** from then on (a digit is a
  single token on every tokenizer), takes the probability-weighted mean over the digit tokens and
  rescales it to 0-100 (``x 100/9``). A first token that is a single digit with no multi-digit
  alternative, before the tokenizer is known, is scored on the 0-9 scale too (one extra request);
  a multi-digit integer token settles that the tokenizer keeps whole numbers. ``scale="0-100"``
  reproduces the plain persona convention (a split is only flagged in the reason) and
  ``scale="0-9"`` always uses digits. Reading the probability of each complete number by following
  the digit continuation was not chosen: the endpoint returns the continuation of the sampled
  first digit only.
* :class:`RatingJudge` (AxBench-style). Three prompts rate concept presence, instruction
  relevance and fluency on 0/1/2; each rating is read from the text after the *last*
  ``Rating:``: no marker or no number counts as 0 (AxBench), a number off the scale
  (``"Rating: 0.15"``) is missing, with its reason. The three are combined by harmonic mean (any 0
  gives 0) and scaled to 0-100, so ratings (2, 2, 2) score 100 and (2, 1, 2) score 75.

A failed request (unreachable endpoint, HTTP error, malformed answer, circuit breaker open, a
deadline passed) never raises out of ``score`` / ``score_batch``: it becomes ``Score(None, reason,
failed=True)``, which callers must not store as a result. A judge's own "no score" (low integer
mass, no number in the reply, a rating off the scale, an empty response) has ``failed=False``.

``score_batch`` judges on up to :data:`MAX_WORKERS` threads and, with the config's
``max_batch_s``, ends by that deadline: every request of the batch ends by it, and a judgement not
made by then is a failed score.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from workbench.judges.base import Score, check_batch
from workbench.judges.llm_client import ChatClient, JudgeRequestError, LLMJudgeConfig
from workbench.judges.llm_http import Deadline
from workbench.judges.llm_parsing import (
    combine_ratings,
    content_of,
    digit_evidence,
    first_choice,
    first_token_logprobs,
    parse_score_text,
    read_rating,
    score_from_top_logprobs,
)
from workbench.judges.llm_prompts import (
    ATTRIBUTE_PROMPT,
    ATTRIBUTE_PROMPT_DIGIT,
    COHERENCE_PROMPT,
    COHERENCE_PROMPT_DIGIT,
    RATING_PROMPTS,
    fill,
)

__all__ = [
    "ScoreJudge",
    "RatingJudge",
    "Ratings",
    "make_llm_judges",
    "JUDGE_STYLES",
    "SCALES",
    "MAX_WORKERS",
    "TOP_LOGPROBS",
]

logger = logging.getLogger(__name__)

MAX_WORKERS = 4
TOP_LOGPROBS = 20
"""How many first-token alternatives a :class:`ScoreJudge` asks for."""
JUDGE_STYLES = ("score", "rating")
SCALES = ("auto", "0-100", "0-9")


class _LLMJudgeBase:
    name: str = "llm"

    def __init__(self, config: LLMJudgeConfig, client: ChatClient | None, max_workers: int) -> None:
        if client is None:
            client = ChatClient(config)
        elif client.config != config:
            raise ValueError("client was built for a different config")
        self.config = config
        self.client = client
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be an int >= 1, got {max_workers!r}")
        self.max_workers = min(MAX_WORKERS, max_workers)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, config={self.config!r})"

    def _score_one(self, question: str, response: str) -> Score:
        raise NotImplementedError

    def score(self, question: str, response: str) -> Score:
        if not isinstance(question, str) or not isinstance(response, str):
            raise TypeError(f"{self.name}: question and response must be str")
        try:
            return self._score_one(question, response)
        except JudgeRequestError as err:
            return Score(None, self.client.redact(f"{self.name}: {err}"), failed=True)
        except Exception as err:  # noqa: BLE001 - a judge failure must not abort an evaluation
            logger.warning("%s: unexpected judge error: %s", self.name, type(err).__name__)
            return Score(None, self.client.redact(f"{self.name}: {type(err).__name__}: {err}"),
                         failed=True)

    def _endpoint_identity(self) -> dict[str, Any]:
        """What of the config changes a score: where the judge is, which model, how it samples."""
        return {"base_url": self.config.base_url, "model": self.config.model,
                "temperature": self.config.temperature}

    def score_batch(self, questions: Sequence[str], responses: Sequence[str]) -> list[Score]:
        """The scores of (question, response) pairs, in order; with the config's ``max_batch_s``,
        by that deadline (a judgement not made by then is a failed score)."""
        check_batch(questions, responses)
        pairs = list(zip(questions, responses))
        limit = self.config.max_batch_s
        deadline = None if limit is None else Deadline.after(limit, f"max_batch_s={limit:g}")
        if self.max_workers == 1 or len(pairs) <= 1:
            return [self._score_by(deadline, q, r) for q, r in pairs]
        return self._score_in_pool(pairs, deadline)

    def _score_by(self, deadline: Deadline | None, question: str, response: str) -> Score:
        with self.client.within(deadline):
            return self.score(question, response)

    def _score_in_pool(self, pairs: list[tuple[str, str]], deadline: Deadline | None) -> list[Score]:
        pool = ThreadPoolExecutor(max_workers=min(self.max_workers, len(pairs)))
        try:
            futures = [pool.submit(self._score_by, deadline, q, r) for q, r in pairs]
            wait(futures, timeout=None if deadline is None else max(0.0, deadline.remaining()))
            return [f.result() if f.done() else self._not_judged(deadline) for f in futures]
        finally:
            # not waiting for judgements still under way at the deadline: their requests end by it
            pool.shutdown(wait=False, cancel_futures=True)

    def _not_judged(self, deadline: Deadline) -> Score:
        return Score(None, f"{self.name}: not judged by {deadline.label}", failed=True)


class ScoreJudge(_LLMJudgeBase):
    """Persona-style 0-100 judge: an attribute judge, or a coherence judge when
    ``attribute`` is ``None``.

    ``prompt`` overrides the 0-100 template and ``digit_prompt`` the 0-9 one (fields
    ``{question}``, ``{answer}``, ``{attribute}``); with a custom ``prompt`` and no
    ``digit_prompt``, a digit-splitting tokenizer gives failed scores that say so. ``scale``:
    ``"auto"``, ``"0-100"`` or ``"0-9"`` (see the module docstring). An empty response scores
    ``None`` for an attribute and 0 for coherence (as the offline judges do) without a request.
    When the endpoint answers 400/422 to a request with ``logprobs`` and the error mentions
    log-probs, the judge retries once without them and parses the text from then on.
    """

    def __init__(
        self,
        config: LLMJudgeConfig,
        attribute: str | None = None,
        *,
        name: str | None = None,
        prompt: str | None = None,
        digit_prompt: str | None = None,
        scale: str = "auto",
        min_integer_mass: float = 0.25,
        max_tokens: int = 3,
        max_workers: int = MAX_WORKERS,
        client: ChatClient | None = None,
    ) -> None:
        super().__init__(config, client, max_workers)
        if attribute is not None and (not isinstance(attribute, str) or not attribute.strip()):
            raise ValueError("ScoreJudge: attribute description is empty")
        if not 0.0 <= min_integer_mass <= 1.0:
            raise ValueError(f"min_integer_mass must be in [0, 1], got {min_integer_mass}")
        if scale not in SCALES:
            raise ValueError(f"ScoreJudge: unknown scale {scale!r}; expected one of {SCALES}")
        self.attribute = attribute
        self.kind = "coherence" if attribute is None else "attribute"
        self.name = name or f"llm_{self.kind}"
        self.prompt = prompt or (COHERENCE_PROMPT if attribute is None else ATTRIBUTE_PROMPT)
        if digit_prompt is None and prompt is None:
            digit_prompt = COHERENCE_PROMPT_DIGIT if attribute is None else ATTRIBUTE_PROMPT_DIGIT
        if scale == "0-9" and digit_prompt is None:
            raise ValueError("ScoreJudge: scale='0-9' with a custom prompt needs a digit_prompt")
        self.digit_prompt = digit_prompt
        self.scale = scale
        self.min_integer_mass = min_integer_mass
        self.max_tokens = max_tokens
        self._logprobs_supported = True
        self._digits: bool | None = {"auto": None, "0-100": False, "0-9": True}[scale]
        self._lock = threading.Lock()

    def fingerprint_identity(self) -> dict[str, Any]:
        """What this judge's scores depend on (:func:`~workbench.judges.base.judge_fingerprint`):
        the endpoint, model and temperature, the attribute, both prompts, the scale and how the
        reply is read; not the API key, timeouts, retries, cache or threads, nor what it has
        learnt of the tokenizer (``scale`` decides that).

        Example:
            >>> from workbench.judges.base import judge_fingerprint
            >>> config = LLMJudgeConfig("http://127.0.0.1:8000/v1", "judge")
            >>> ScoreJudge(config, "Talks like a pirate.").fingerprint_identity()["scale"]
            'auto'
            >>> judge_fingerprint(ScoreJudge(config, "pirate")) == judge_fingerprint(ScoreJudge(config, "Pirate"))
            False
        """
        return {**self._endpoint_identity(), "kind": self.kind, "attribute": self.attribute,
                "prompt": self.prompt, "digit_prompt": self.digit_prompt, "scale": self.scale,
                "min_integer_mass": self.min_integer_mass, "max_tokens": self.max_tokens,
                "top_logprobs": TOP_LOGPROBS}

    @property
    def digit_splitting(self) -> bool | None:
        """Whether the judge's tokenizer splits numbers into digits, as far as seen (``None``:
        not known yet); when true, scores come from the 0-9 prompt rescaled to 0-100."""
        return self._digits

    def request_body(self, question: str, response: str, logprobs: bool = True,
                     digits: bool | None = None) -> dict[str, Any]:
        """The chat-completions request sent for one (question, response); ``digits`` picks the
        0-9 prompt (default: what is known of the tokenizer)."""
        digits = bool(self._digits) if digits is None else digits
        template = self.digit_prompt if digits else self.prompt
        if template is None:
            raise ValueError(f"{self.name}: no digit_prompt for a tokenizer that splits numbers")
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [
                {"role": "user", "content": fill(template, question, response, self.attribute or "")}
            ],
            "temperature": self.config.temperature,
            "max_tokens": self.max_tokens,
        }
        if logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = TOP_LOGPROBS
        return body

    def _learn(self, splits: bool) -> None:
        with self._lock:
            if self._digits is not None:
                return
            self._digits = splits
        if splits:
            logger.info("%s: the judge's tokenizer splits numbers into digits; scoring on a 0-9 "
                        "scale rescaled to 0-100 from now on", self.name)

    def _score_one(self, question: str, response: str) -> Score:
        if not response.strip():
            return Score(0.0 if self.kind == "coherence" else None, "empty response")
        if self._logprobs_supported:
            digits = bool(self._digits)
            try:
                answer = self.client.complete(self.request_body(question, response, True, digits))
            except JudgeRequestError as err:
                if err.status in (400, 422) and "logprob" in (err.detail or str(err)).lower():
                    self._logprobs_supported = False
                    logger.info("%s: endpoint rejects logprobs; parsing text instead", self.name)
                else:
                    raise
            else:
                score, evidence = self._read(answer, digits)
                if digits or self.scale != "auto":
                    return score
                if evidence == "whole":
                    self._learn(False)
                elif evidence == "split":
                    if self.digit_prompt is None:
                        return Score(None, f"{self.name}: the judge's tokenizer splits numbers into "
                                           "digits; give ScoreJudge a digit_prompt (0-9) or "
                                           "scale='0-100'", failed=True)
                    self._learn(True)
                    return self._digit_score(question, response)
                elif evidence == "ambiguous" and self._digits is None and self.digit_prompt:
                    return self._digit_score(question, response)
                return score
        digits = bool(self._digits)
        answer = self.client.complete(self.request_body(question, response, False, digits))
        return self._read(answer, digits)[0]

    def _digit_score(self, question: str, response: str) -> Score:
        answer = self.client.complete(self.request_body(question, response, True, True))
        return self._read(answer, True)[0]

    def read_response(self, response: Mapping[str, Any], digits: bool | None = None) -> Score:
        """The score carried by a chat-completions response to the 0-100 prompt (``digits``: to
        the 0-9 prompt; default: what is known of the tokenizer)."""
        return self._read(response, bool(self._digits) if digits is None else digits)[0]

    def _read(self, response: Mapping[str, Any], digits: bool) -> tuple[Score, str]:
        """(score, what the reply says about the tokenizer, see :func:`digit_evidence`)."""
        choice = first_choice(response)
        text = content_of(choice)
        top_scale = 9 if digits else 100
        first = first_token_logprobs(choice)
        if first is None:
            value = parse_score_text(text, top_scale)
            if value is None:
                return Score(None, f"no logprobs and no integer 0-{top_scale} in reply "
                                   f"{text[:80]!r}"), "none"
            if digits:
                return Score(value * 100.0 / 9, f"{value}/9 parsed from text (no logprobs; 0-9 "
                                                f"scale rescaled to 0-100): {text[:40]!r}"), "none"
            return Score(float(value), f"parsed from text (no logprobs): {text[:40]!r}"), "none"
        token, top = first
        evidence = "none" if digits else digit_evidence(token, top, text)
        value, mass = score_from_top_logprobs(top, self.min_integer_mass, top_scale)
        if value is None:
            return Score(None, f"integer probability mass {mass:.3f} < {self.min_integer_mass} on "
                               f"the first token (reply {text[:40]!r})"), evidence
        if digits:
            return Score(value * 100.0 / 9,
                         f"logprob-weighted mean {value:.2f} on the 0-9 scale (the judge's "
                         f"tokenizer splits numbers), rescaled to 0-100; digit mass {mass:.3f} "
                         f"(reply {text[:40]!r})"), evidence
        reason = f"logprob-weighted mean, integer mass {mass:.3f} (reply {text[:40]!r})"
        if evidence == "split":
            reason += (f"; first token {token.strip()!r} is not the whole number "
                       f"{parse_score_text(text)}")
        return Score(value, reason), evidence


@dataclass(frozen=True)
class Ratings:
    """The three AxBench-style ratings of one response (0, 1 or 2 each; ``None`` when the reply's
    rating was off the scale) and the replies they came from. ``notes`` says, per criterion, why a
    rating was counted as 0 or is missing. ``error`` is set when a request failed; then ``value``
    is ``None`` and the score is a failed one."""

    concept: float | None = 0.0
    instruction: float | None = 0.0
    fluency: float | None = 0.0
    replies: Mapping[str, str] = field(default_factory=dict, repr=False)
    error: str | None = None
    notes: Mapping[str, str] = field(default_factory=dict)

    @property
    def ratings(self) -> dict[str, float | None]:
        return {"concept": self.concept, "instruction": self.instruction, "fluency": self.fluency}

    @property
    def value(self) -> float | None:
        """Harmonic mean on 0-100 (``None`` after a failed request or with a rating off the scale)."""
        values = list(self.ratings.values())
        if self.error is not None or any(v is None for v in values):
            return None
        return combine_ratings(values)

    def as_score(self) -> Score:
        if self.error is not None:
            return Score(None, self.error, failed=True)
        shown = " ".join(f"{c}={'missing' if v is None else f'{v:g}'}" for c, v in self.ratings.items())
        notes = "; ".join(f"{c}: {n}" for c, n in self.notes.items() if n)
        value = self.value
        if value is None:
            return Score(None, f"{shown}: {notes}")
        return Score(value, f"{shown} (harmonic mean, 0-2 scaled to 0-100)"
                            + (f"; {notes}" if notes else ""))


class RatingJudge(_LLMJudgeBase):
    """AxBench-style judge: concept, instruction-relevance and fluency ratings (0/1/2) combined
    by harmonic mean into 0-100.

    ``concept`` is the attribute description; the question is the instruction. ``prompts``
    overrides some of :data:`~workbench.judges.llm_prompts.RATING_PROMPTS`. Each rating request
    uses ``max_tokens`` (room for a short explanation before ``Rating:``). An empty response
    scores 0 without a request.
    """

    criteria = ("concept", "instruction", "fluency")

    def __init__(
        self,
        config: LLMJudgeConfig,
        concept: str,
        *,
        name: str = "llm_rating",
        prompts: Mapping[str, str] | None = None,
        max_tokens: int = 256,
        max_workers: int = MAX_WORKERS,
        client: ChatClient | None = None,
    ) -> None:
        super().__init__(config, client, max_workers)
        if not isinstance(concept, str) or not concept.strip():
            raise ValueError("RatingJudge: concept description is empty")
        unknown = set(prompts or {}) - set(self.criteria)
        if unknown:
            raise ValueError(
                f"RatingJudge: unknown criteria {sorted(unknown)}; known {self.criteria}"
            )
        self.concept = concept
        self.name = name
        self.prompts = {**RATING_PROMPTS, **(prompts or {})}
        self.max_tokens = max_tokens

    def fingerprint_identity(self) -> dict[str, Any]:
        """What this judge's scores depend on (:func:`~workbench.judges.base.judge_fingerprint`):
        the endpoint, model and temperature, the concept, the three prompts and ``max_tokens``;
        not the API key, timeouts, retries, cache or threads.

        Example:
            >>> config = LLMJudgeConfig("http://127.0.0.1:8000/v1", "judge")
            >>> RatingJudge(config, "pirate speech").fingerprint_identity()["concept"]
            'pirate speech'
        """
        return {**self._endpoint_identity(), "concept": self.concept, "prompts": dict(self.prompts),
                "criteria": list(self.criteria), "max_tokens": self.max_tokens}

    def request_body(self, criterion: str, question: str, response: str) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "messages": [
                {"role": "user",
                 "content": fill(self.prompts[criterion], question, response, self.concept)}
            ],
            "temperature": self.config.temperature,
            "max_tokens": self.max_tokens,
        }

    def rate(self, question: str, response: str) -> Ratings:
        """The three ratings of ``response`` (never raises for a failed request)."""
        if not response.strip():
            return Ratings(error=None, replies={c: "" for c in self.criteria})
        values: dict[str, float | None] = {}
        replies: dict[str, str] = {}
        notes: dict[str, str] = {}
        for criterion in self.criteria:
            try:
                answer = self.client.complete(self.request_body(criterion, question, response))
                text = content_of(first_choice(answer))
            except (JudgeRequestError, ValueError) as err:
                return Ratings(**values, replies=replies,
                               error=self.client.redact(f"{self.name} ({criterion}): {err}"))
            replies[criterion] = text
            values[criterion], notes[criterion] = read_rating(text)
        return Ratings(**values, replies=replies, notes={c: n for c, n in notes.items() if n})

    def _score_one(self, question: str, response: str) -> Score:
        if not response.strip():
            return Score(0.0, "empty response")
        return self.rate(question, response).as_score()


def make_llm_judges(config: LLMJudgeConfig, attribute: str, style: str = "score",
                    scale: str = "auto") -> tuple[ScoreJudge | RatingJudge, ScoreJudge]:
    """The (attribute judge, coherence judge) pair of an evaluation run on an LLM endpoint.

    ``style="score"``: persona-style 0-100 scores for both, read from the first token's
    log-probabilities (:class:`ScoreJudge`, on ``scale``). ``style="rating"``: the attribute side
    is AxBench's harmonic mean of the concept, instruction and fluency ratings
    (:class:`RatingJudge`); coherence stays a 0-100 score, so that the strength search has a
    coherence target to aim at. Both judges share one :class:`ChatClient`, so one circuit breaker
    and one count of requests.

    Args:
        attribute: a description of the attribute in words (e.g. the bundled attribute's
            ``description``), which the rubric shows the judge.
    """
    if style not in JUDGE_STYLES:
        raise ValueError(f"unknown judge style {style!r}; expected one of {JUDGE_STYLES}")
    client = ChatClient(config)
    coherence = ScoreJudge(config, scale=scale, client=client)
    if style == "score":
        return ScoreJudge(config, attribute=attribute, scale=scale, client=client), coherence
    return RatingJudge(config, concept=attribute, client=client), coherence
