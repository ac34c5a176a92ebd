"""LLM judges for any OpenAI-compatible chat-completions endpoint (DESIGN.md section 5).

Works with hosted APIs and local servers (vLLM, llama.cpp server, Ollama): the judge POSTs JSON
to ``{base_url}/chat/completions`` using only the standard library. Two scoring styles, both
implementing the :class:`workbench.judges.offline.Judge` protocol:

* :class:`ScoreJudge` (persona-style 0-100). The judge model is asked for one integer 0-100 with
  ``logprobs: true, top_logprobs: 20, max_tokens: 3``. The score is the probability-weighted mean
  of the integer answers (tokens ``"0"`` .. ``"100"``, surrounding whitespace ignored) among the
  top log-probs of the *first* generated token, renormalised over the integer mass; when that
  mass is below ``min_integer_mass`` (0.25) there is no score. When the endpoint returns no
  log-probs, the first integer in the reply text is used (none, or outside 0-100: no score).
  Built for an attribute (given its description) or, with ``attribute=None``, for coherence.
* :class:`RatingJudge` (AxBench-style). Three prompts rate concept presence, instruction
  relevance and fluency on 0/1/2; each rating is read from the text after the *last*
  ``Rating:`` (unparseable = 0); the three are combined by harmonic mean (any 0 gives 0) and
  scaled to 0-100, so ratings (2, 2, 2) score 100 and (2, 1, 2) score 75. The sub-ratings are in
  the score's reason and in :meth:`RatingJudge.rate`'s :class:`Ratings`.

Configuration is a frozen :class:`LLMJudgeConfig`; :meth:`LLMJudgeConfig.from_env` reads
``WORKBENCH_JUDGE_BASE_URL``, ``WORKBENCH_JUDGE_MODEL`` and ``WORKBENCH_JUDGE_API_KEY`` (falling
back to ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``) and returns ``None`` when no judge is
configured. The API key is only ever put in the ``Authorization`` header: it is hidden from the
config's ``repr``, never written to the cache, never logged and scrubbed from failure reasons.

Transport: timeouts, connection errors, HTTP 429 and 5xx are retried with exponential backoff
(``backoff_s * 2**attempt``; a ``Retry-After`` header, capped at :data:`RETRY_AFTER_CAP_S`, is
honoured when longer), at most ``max_retries`` times and never past ``max_total_s`` in all; other
4xx answers and malformed JSON are not retried. A failure never raises out of ``score`` /
``score_batch``: it becomes ``Score(None, reason)``.

Cache: successful responses are stored as JSON under ``cache_dir`` (default
``$WORKBENCH_CACHE_DIR/judge``, else ``$XDG_CACHE_HOME/workbench/judge`` or
``~/.cache/workbench/judge``), keyed by the SHA-256 of (base_url, model, request body); files are
written atomically (temporary file + ``os.replace``). A hit makes no HTTP call; failures are not
cached. With ``temperature > 0`` a hit replays the first sample.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import ipaddress
import json
import logging
import math
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.core.files import atomic_write_bytes, cache_root
from workbench.judges.offline import Score, _check_batch

__all__ = [
    "LLMJudgeConfig",
    "JudgeRequestError",
    "ChatClient",
    "ScoreJudge",
    "RatingJudge",
    "Ratings",
    "ATTRIBUTE_PROMPT",
    "COHERENCE_PROMPT",
    "RATING_PROMPTS",
    "RETRY_AFTER_CAP_S",
    "default_cache_dir",
    "score_from_top_logprobs",
    "parse_score_text",
    "parse_rating",
    "combine_ratings",
]

logger = logging.getLogger(__name__)

RETRY_AFTER_CAP_S = 60.0
"""Longest wait honoured from a ``Retry-After`` header (the total budget also applies)."""

MAX_WORKERS = 4
_ERROR_SNIPPET = 200


# --------------------------------------------------------------------------- configuration


def default_cache_dir() -> Path:
    """``$WORKBENCH_CACHE_DIR/judge``, else ``$XDG_CACHE_HOME/workbench/judge`` or
    ``~/.cache/workbench/judge`` (the same root as the model cache)."""
    return cache_root() / "judge"


@dataclass(frozen=True)
class LLMJudgeConfig:
    """Where and how to reach the judge model.

    ``base_url`` is the API root that ``/chat/completions`` is appended to, e.g.
    ``https://api.openai.com/v1``, ``http://127.0.0.1:8000/v1`` (vLLM),
    ``http://127.0.0.1:8080/v1`` (llama.cpp) or ``http://127.0.0.1:11434/v1`` (Ollama); a
    trailing ``/`` is dropped. ``timeout_s`` bounds each attempt, ``max_total_s`` the whole call
    including retries and waits. ``cache_dir=None`` means :func:`default_cache_dir`;
    ``cache=False`` disables the disk cache. The API key never appears in ``repr``.
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 30
    max_retries: int = 4
    backoff_s: float = 0.5
    max_total_s: float = 120
    cache_dir: str | os.PathLike[str] | None = None
    temperature: float = 0.0
    cache: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.base_url, str) or not self.base_url.strip():
            raise ValueError("LLMJudgeConfig: base_url is empty")
        url = self.base_url.strip().rstrip("/")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"LLMJudgeConfig: base_url must be an http(s) URL such as "
                f"'http://127.0.0.1:8000/v1', got {url!r}"
            )
        object.__setattr__(self, "base_url", url)
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("LLMJudgeConfig: model is empty")
        if self.api_key is not None and not isinstance(self.api_key, str):
            raise TypeError("LLMJudgeConfig: api_key must be a str or None")
        if self.api_key is not None and not self.api_key.strip():
            object.__setattr__(self, "api_key", None)
        if not self.timeout_s > 0:
            raise ValueError(f"LLMJudgeConfig: timeout_s must be > 0, got {self.timeout_s}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(
                f"LLMJudgeConfig: max_retries must be an int >= 0, got {self.max_retries}"
            )
        if not self.backoff_s >= 0:
            raise ValueError(f"LLMJudgeConfig: backoff_s must be >= 0, got {self.backoff_s}")
        if not self.max_total_s > 0:
            raise ValueError(f"LLMJudgeConfig: max_total_s must be > 0, got {self.max_total_s}")
        if not self.temperature >= 0:
            raise ValueError(f"LLMJudgeConfig: temperature must be >= 0, got {self.temperature}")

    def __repr__(self) -> str:
        key = "None" if self.api_key is None else "'***'"
        return (
            f"LLMJudgeConfig(base_url={self.base_url!r}, model={self.model!r}, api_key={key}, "
            f"timeout_s={self.timeout_s!r}, max_retries={self.max_retries!r}, "
            f"backoff_s={self.backoff_s!r}, max_total_s={self.max_total_s!r}, "
            f"cache_dir={self.cache_dir!r}, temperature={self.temperature!r}, cache={self.cache!r})"
        )

    __str__ = __repr__

    @property
    def resolved_cache_dir(self) -> Path:
        """The cache directory actually used."""
        if self.cache_dir is None:
            return default_cache_dir()
        return Path(self.cache_dir).expanduser()

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> LLMJudgeConfig | None:
        """The judge configured by environment variables, or ``None`` when there is none.

        ``base_url``: ``WORKBENCH_JUDGE_BASE_URL``, else ``OPENAI_BASE_URL``, else (only when an
        API key is set) ``https://api.openai.com/v1``. ``model``: ``WORKBENCH_JUDGE_MODEL``
        (required). ``api_key``: ``WORKBENCH_JUDGE_API_KEY``, else ``OPENAI_API_KEY``. Returns
        ``None`` when the model or the base URL is missing; raises ``ValueError`` when the values
        are present but invalid. ``overrides`` set other fields (e.g. ``timeout_s=10``).
        """
        env = os.environ if environ is None else environ

        def get(*names: str) -> str | None:
            for n in names:
                v = env.get(n)
                if v and v.strip():
                    return v.strip()
            return None

        model = get("WORKBENCH_JUDGE_MODEL")
        api_key = get("WORKBENCH_JUDGE_API_KEY", "OPENAI_API_KEY")
        base_url = get("WORKBENCH_JUDGE_BASE_URL", "OPENAI_BASE_URL")
        if base_url is None and api_key is not None:
            base_url = "https://api.openai.com/v1"
        if model is None or base_url is None:
            return None
        return cls(base_url=base_url, model=model, api_key=api_key, **overrides)


# --------------------------------------------------------------------------- transport


class JudgeRequestError(Exception):
    """A chat-completions call that failed for good (after any retries).

    ``status`` is the HTTP status when there was one; ``detail`` is a short, key-free excerpt of
    the error body. The message never contains the API key.
    """

    def __init__(self, message: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds, fractional accepted, or an HTTP
    date); ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


class _Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.http_requests = 0
        self.cache_hits = 0

    def add(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)


class ChatClient:
    """POSTs chat-completions requests, with retries and the disk cache.

    :meth:`complete` returns the parsed JSON response or raises :class:`JudgeRequestError`.
    ``http_requests`` counts HTTP attempts, ``cache_hits`` the answers served from disk.
    Requests to loopback hosts bypass any ``http_proxy`` from the environment. Thread-safe.
    """

    def __init__(self, config: LLMJudgeConfig) -> None:
        if not isinstance(config, LLMJudgeConfig):
            raise TypeError(f"ChatClient needs an LLMJudgeConfig, got {type(config).__name__}")
        self.config = config
        self._url = config.base_url + "/chat/completions"
        host = urllib.parse.urlsplit(self._url).hostname
        handlers = [urllib.request.ProxyHandler({})] if _is_loopback(host) else []
        self._opener = urllib.request.build_opener(*handlers)
        self._stats = _Stats()

    def __repr__(self) -> str:
        return f"ChatClient({self.config!r})"

    @property
    def http_requests(self) -> int:
        return self._stats.http_requests

    @property
    def cache_hits(self) -> int:
        return self._stats.cache_hits

    # -- secrets
    def redact(self, text: str) -> str:
        """``text`` with the API key (if any) replaced by ``***``."""
        key = self.config.api_key
        return text.replace(key, "***") if key else text

    # -- cache
    def cache_key(self, body: Mapping[str, Any]) -> str:
        """SHA-256 of (base_url, model, request body); the key is not part of it."""
        blob = json.dumps(
            {"base_url": self.config.base_url, "model": self.config.model, "body": body},
            sort_keys=True, ensure_ascii=False, separators=(",", ":"),
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def cache_path(self, key: str) -> Path:
        return self.config.resolved_cache_dir / key[:2] / f"{key}.json"

    def _cache_get(self, key: str) -> dict[str, Any] | None:
        if not self.config.cache:
            return None
        path = self.cache_path(key)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            logger.warning("ignoring unreadable judge cache file %s: %s", path, err)
            return None
        response = record.get("response") if isinstance(record, dict) else None
        return response if isinstance(response, dict) else None

    def _cache_put(self, key: str, body: Mapping[str, Any], response: Mapping[str, Any]) -> None:
        if not self.config.cache:
            return
        path = self.cache_path(key)
        record = {
            "base_url": self.config.base_url,
            "model": self.config.model,
            "request": body,
            "response": response,
            "created": time.time(),
        }
        text = self.redact(json.dumps(record, ensure_ascii=False, indent=1))
        try:
            atomic_write_bytes(path, text.encode("utf-8"))
        except OSError as err:  # a cache that cannot be written is not a failed judgement
            logger.warning("could not write judge cache file %s: %s", path, err)

    # -- HTTP
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def _attempt(self, data: bytes, timeout: float) -> dict[str, Any]:
        """One HTTP attempt: the parsed JSON, or raises _Retryable / JudgeRequestError."""
        request = urllib.request.Request(
            self._url, data=data, headers=self._headers(), method="POST"
        )
        self._stats.add("http_requests")
        try:
            with self._opener.open(request, timeout=timeout) as resp:
                status = resp.status
                raw = resp.read()
        except urllib.error.HTTPError as err:
            status = err.code
            try:
                raw = err.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            detail = self.redact(raw[:_ERROR_SNIPPET].decode("utf-8", "replace")).strip()
            if status == 429 or 500 <= status <= 599:
                header = err.headers.get("Retry-After") if err.headers else None
                retry_after = _parse_retry_after(header)
                raise _Retryable(f"HTTP {status}" + (f": {detail}" if detail else ""), retry_after)
            raise JudgeRequestError(
                f"HTTP {status}" + (f": {detail}" if detail else ""), status=status, detail=detail
            ) from None
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"timed out after {timeout:.3g}s") from None
            raise _Retryable(self.redact(f"connection error: {reason}")) from None
        except (TimeoutError, socket.timeout):
            raise _Retryable(f"timed out after {timeout:.3g}s") from None
        except (OSError, http.client.HTTPException) as err:
            reason = f"connection error: {type(err).__name__}: {err}"
            raise _Retryable(self.redact(reason)) from None
        try:
            parsed = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            snippet = self.redact(raw[:80].decode("utf-8", "replace"))
            raise JudgeRequestError(
                f"malformed JSON in HTTP {status} response ({err}): {snippet!r}", status=status
            ) from None
        if not isinstance(parsed, dict):
            raise JudgeRequestError(
                f"response JSON is a {type(parsed).__name__}, not an object", status=status
            )
        return parsed

    def complete(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The response to ``body`` (a chat-completions request), from the cache or the server."""
        body = dict(body)
        body.setdefault("model", self.config.model)
        key = self.cache_key(body)
        cached = self._cache_get(key)
        if cached is not None:
            self._stats.add("cache_hits")
            return cached
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        cfg = self.config
        deadline = time.monotonic() + cfg.max_total_s
        attempts = 0
        last = "no attempt made"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                last += f"; stopped: max_total_s={cfg.max_total_s:g} reached"
                break
            attempts += 1
            try:
                response = self._attempt(data, min(cfg.timeout_s, remaining))
            except _Retryable as err:
                last = err.reason
                if attempts > cfg.max_retries:
                    break
                delay = cfg.backoff_s * (2 ** (attempts - 1))
                if err.retry_after is not None:
                    delay = max(delay, min(err.retry_after, RETRY_AFTER_CAP_S))
                if time.monotonic() + delay >= deadline:
                    last += (
                        f"; stopped: waiting {delay:.3g}s would pass "
                        f"max_total_s={cfg.max_total_s:g}"
                    )
                    break
                logger.info("judge request failed (%s); retry %d in %.3gs", last, attempts, delay)
                time.sleep(delay)
                continue
            except JudgeRequestError as err:
                raise JudgeRequestError(
                    self.redact(f"{err} (attempt {attempts}, not retried)"),
                    status=err.status, detail=err.detail,
                ) from None
            self._cache_put(key, body, response)
            return response
        raise JudgeRequestError(self.redact(f"request failed after {attempts} attempt(s): {last}"))


# --------------------------------------------------------------------------- response helpers


def _first_choice(response: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        error = response.get("error")
        raise JudgeRequestError(f"response has no choices{f' (error: {error})' if error else ''}")
    return choices[0]


def _content_of(choice: Mapping[str, Any]) -> str:
    message = choice.get("message")
    content = message.get("content") if isinstance(message, Mapping) else None
    if content is None:
        content = choice.get("text")  # legacy completions shape
    return content if isinstance(content, str) else ""


_INT_TOKEN = re.compile(r"[0-9]{1,3}")


def score_from_top_logprobs(
    top_logprobs: Sequence[Mapping[str, Any]], min_mass: float = 0.25
) -> tuple[float | None, float]:
    """(weighted mean, integer mass) over the integer tokens 0..100 of one position's top
    log-probs (``[{"token": "80", "logprob": -0.69}, ...]``; whitespace around a token is
    ignored, tokens that read as the same integer add up). The mean is ``None`` when the mass
    is below ``min_mass`` (or zero)."""
    mass = 0.0
    weighted = 0.0
    for entry in top_logprobs:
        if not isinstance(entry, Mapping):
            continue
        token, logprob = entry.get("token"), entry.get("logprob")
        if not isinstance(token, str) or not isinstance(logprob, (int, float)):
            continue
        text = token.strip()
        if not _INT_TOKEN.fullmatch(text) or not math.isfinite(logprob):
            continue
        value = int(text)
        if value > 100:
            continue
        p = math.exp(logprob)
        mass += p
        weighted += p * value
    if mass <= 0.0 or mass < min_mass:
        return None, mass
    return min(100.0, max(0.0, weighted / mass)), mass


_FIRST_INT = re.compile(r"(?<![0-9])-?[0-9]+")


def parse_score_text(text: str) -> int | None:
    """The first integer in ``text`` when it is in 0..100, else ``None`` (``"-5"``, ``"150"``,
    no number)."""
    m = _FIRST_INT.search(text or "")
    if m is None:
        return None
    value = int(m.group(0))
    return value if 0 <= value <= 100 else None


def parse_rating(text: str, max_rating: float = 2.0) -> float:
    """The rating after the *last* ``Rating:`` in ``text`` (AxBench convention): the rest of that
    line, without brackets, quotes, asterisks or a final period, read as a number in
    ``[0, max_rating]``; anything else (no ``Rating:``, not a number, out of range) gives 0."""
    if not isinstance(text, str) or "Rating:" not in text:
        return 0.0
    tail = text.rsplit("Rating:", 1)[1].strip()
    line = tail.split("\n", 1)[0].strip()
    line = line.replace("[", "").replace("]", "").strip()
    line = line.rstrip(".").strip().strip('"').strip("'").strip("*").strip()
    try:
        value = float(line)
    except ValueError:
        return 0.0
    if not math.isfinite(value) or not 0.0 <= value <= max_rating:
        return 0.0
    return value


def combine_ratings(ratings: Sequence[float], max_rating: float = 2.0) -> float:
    """Harmonic mean of ``ratings`` (0 when any is 0), scaled so ``max_rating`` gives 100."""
    if not ratings:
        raise ValueError("combine_ratings needs at least one rating")
    if any(r <= 0 for r in ratings):
        return 0.0
    hm = len(ratings) / sum(1.0 / r for r in ratings)
    return min(100.0, 100.0 * hm / max_rating)


# --------------------------------------------------------------------------- prompts

ATTRIBUTE_PROMPT = """\
You are grading one reply written by an AI assistant for a single attribute.

The attribute:
{attribute}

[Question]
{question}
[End of question]

[Reply]
{answer}
[End of reply]

How strongly does the reply show the attribute? Use a scale from 0 to 100: 0 means there is no \
trace of it, 50 means it is clearly present but not dominant, and 100 means the whole reply \
expresses it as strongly as possible. Grade only the attribute: ignore whether the reply is \
correct, helpful, polite or well written.

Answer with one integer from 0 to 100 and nothing else."""

COHERENCE_PROMPT = """\
You are grading one reply written by an AI assistant for coherence only.

[Question]
{question}
[End of question]

[Reply]
{answer}
[End of reply]

How coherent is the reply? Use a scale from 0 to 100: 0 means gibberish, broken or endlessly \
repeated text, or text with no relation to the question; 50 means it can be understood but has \
confused, contradictory or rambling passages; 100 means clear, fluent, well-organised text that \
makes sense as a reply to the question. Do not grade correctness, helpfulness, tone or persona: \
an unusual style or an answer you disagree with can still be fully coherent.

Answer with one integer from 0 to 100 and nothing else."""

_RATING_FORMAT = (
    "First explain your reasoning in one or two sentences. Then, on the last line, give the "
    'rating in exactly this form: "Rating: [[score]]", where score is 0, 1 or 2.'
)

RATING_PROMPTS: Mapping[str, str] = {
    "concept": (
        "[Criterion: concept]\n"
        "Judge whether a concept is present in a text fragment written by an AI model. The "
        "fragment may be cut off mid-sentence; do not penalise that.\n\n"
        "Give 0 when the concept does not appear at all, 1 when it appears only weakly, "
        "indirectly or in passing, and 2 when it is clearly and meaningfully present.\n\n"
        + _RATING_FORMAT
        + "\n\n[Concept]\n{attribute}\n[End of concept]\n\n"
        "[Text fragment]\n{answer}\n[End of text fragment]"
    ),
    "instruction": (
        "[Criterion: instruction]\n"
        "Judge whether a text fragment written by an AI model is a relevant response to an "
        "instruction. The fragment may be cut off or written in an unusual style; judge only "
        "whether it addresses the instruction.\n\n"
        "Give 0 when it is unrelated to the instruction, 1 when it is somewhat related or only "
        "partly addresses it, and 2 when it clearly addresses the instruction.\n\n"
        + _RATING_FORMAT
        + "\n\n[Instruction]\n{question}\n[End of instruction]\n\n"
        "[Text fragment]\n{answer}\n[End of text fragment]"
    ),
    "fluency": (
        "[Criterion: fluency]\n"
        "Judge the fluency of a text fragment written by an AI model: grammar, word choice and "
        "readability, regardless of its topic, style or correctness. The fragment may be cut off "
        "mid-sentence; do not penalise that.\n\n"
        "Give 0 when it is not fluent (broken grammar, gibberish, heavy repetition), 1 when it is "
        "mostly readable but awkward or with clear errors, and 2 when it reads fluently.\n\n"
        + _RATING_FORMAT
        + "\n\n[Text fragment]\n{answer}\n[End of text fragment]"
    ),
}
"""The three AxBench-style prompts; fields ``{attribute}`` (the concept), ``{question}`` (the
instruction) and ``{answer}`` (the response)."""


def _fill(template: str, question: str, answer: str, attribute: str) -> str:
    return template.format_map({"question": question, "answer": answer, "attribute": attribute})


# --------------------------------------------------------------------------- judges


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
            return Score(None, self.client.redact(f"{self.name}: {err}"))
        except Exception as err:  # noqa: BLE001 - a judge failure must not abort an evaluation
            logger.warning("%s: unexpected judge error: %s", self.name, type(err).__name__)
            return Score(None, self.client.redact(f"{self.name}: {type(err).__name__}: {err}"))

    def score_batch(self, questions: Sequence[str], responses: Sequence[str]) -> list[Score]:
        _check_batch(questions, responses)
        pairs = list(zip(questions, responses))
        if self.max_workers == 1 or len(pairs) <= 1:
            return [self.score(q, r) for q, r in pairs]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(pairs))) as pool:
            return list(pool.map(lambda qr: self.score(*qr), pairs))


class ScoreJudge(_LLMJudgeBase):
    """Persona-style 0-100 judge: an attribute judge, or a coherence judge when
    ``attribute`` is ``None``.

    ``prompt`` overrides the template (fields ``{question}``, ``{answer}``, ``{attribute}``).
    An empty response scores ``None`` for an attribute and 0 for coherence (as the offline
    judges do) without a request. When the endpoint answers 400/422 to a request with
    ``logprobs`` and the error mentions log-probs, the judge retries once without them and
    parses the text from then on.
    """

    def __init__(
        self,
        config: LLMJudgeConfig,
        attribute: str | None = None,
        *,
        name: str | None = None,
        prompt: str | None = None,
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
        self.attribute = attribute
        self.kind = "coherence" if attribute is None else "attribute"
        self.name = name or f"llm_{self.kind}"
        self.prompt = prompt or (COHERENCE_PROMPT if attribute is None else ATTRIBUTE_PROMPT)
        self.min_integer_mass = min_integer_mass
        self.max_tokens = max_tokens
        self._logprobs_supported = True

    def request_body(self, question: str, response: str, logprobs: bool = True) -> dict[str, Any]:
        """The chat-completions request sent for one (question, response)."""
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [
                {
                    "role": "user",
                    "content": _fill(self.prompt, question, response, self.attribute or ""),
                }
            ],
            "temperature": self.config.temperature,
            "max_tokens": self.max_tokens,
        }
        if logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = 20
        return body

    def _score_one(self, question: str, response: str) -> Score:
        if not response.strip():
            return Score(0.0 if self.kind == "coherence" else None, "empty response")
        if self._logprobs_supported:
            try:
                answer = self.client.complete(self.request_body(question, response, True))
            except JudgeRequestError as err:
                if err.status in (400, 422) and "logprob" in (err.detail or str(err)).lower():
                    self._logprobs_supported = False
                    logger.info("%s: endpoint rejects logprobs; parsing text instead", self.name)
                else:
                    raise
            else:
                return self.read_response(answer)
        answer = self.client.complete(self.request_body(question, response, False))
        return self.read_response(answer)

    def read_response(self, response: Mapping[str, Any]) -> Score:
        """The score carried by a chat-completions response (see the module docstring)."""
        choice = _first_choice(response)
        text = _content_of(choice)
        logprobs = choice.get("logprobs")
        content_lp = logprobs.get("content") if isinstance(logprobs, Mapping) else None
        if isinstance(content_lp, list) and content_lp and isinstance(content_lp[0], Mapping):
            first = content_lp[0]
            top = first.get("top_logprobs")
            if not isinstance(top, list) or not top:
                top = [first]  # only the sampled token was returned
            value, mass = score_from_top_logprobs(top, self.min_integer_mass)
            if value is None:
                return Score(
                    None,
                    f"integer probability mass {mass:.3f} < {self.min_integer_mass} on the first "
                    f"token (reply {text[:40]!r})",
                )
            reason = f"logprob-weighted mean, integer mass {mass:.3f} (reply {text[:40]!r})"
            first_token = str(first.get("token", "")).strip()
            text_int = parse_score_text(text)
            if (
                _INT_TOKEN.fullmatch(first_token)
                and text_int is not None
                and str(text_int) != first_token
            ):
                reason += f"; first token {first_token!r} is not the whole number {text_int}"
            return Score(value, reason)
        value = parse_score_text(text)
        if value is None:
            return Score(None, f"no logprobs and no integer 0-100 in reply {text[:80]!r}")
        return Score(float(value), f"parsed from text (no logprobs): {text[:40]!r}")


@dataclass(frozen=True)
class Ratings:
    """The three AxBench-style ratings of one response (0-2 each) and the replies they came
    from. ``error`` is set when a request failed; then ``value`` is ``None``."""

    concept: float = 0.0
    instruction: float = 0.0
    fluency: float = 0.0
    replies: Mapping[str, str] = field(default_factory=dict, repr=False)
    error: str | None = None

    @property
    def value(self) -> float | None:
        """Harmonic mean on 0-100 (``None`` after a failed request)."""
        if self.error is not None:
            return None
        return combine_ratings([self.concept, self.instruction, self.fluency])

    def as_score(self) -> Score:
        if self.error is not None:
            return Score(None, self.error)
        return Score(
            self.value,
            f"concept={self.concept:g} instruction={self.instruction:g} fluency={self.fluency:g} "
            "(harmonic mean, 0-2 scaled to 0-100)",
        )


class RatingJudge(_LLMJudgeBase):
    """AxBench-style judge: concept, instruction-relevance and fluency ratings (0/1/2) combined
    by harmonic mean into 0-100.

    ``concept`` is the attribute description; the question is the instruction. ``prompts``
    overrides some of :data:`RATING_PROMPTS`. Each rating request uses ``max_tokens`` (room for
    a short explanation before ``Rating:``). An empty response scores 0 without a request.
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

    def request_body(self, criterion: str, question: str, response: str) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "messages": [
                {
                    "role": "user",
                    "content": _fill(self.prompts[criterion], question, response, self.concept),
                }
            ],
            "temperature": self.config.temperature,
            "max_tokens": self.max_tokens,
        }

    def rate(self, question: str, response: str) -> Ratings:
        """The three ratings of ``response`` (never raises for a failed request)."""
        if not response.strip():
            return Ratings(error=None, replies={c: "" for c in self.criteria})
        values: dict[str, float] = {}
        replies: dict[str, str] = {}
        for criterion in self.criteria:
            try:
                answer = self.client.complete(self.request_body(criterion, question, response))
                text = _content_of(_first_choice(answer))
            except JudgeRequestError as err:
                return Ratings(**values, replies=replies,
                               error=self.client.redact(f"{self.name} ({criterion}): {err}"))
            replies[criterion] = text
            values[criterion] = parse_rating(text)
        return Ratings(**values, replies=replies)

    def _score_one(self, question: str, response: str) -> Score:
        if not response.strip():
            return Score(0.0, "empty response")
        return self.rate(question, response).as_score()


JUDGE_STYLES = ("score", "rating")


def make_llm_judges(config: LLMJudgeConfig, attribute: str, style: str = "score") -> tuple[_LLMJudgeBase, ScoreJudge]:
    """The (attribute judge, coherence judge) pair of an evaluation run on an LLM endpoint.

    ``style="score"``: persona-style 0-100 scores for both, read from the first token's
    log-probabilities (:class:`ScoreJudge`). ``style="rating"``: the attribute side is AxBench's
    harmonic mean of the concept, instruction and fluency ratings (:class:`RatingJudge`); coherence
    stays a 0-100 score, so that the strength search has a coherence target to aim at.

    Args:
        attribute: a description of the attribute in words (e.g. the bundled attribute's
            ``description``), which the rubric shows the judge.
    """
    if style not in JUDGE_STYLES:
        raise ValueError(f"unknown judge style {style!r}; expected one of {JUDGE_STYLES}")
    if style == "score":
        return ScoreJudge(config, attribute=attribute), ScoreJudge(config)
    return RatingJudge(config, concept=attribute), ScoreJudge(config)
