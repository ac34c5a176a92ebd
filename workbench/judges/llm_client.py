"""The HTTP side of the LLM judges: where the judge model is (:class:`LLMJudgeConfig`) and how it is
asked (:class:`ChatClient`: retries, a disk cache, a circuit breaker).

The client POSTs JSON to ``{base_url}/chat/completions`` of any OpenAI-compatible endpoint (hosted
APIs, vLLM, llama.cpp server, Ollama) using only the standard library
(:func:`workbench.judges.llm_http.post`).

Deadlines: ``max_total_s`` is a wall-clock limit on the whole call (connecting, sending, the reply
headers and body, every retry and every wait), however the server sends: a reply still trickling
in at the deadline is cut there, with a reason that says so. ``timeout_s`` bounds each single wait
(connecting, or a silence while reading). A judge's ``score_batch`` also ends by ``max_batch_s``
when it is set: every request in the batch ends by then, and a judgement not made by then is a
failed score. :meth:`ChatClient.within` puts any block of calls under such a deadline.

Size: a 2xx reply may hold at most ``max_reply_bytes`` (1 MB by default). A larger
``Content-Length`` is refused before the body is read, a body that grows past the cap is cut
there; neither is retried (the reply would not shrink), and nothing over the cap is cached.

Transport: timeouts, connection errors, HTTP 429 and 5xx are retried with exponential backoff
(``backoff_s * 2**attempt``; a ``Retry-After`` header, capped at :data:`RETRY_AFTER_CAP_S`, is
honoured when longer), at most ``max_retries`` times and never past ``max_total_s`` in all; other
4xx answers, malformed JSON and answers without a choice are not retried. Every failure raises
:class:`JudgeRequestError`, which the judges turn into a failed score (``Score(None, reason,
failed=True)``).

Circuit breaker: after ``breaker_after`` connection failures in a row (refused, reset,
unreachable; timeouts do not count, a slow server is not a gone one) the client stops trying: every
later call that the cache cannot answer fails at once with one message saying the endpoint is
unreachable, logged once, instead of paying the retry budget per call. It stays open for the life
of the client (one run); a new client, i.e. a rerun, tries again.

Cache: answers that carry a choice are stored as JSON under ``cache_dir`` (default
``$WORKBENCH_CACHE_DIR/judge``, else ``$XDG_CACHE_HOME/workbench/judge`` or
``~/.cache/workbench/judge``), keyed by :func:`workbench.core.fingerprint.fingerprint` of
(base_url, model, request body), written atomically with a checksum and verified when read (a
corrupt entry is ignored with a warning and asked again). A hit makes no HTTP call. Failures, and
answers with no choice, are never stored, so a rerun after an outage asks again; nor is an answer
that, as written to the file, is over ``max_reply_bytes``. With ``temperature > 0`` a hit replays
the first sample.

The API key is only ever put in the ``Authorization`` header: it is hidden from the config's
``repr``, never written to the cache, never logged and scrubbed from failure reasons.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from workbench.core.checked_files import read_json, write_json
from workbench.core.files import cache_root
from workbench.core.fingerprint import fingerprint
from workbench.judges.llm_http import Deadline, DeadlineReached, HTTPReply, ReplyTooLarge, post, route_for

__all__ = [
    "LLMJudgeConfig",
    "JudgeRequestError",
    "ChatClient",
    "RETRY_AFTER_CAP_S",
    "ENV_SETTINGS",
    "default_cache_dir",
]

logger = logging.getLogger(__name__)

RETRY_AFTER_CAP_S = 60.0
"""Longest wait honoured from a ``Retry-After`` header (the total budget also applies)."""

_ERROR_SNIPPET = 200

ENV_SETTINGS: Mapping[str, tuple[str, type]] = {
    "timeout_s": ("WORKBENCH_JUDGE_TIMEOUT_S", float),
    "max_retries": ("WORKBENCH_JUDGE_MAX_RETRIES", int),
    "max_total_s": ("WORKBENCH_JUDGE_MAX_TOTAL_S", float),
    "breaker_after": ("WORKBENCH_JUDGE_BREAKER_AFTER", int),
    "max_batch_s": ("WORKBENCH_JUDGE_MAX_BATCH_S", float),
    "max_reply_bytes": ("WORKBENCH_JUDGE_MAX_REPLY_BYTES", int),
}
"""Config fields that :meth:`LLMJudgeConfig.from_env` reads from the environment (variable, type)."""


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
    trailing ``/`` is dropped. ``timeout_s`` bounds each wait for the server within an attempt
    (connecting, or a silence while reading; 120 s by default: a 0/1/2 rating with its explanation
    takes tens of seconds on a CPU server), ``max_total_s`` the whole call by the clock, including
    retries and waits, however the server sends. ``max_batch_s`` (``None``: no limit but each
    call's) bounds a judge's ``score_batch`` as a whole; ``max_reply_bytes`` is the largest reply
    read (1 MB). ``breaker_after`` connection failures in a row stop the client from trying (0:
    never). ``cache_dir=None`` means :func:`default_cache_dir`; ``cache=False`` disables the disk
    cache. The API key never appears in ``repr``.
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 120
    max_retries: int = 4
    backoff_s: float = 0.5
    max_total_s: float = 300
    cache_dir: str | os.PathLike[str] | None = None
    temperature: float = 0.0
    cache: bool = True
    breaker_after: int = 6
    max_batch_s: float | None = None
    max_reply_bytes: int = 1_000_000

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
        for name in ("max_retries", "breaker_after"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"LLMJudgeConfig: {name} must be an int >= 0, got {value!r}")
        if not self.backoff_s >= 0:
            raise ValueError(f"LLMJudgeConfig: backoff_s must be >= 0, got {self.backoff_s}")
        if not self.max_total_s > 0:
            raise ValueError(f"LLMJudgeConfig: max_total_s must be > 0, got {self.max_total_s}")
        if not self.temperature >= 0:
            raise ValueError(f"LLMJudgeConfig: temperature must be >= 0, got {self.temperature}")
        if self.max_batch_s is not None and not self.max_batch_s > 0:
            raise ValueError(f"LLMJudgeConfig: max_batch_s must be > 0 or None, got {self.max_batch_s}")
        cap = self.max_reply_bytes
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            raise ValueError(f"LLMJudgeConfig: max_reply_bytes must be an int >= 1, got {cap!r}")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'None' if self.api_key is None else repr('***')}" if f.name == "api_key"
            else f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"LLMJudgeConfig({shown})"

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
        (required). ``api_key``: ``WORKBENCH_JUDGE_API_KEY``, else ``OPENAI_API_KEY``.
        ``timeout_s``, ``max_retries``, ``max_total_s``, ``breaker_after``, ``max_batch_s`` and
        ``max_reply_bytes``: the variables of :data:`ENV_SETTINGS` (``WORKBENCH_JUDGE_TIMEOUT_S``,
        ``WORKBENCH_JUDGE_MAX_RETRIES``, ``WORKBENCH_JUDGE_MAX_TOTAL_S``,
        ``WORKBENCH_JUDGE_BREAKER_AFTER``, ``WORKBENCH_JUDGE_MAX_BATCH_S``,
        ``WORKBENCH_JUDGE_MAX_REPLY_BYTES``). Returns ``None`` when the model or the base URL is
        missing; raises ``ValueError`` naming the variable when a value is present but invalid.
        ``overrides`` set fields and win over the environment.
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
        settings: dict[str, Any] = {}
        for name, (variable, kind) in ENV_SETTINGS.items():
            text = get(variable)
            if text is None or name in overrides:
                continue
            try:
                settings[name] = kind(text)
            except ValueError:
                raise ValueError(
                    f"{variable} must be {'an integer' if kind is int else 'a number'}, got {text!r}"
                ) from None
        try:
            return cls(base_url=base_url, model=model, api_key=api_key, **{**settings, **overrides})
        except ValueError as err:
            named = [ENV_SETTINGS[n][0] for n in settings if n in str(err)]
            raise ValueError(f"{err}{f' (from {named[0]})' if named else ''}") from None


# --------------------------------------------------------------------------- transport


class JudgeRequestError(Exception):
    """A chat-completions call that failed for good (after any retries).

    ``status`` is the HTTP status when there was one; ``detail`` is a short, key-free excerpt of
    the error body; ``unreachable`` is true when the circuit breaker refused the call. The message
    never contains the API key.
    """

    def __init__(self, message: str, status: int | None = None, detail: str = "",
                 unreachable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.unreachable = unreachable


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None,
                 connection: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.connection = connection  # no server answered (counts toward the circuit breaker)


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


def _has_choice(response: Mapping[str, Any]) -> bool:
    choices = response.get("choices")
    return isinstance(choices, list) and bool(choices) and isinstance(choices[0], Mapping)


class ChatClient:
    """POSTs chat-completions requests, with retries, the disk cache and the circuit breaker.

    :meth:`complete` returns the parsed JSON response (always with at least one choice) or raises
    :class:`JudgeRequestError`. ``http_requests`` counts HTTP attempts, ``cache_hits`` the answers
    served from disk; ``unreachable`` holds the breaker's message once it has opened. Requests go
    through the environment's proxy as with urllib (read when the client is built); those to
    loopback hosts bypass any proxy. Thread-safe.
    """

    def __init__(self, config: LLMJudgeConfig) -> None:
        if not isinstance(config, LLMJudgeConfig):
            raise TypeError(f"ChatClient needs an LLMJudgeConfig, got {type(config).__name__}")
        self.config = config
        self._route = route_for(config.base_url + "/chat/completions")
        self._thread = threading.local()  # this thread's deadline from within()
        self._lock = threading.Lock()
        self._counts = {"http_requests": 0, "cache_hits": 0}
        self._connection_failures = 0
        self._unreachable: str | None = None

    def __repr__(self) -> str:
        return f"ChatClient({self.config!r})"

    @property
    def http_requests(self) -> int:
        return self._counts["http_requests"]

    @property
    def cache_hits(self) -> int:
        return self._counts["cache_hits"]

    @property
    def unreachable(self) -> str | None:
        """The circuit breaker's message once it has opened, else ``None``."""
        return self._unreachable

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    # -- secrets
    def redact(self, text: str) -> str:
        """``text`` with the API key (if any) replaced by ``***``."""
        key = self.config.api_key
        return text.replace(key, "***") if key else text

    # -- cache
    def cache_key(self, body: Mapping[str, Any]) -> str:
        """Fingerprint of (base_url, model, request body); the API key is not part of it."""
        return fingerprint(
            {"base_url": self.config.base_url, "model": self.config.model, "body": dict(body)},
            length=64,
        )

    def cache_path(self, key: str) -> Path:
        return self.config.resolved_cache_dir / key[:2] / f"{key}.json"

    def _cache_get(self, key: str) -> dict[str, Any] | None:
        if not self.config.cache:
            return None
        path = self.cache_path(key)
        try:
            record = read_json(path, legacy_ok=True)  # entries written before checksums are read as they are
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:  # corrupt (CorruptFileError) or unreadable: ask the server again
            logger.warning("ignoring unreadable judge cache file %s: %s", path, err)
            return None
        response = record.get("response") if isinstance(record, dict) else None
        return response if isinstance(response, dict) and _has_choice(response) else None

    def _cache_put(self, key: str, body: Mapping[str, Any], response: Mapping[str, Any]) -> None:
        if not self.config.cache:
            return
        path = self.cache_path(key)
        stored = len(json.dumps(response, ensure_ascii=False, indent=1).encode("utf-8"))
        if stored > self.config.max_reply_bytes:  # re-encoded, a reply under the cap can grow past it
            logger.warning("not caching a judge reply of %d bytes as written: over max_reply_bytes=%d",
                           stored, self.config.max_reply_bytes)
            return
        record = {
            "base_url": self.config.base_url,
            "model": self.config.model,
            "request": body,
            "response": response,
            "created": time.time(),
        }
        redacted = json.loads(self.redact(json.dumps(record, ensure_ascii=False)))
        try:
            write_json(path, redacted)
        except OSError as err:  # a cache that cannot be written is not a failed judgement
            logger.warning("could not write judge cache file %s: %s", path, err)

    # -- circuit breaker
    def _connection_failed(self, reason: str) -> None:
        limit = self.config.breaker_after
        with self._lock:
            self._connection_failures += 1
            if not limit or self._connection_failures < limit or self._unreachable is not None:
                return
            self._unreachable = self.redact(
                f"judge endpoint {self.config.base_url} is unreachable: {self._connection_failures} "
                f"connection failures in a row (last: {reason}); no further judge requests in this "
                "run, the missing judgements are retried on the next run"
            )
        logger.warning("%s", self._unreachable)

    def _answered(self) -> None:
        with self._lock:
            self._connection_failures = 0

    def reset_breaker(self) -> None:
        """Close the circuit breaker (e.g. after restarting the server) and clear its count."""
        with self._lock:
            self._connection_failures = 0
            self._unreachable = None

    # -- deadlines
    @contextmanager
    def within(self, deadline: Deadline | None) -> Iterator[None]:
        """Calls made by this thread inside the block end by ``deadline`` too, as well as by their
        own ``max_total_s`` and any outer block's deadline (``None``: no further limit); a judge's
        ``score_batch`` puts each judgement under the batch's.

        Example:
            >>> client = ChatClient(LLMJudgeConfig("http://127.0.0.1:8000/v1", "judge"))
            >>> with client.within(Deadline.after(2, "max_batch_s=2")):
            ...     client.deadline().label
            'max_batch_s=2'
            >>> client.deadline().label
            'max_total_s=300'
        """
        outer = getattr(self._thread, "deadline", None)
        self._thread.deadline = outer if deadline is None else deadline.earlier(outer)
        try:
            yield
        finally:
            self._thread.deadline = outer

    def deadline(self) -> Deadline:
        """The deadline of a call starting now in this thread: ``max_total_s`` from now, or the
        deadline of :meth:`within` when that comes first."""
        own = Deadline.after(self.config.max_total_s, f"max_total_s={self.config.max_total_s:g}")
        return own.earlier(getattr(self._thread, "deadline", None))

    # -- HTTP
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "Connection": "close", "User-Agent": "workbench-llm-judge"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def _attempt(self, data: bytes, deadline: Deadline, timeout: float) -> dict[str, Any]:
        """One HTTP attempt: the parsed JSON, or raises _Retryable / JudgeRequestError /
        DeadlineReached."""
        import http.client  # only needed once a request is sent (see llm_http._connection)

        self._count("http_requests")
        try:
            reply = post(self._route, data, self._headers(), deadline=deadline, timeout=timeout,
                         max_reply_bytes=self.config.max_reply_bytes, error_bytes=_ERROR_SNIPPET)
        except ReplyTooLarge as err:  # a server that answered; asking again would not shrink it
            self._answered()
            raise JudgeRequestError(self.redact(str(err))) from None
        except TimeoutError:
            raise _Retryable(f"timed out after {timeout:.3g}s") from None
        except (OSError, http.client.HTTPException) as err:
            reason = f"connection error: {type(err).__name__}: {err}"
            raise _Retryable(self.redact(reason), connection=True) from None
        self._answered()
        return self._answer_of(reply)

    def _answer_of(self, reply: HTTPReply) -> dict[str, Any]:
        """The parsed JSON of a reply with a choice, or raises _Retryable / JudgeRequestError."""
        status, raw = reply.status, reply.body
        if not 200 <= status <= 299:
            detail = self.redact(raw[:_ERROR_SNIPPET].decode("utf-8", "replace")).strip()
            reason = f"HTTP {status}" + (f": {detail}" if detail else "")
            if status == 429 or 500 <= status <= 599:
                raise _Retryable(reason, _parse_retry_after(reply.headers.get("Retry-After")))
            raise JudgeRequestError(reason, status=status, detail=detail)
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
        if not _has_choice(parsed):
            error = parsed.get("error")
            raise JudgeRequestError(
                self.redact(f"response has no choices{f' (error: {error})' if error else ''}"),
                status=status,
            )
        return parsed

    def complete(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The response to ``body`` (a chat-completions request), from the cache or the server."""
        body = dict(body)
        body.setdefault("model", self.config.model)
        key = self.cache_key(body)
        cached = self._cache_get(key)
        if cached is not None:
            self._count("cache_hits")
            return cached
        if self._unreachable is not None:
            raise JudgeRequestError(self._unreachable, unreachable=True)
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        cfg = self.config
        deadline = self.deadline()
        attempts = 0
        last = "no attempt made"
        while True:
            remaining = deadline.remaining()
            if remaining <= 0:
                last += f"; stopped: {deadline.label} reached"
                break
            attempts += 1
            try:
                response = self._attempt(data, deadline, min(cfg.timeout_s, remaining))
            except _Retryable as err:
                last = err.reason
                if err.connection:
                    self._connection_failed(err.reason)
                if self._unreachable is not None:
                    raise JudgeRequestError(self._unreachable, unreachable=True) from None
                if attempts > cfg.max_retries:
                    break
                delay = cfg.backoff_s * (2 ** (attempts - 1))
                if err.retry_after is not None:
                    delay = max(delay, min(err.retry_after, RETRY_AFTER_CAP_S))
                if delay >= deadline.remaining():
                    last += f"; stopped: waiting {delay:.3g}s would pass {deadline.label}"
                    break
                logger.info("judge request failed (%s); retry %d in %.3gs", last, attempts, delay)
                time.sleep(delay)
                continue
            except DeadlineReached as err:  # the reason names the deadline; no time is left
                last = self.redact(str(err))
                break
            except JudgeRequestError as err:
                raise JudgeRequestError(
                    self.redact(f"{err} (attempt {attempts}, not retried)"),
                    status=err.status, detail=err.detail,
                ) from None
            self._cache_put(key, body, response)
            return response
        raise JudgeRequestError(self.redact(f"request failed after {attempts} attempt(s): {last}"))
