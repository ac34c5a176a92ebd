"""Offline judges: score a model response on a 0-100 scale with no network (DESIGN.md section 5).

The offline judges implement the :class:`~workbench.judges.base.Judge` protocol; they are
deterministic and need no network and no model:

* attribute judges, built from the ``judge`` spec of an attribute JSON file by :func:`make_judge`:
  :class:`LexiconJudge` (persona word density), :class:`UppercaseJudge` (shouting),
  :class:`EmojiJudge` (emoji density), :class:`StopwordLanguageJudge` (language identification),
  :class:`BrevityJudge` (short answers) and :class:`FunctionJudge` (wraps a user's plain
  ``(response) -> float`` function);
* :class:`CoherenceJudge`, a text-heuristic coherence proxy that can blend in the response's mean
  token log-probability under a model.

An attribute judge gives ``Score(None, reason)`` for an empty or whitespace-only response; the
coherence judge gives 0 (an empty answer is not a coherent answer, and strength searches need a
number).
"""

from __future__ import annotations

import math
import re
import unicodedata
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.judges.base import Judge, Score, check_batch

__all__ = [
    "BaseJudge",
    "LexiconJudge",
    "UppercaseJudge",
    "EmojiJudge",
    "StopwordLanguageJudge",
    "BrevityJudge",
    "FunctionJudge",
    "CoherenceJudge",
    "AttributeJudge",
    "JUDGE_FACTORIES",
    "make_judge",
    "words_of",
    "count_emoji",
]

LogprobFn = Callable[[list[str], list[str]], list[float]]


class BaseJudge:
    """Mixin for per-response judges: implement ``_score_text``; empty text scores ``None``."""

    name: str = "judge"

    def _score_text(self, question: str, response: str) -> Score:
        raise NotImplementedError

    def score(self, question: str, response: str) -> Score:
        if not isinstance(response, str):
            raise TypeError(f"{self.name}: response must be a str, got {type(response).__name__}")
        if not response.strip():
            return Score(None, "empty response")
        return self._score_text(question, response)

    def score_batch(self, questions: Sequence[str], responses: Sequence[str]) -> list[Score]:
        check_batch(questions, responses)
        return [self.score(q, r) for q, r in zip(questions, responses)]


# --------------------------------------------------------------------------- text helpers

_WORD_RE = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def words_of(text: str) -> list[str]:
    """Alphabetic words of ``text`` (letters of any script, inner apostrophes/hyphens kept)."""
    return _WORD_RE.findall(text)


_EMOJI_RANGES = (
    (0x1F000, 0x1FAFF),  # mahjong .. symbols & pictographs extended-A (incl. faces, objects)
    (0x2600, 0x27BF),  # miscellaneous symbols, dingbats
    (0x2B00, 0x2BFF),  # arrows/stars such as the white star
    (0x2300, 0x23FF),  # technical: watch, hourglass, ...
)


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _EMOJI_RANGES) and not (0x1F1E6 <= cp <= 0x1F1FF)


def count_emoji(text: str) -> int:
    """Number of emoji code points (pictographs; skin tones, joiners, flags letters excluded)."""
    return sum(1 for ch in text if _is_emoji(ch) and not (0x1F3FB <= ord(ch) <= 0x1F3FF))


def _density_value(hits: int, n_words: int, per_100_words: float, min_words: int) -> float:
    """100 * min(1, (hits per 100 words) / per_100_words), words counted as >= min_words."""
    rate = 100.0 * hits / max(n_words, min_words)
    return 100.0 * min(1.0, rate / per_100_words)


def _clip01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


# --------------------------------------------------------------------------- attribute judges


@dataclass(frozen=True)
class LexiconJudge(BaseJudge):
    """Persona lexicon density with saturation.

    Matches every entry of ``words`` (literal words or phrases) and ``patterns`` (regular
    expressions, e.g. ``a+r+r+`` for arr/arrr/aarrr) case-insensitively on word boundaries. The
    score is ``100 * min(1, h / per_100_words)`` where ``h`` is the number of matches per 100
    words of the response (words counted as at least ``min_words``, so one hit in a three-word
    reply is not an automatic 100). With the default 2.5 per 100 words, a typical 50-word answer
    that says "Arr" once scores 80 and one that says "Arr ... matey" scores 100; an answer with no
    lexicon word scores 0.
    """

    words: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    per_100_words: float = 2.5
    min_words: int = 20
    name: str = "lexicon"
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        words = tuple(self.words)
        patterns = tuple(self.patterns)
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "patterns", patterns)
        if not words and not patterns:
            raise ValueError(f"{self.name}: lexicon judge needs at least one word or pattern")
        for w in words:
            if not isinstance(w, str) or not w.strip():
                raise ValueError(f"{self.name}: empty or non-string lexicon word {w!r}")
        if self.per_100_words <= 0:
            raise ValueError(f"{self.name}: per_100_words must be > 0, got {self.per_100_words}")
        alternatives = [re.escape(w.strip()).replace(r"\ ", r"\s+") for w in words]
        for p in patterns:
            try:
                re.compile(p)
            except re.error as err:
                raise ValueError(f"{self.name}: invalid lexicon pattern {p!r}: {err}") from err
            alternatives.append(f"(?:{p})")
        # longest alternatives first so that phrases win over their own first word
        alternatives.sort(key=len, reverse=True)
        regex = re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)
        object.__setattr__(self, "_regex", regex)

    def matches(self, response: str) -> list[str]:
        """The lexicon matches found in ``response``, in order."""
        return [m.group(0) for m in self._regex.finditer(response)]

    def _score_text(self, question: str, response: str) -> Score:
        hits = self.matches(response)
        value = _density_value(len(hits), len(words_of(response)), self.per_100_words, self.min_words)
        shown = ", ".join(dict.fromkeys(h.lower() for h in hits))
        return Score(value, f"{len(hits)} lexicon hits" + (f" ({shown})" if shown else ""))


@dataclass(frozen=True)
class UppercaseJudge(BaseJudge):
    """Shouting: the share of letters that are upper case, times 100.

    Counts cased letters only (digits, punctuation and emoji are ignored). Normal prose scores
    2-6, an answer written entirely in capitals scores 100. ``None`` when the response has fewer
    than ``min_letters`` cased letters.
    """

    min_letters: int = 1
    name: str = "uppercase"

    def _score_text(self, question: str, response: str) -> Score:
        letters = [c for c in response if c.isalpha() and (c.isupper() or c.islower())]
        if len(letters) < self.min_letters:
            return Score(None, f"fewer than {self.min_letters} cased letters")
        upper = sum(c.isupper() for c in letters)
        return Score(100.0 * upper / len(letters), f"{upper}/{len(letters)} letters upper case")


@dataclass(frozen=True)
class EmojiJudge(BaseJudge):
    """Emoji density with saturation: ``100 * min(1, e / per_100_words)``.

    ``e`` is the number of emoji per 100 words (words counted as at least ``min_words``). With the
    default 4 per 100 words, two emoji in a 50-word answer score 100, one scores 50, none 0.
    """

    per_100_words: float = 4.0
    min_words: int = 20
    name: str = "emoji"

    def _score_text(self, question: str, response: str) -> Score:
        n = count_emoji(response)
        value = _density_value(n, len(words_of(response)), self.per_100_words, self.min_words)
        return Score(value, f"{n} emoji")


@dataclass(frozen=True)
class StopwordLanguageJudge(BaseJudge):
    """Language identification by stopword ratio.

    Counts the response's words that are stopwords of the target language (``stopwords``) and of
    a reference language (``reference_stopwords``, English by default; words in both lists are
    ignored). The score is ``100 * target / (target + reference)``: 100 for text entirely in the
    target language, 0 for English. ``None`` when fewer than ``min_hits`` stopwords of either
    language occur.
    """

    language: str = "fr"
    stopwords: tuple[str, ...] = ()
    reference_stopwords: tuple[str, ...] = (
        "the", "and", "is", "are", "of", "to", "in", "it", "that", "you", "for", "with", "this",
        "was", "be", "on", "as", "have", "can", "or", "not", "your", "they", "we", "an", "by",
        "at", "from", "but", "what", "how", "if", "will", "which", "their", "its", "a",
    )
    min_hits: int = 3
    name: str = "language"

    def __post_init__(self) -> None:
        if not self.stopwords:
            raise ValueError(f"{self.name}: stopwords for language {self.language!r} are empty")
        object.__setattr__(self, "stopwords", tuple(w.lower() for w in self.stopwords))
        object.__setattr__(
            self, "reference_stopwords", tuple(w.lower() for w in self.reference_stopwords)
        )

    def _score_text(self, question: str, response: str) -> Score:
        target, ref = set(self.stopwords), set(self.reference_stopwords)
        target, ref = target - ref, ref - target
        tokens = [w.lower() for w in re.findall(r"[^\W\d_]+", response)]
        t = sum(w in target for w in tokens)
        r = sum(w in ref for w in tokens)
        if t + r < self.min_hits:
            return Score(None, f"only {t + r} stopwords, cannot identify the language")
        return Score(100.0 * t / (t + r), f"{t} {self.language} vs {r} reference stopwords")


@dataclass(frozen=True)
class BrevityJudge(BaseJudge):
    """Short answers: 100 up to ``full_words`` words, falling linearly to 0 at ``zero_words``."""

    full_words: int = 15
    zero_words: int = 40
    name: str = "brevity"

    def __post_init__(self) -> None:
        if not 0 <= self.full_words < self.zero_words:
            raise ValueError(f"{self.name}: need 0 <= full_words < zero_words")

    def _score_text(self, question: str, response: str) -> Score:
        n = len(words_of(response))
        value = 100.0 * _clip01((self.zero_words - n) / (self.zero_words - self.full_words))
        return Score(value, f"{n} words")


@dataclass(frozen=True)
class FunctionJudge(BaseJudge):
    """Wraps a plain ``(response) -> float`` scorer on 0-100.

    Values outside 0-100 are clipped when ``clip`` is true and raise ``ValueError`` otherwise;
    ``None`` or NaN gives ``Score(None)``. The function may also return a :class:`Score`.
    """

    fn: Callable[[str], float | Score | None]
    name: str = "function"
    clip: bool = True
    #: Bump it when the scorer's behaviour changes in a way its source does not show (a data file it
    #: reads, say): stored scores made with another version are then made again.
    version: int | str | None = None

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"{self.name}: scorer must be callable, got {type(self.fn).__name__}")

    def _score_text(self, question: str, response: str) -> Score:
        out = self.fn(response)
        if isinstance(out, Score):
            return out
        if out is None:
            return Score(None, "scorer returned None")
        try:
            value = float(out)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{self.name}: scorer returned non-numeric {out!r}") from err
        if math.isnan(value):
            return Score(None, "scorer returned NaN")
        if not 0.0 <= value <= 100.0:
            if not self.clip:
                raise ValueError(f"{self.name}: scorer returned {value}, outside 0-100")
            return Score(min(100.0, max(0.0, value)), f"clipped from {value:g}")
        return Score(value)


# --------------------------------------------------------------------------- coherence


@dataclass(frozen=True)
class CoherenceJudge:
    """Coherence proxy on 0-100.

    Text heuristics, each a factor in [0, 1] that is 1 for ordinary prose; the heuristic score is
    100 times their product:

    * length: ``min(1, 0.5 + 0.25 * words)``: one word 0.75, two 1;
    * repetition: the larger of the share of repeated word 3-grams and of duplicated lines; 1 up to
      0.1, falling linearly to 0 at 0.5;
    * vocabulary: moving-average type-token ratio over 20-word windows (plain ratio for shorter
      texts); 1 from 0.5 up, 0 at 0.25 and below;
    * runs: share of characters inside a unit of 1-4 characters repeated 6+ times in a row
      ("!!!!!!!", "o-o-o-o-o-o", emoji strings); factor ``1 - 2 * share``, floored at 0;
    * gibberish: share of tokens that look like words (letters with a vowel, or numbers; emoji and
      punctuation-only tokens ignored) among tokens; 1 from 0.85, 0 at 0.5 and below;
    * compressibility: ``zlib`` size / raw size of texts over 200 bytes; 1 from 0.35, 0 at 0.15.

    With ``logprob_fn`` (``(questions, responses) -> mean log-prob per response token``, in nats),
    the mean log-prob ``lp`` maps to ``100 / (1 + exp(-(lp - lp_mid) / lp_scale))`` (defaults:
    -1.5 nats/token -> 96, -3.5 -> 50, -5 -> 8) and the final score is the weighted geometric mean
    ``heuristic ** (1 - w) * lp_score ** w`` with ``w = logprob_weight``, capped at 100 times the
    repetition and runs factors (``loops_cap``): a loop repeats what the model just wrote, which is
    what it finds most likely, so its likelihood must not buy back what repetition costs. A text
    whose repetition factor is 0.4 scores at most 40 whatever its likelihood (without the cap, 63
    at a likely -1.5 nats per token); ordinary prose (both factors 1) is not touched.
    ``loops_cap=False`` leaves the cap out (the scores before it).
    The likelihood may come from another model than the steered one (``logprob_fn(judge_model)``):
    a model rating its own steered text is a conflict of interest. An empty response scores 0.
    """

    logprob_fn: LogprobFn | None = None
    logprob_weight: float = 0.5
    lp_mid: float = -3.5
    lp_scale: float = 0.6
    loops_cap: bool = True
    name: str = "coherence"

    def __post_init__(self) -> None:
        if not 0.0 <= self.logprob_weight <= 1.0:
            raise ValueError(f"logprob_weight must be in [0, 1], got {self.logprob_weight}")
        if self.lp_scale <= 0:
            raise ValueError(f"lp_scale must be > 0, got {self.lp_scale}")

    # -- heuristics
    def heuristic_factors(self, response: str) -> dict[str, float]:
        """The individual heuristic factors (each in [0, 1]) for ``response``."""
        words = [w.lower() for w in words_of(response)]
        n = len(words)
        factors = {"length": min(1.0, 0.5 + 0.25 * n) if n else 0.0}
        factors["repetition"] = 1.0 - _clip01((_repetition(words, response) - 0.1) / 0.4)
        factors["vocabulary"] = _clip01((_mattr(words, 20) - 0.25) / 0.25) if n else 0.0
        factors["runs"] = _clip01(1.0 - 2.0 * _run_share(response))
        factors["gibberish"] = _clip01((_wordlike_share(response) - 0.5) / 0.35)
        raw = response.encode("utf-8")
        ratio = len(zlib.compress(raw, 9)) / len(raw) if len(raw) > 200 else 1.0
        factors["compressibility"] = _clip01((ratio - 0.15) / 0.2)
        return factors

    def heuristic_score(self, response: str) -> Score:
        """Text-only coherence score (no model)."""
        if not response.strip():
            return Score(0.0, "empty response")
        factors = self.heuristic_factors(response)
        value = 100.0 * math.prod(factors.values())
        bad = [f"{k}={v:.2f}" for k, v in factors.items() if v < 1.0]
        return Score(value, "low: " + ", ".join(bad) if bad else "no heuristic flags")

    def logprob_score(self, mean_logprob: float) -> float:
        """Map a mean token log-prob (nats) to 0-100 with a logistic curve (monotone)."""
        if math.isnan(mean_logprob):
            return 0.0
        z = (mean_logprob - self.lp_mid) / self.lp_scale
        return 100.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def _blend(self, response: str, heuristic: Score, lp: float) -> Score:
        assert heuristic.value is not None
        lp_value = self.logprob_score(lp)
        w = self.logprob_weight
        value = (heuristic.value / 100.0) ** (1 - w) * (lp_value / 100.0) ** w * 100.0
        reason = f"heuristic {heuristic.value:.0f}, logprob {lp:.2f} -> {lp_value:.0f}"
        if self.loops_cap:
            factors = self.heuristic_factors(response)
            cap = 100.0 * factors["repetition"] * factors["runs"]
            if cap < value:
                value, reason = cap, reason + f", capped at {cap:.0f} for repetition"
        return Score(value, reason)

    # -- Judge interface
    def score(self, question: str, response: str) -> Score:
        return self.score_batch([question], [response])[0]

    def score_batch(self, questions: Sequence[str], responses: Sequence[str]) -> list[Score]:
        check_batch(questions, responses)
        heur = [self.heuristic_score(r) for r in responses]
        if self.logprob_fn is None:
            return heur
        todo = [i for i, r in enumerate(responses) if r.strip()]
        out = list(heur)
        if todo:
            lps = self.logprob_fn([questions[i] for i in todo], [responses[i] for i in todo])
            if len(lps) != len(todo):
                raise ValueError(f"logprob_fn returned {len(lps)} values for {len(todo)} responses")
            for i, lp in zip(todo, lps):
                out[i] = self._blend(responses[i], heur[i], float(lp))
        return out


def _repetition(words: list[str], text: str) -> float:
    grams = list(zip(words, words[1:], words[2:]))
    rep_ngrams = 1.0 - len(set(grams)) / len(grams) if grams else 0.0
    lines = [ln.strip().lower() for ln in text.splitlines() if len(ln.strip()) > 3]
    rep_lines = 1.0 - len(set(lines)) / len(lines) if len(lines) >= 3 else 0.0
    return max(rep_ngrams, rep_lines)


def _mattr(words: list[str], window: int) -> float:
    if len(words) <= window:
        return len(set(words)) / len(words) if words else 0.0
    ratios = [len(set(words[i : i + window])) / window for i in range(len(words) - window + 1)]
    return sum(ratios) / len(ratios)


_RUN_RE = re.compile(r"(\S.{0,3}?)\1{5,}", re.DOTALL)


def _run_share(text: str) -> float:
    compact = re.sub(r"\s+", " ", text)
    covered = sum(len(m.group(0)) for m in _RUN_RE.finditer(compact))
    return covered / len(compact) if compact else 0.0


_VOWELS = set("aeiouyàáâäãåæèéêëìíîïòóôöõøœùúûüýÿ")


def _wordlike_share(text: str) -> float:
    good = total = 0
    for token in text.split():
        core = token.strip(".,;:!?\"'()[]{}*_#`~<>|-–—…“”‘’/\\")
        if not core or not any(c.isalnum() for c in core):
            continue  # punctuation, markdown or emoji only: neutral
        total += 1
        if re.fullmatch(r"[\d.,:/%$€£+-]+(?:st|nd|rd|th|s|am|pm|k|m|kg|km|cm)?", core.lower()):
            good += 1
        elif _WORD_RE.fullmatch(core) and len(core) <= 24:
            has_vowel = any(unicodedata.normalize("NFC", c.lower()) in _VOWELS for c in core)
            good += has_vowel or not core.isascii() or len(core) <= 2
    return good / total if total else 0.0


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class AttributeJudge:
    """An attribute's judge: a named :class:`Judge` built from a JSON ``judge`` spec.

    Delegates to ``inner``; ``spec`` keeps the JSON it was built from (``{}`` for a judge made
    from a Python function).
    """

    inner: Judge
    spec: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.inner.name

    def score(self, question: str, response: str) -> Score:
        return self.inner.score(question, response)

    def score_batch(self, questions: Sequence[str], responses: Sequence[str]) -> list[Score]:
        return self.inner.score_batch(questions, responses)


JUDGE_FACTORIES: Mapping[str, Callable[..., Judge]] = {
    "lexicon": LexiconJudge,
    "uppercase": UppercaseJudge,
    "emoji": EmojiJudge,
    "language": StopwordLanguageJudge,
    "brevity": BrevityJudge,
}


def make_judge(spec: Mapping[str, Any]) -> AttributeJudge:
    """Build an :class:`AttributeJudge` from a spec such as ``{"scorer": "lexicon", "words": [...]}``.

    ``scorer`` names a factory in :data:`JUDGE_FACTORIES`; the other keys are its parameters
    (lists become tuples). Unknown scorers or parameters raise ``ValueError`` naming them.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"judge spec must be a mapping, got {type(spec).__name__}")
    if "scorer" not in spec:
        raise ValueError(f"judge spec has no 'scorer' key (known: {sorted(JUDGE_FACTORIES)})")
    scorer = spec["scorer"]
    if scorer not in JUDGE_FACTORIES:
        raise ValueError(f"unknown scorer {scorer!r}; known scorers: {sorted(JUDGE_FACTORIES)}")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "scorer"}
    params.setdefault("name", scorer)
    try:
        inner = JUDGE_FACTORIES[scorer](**params)
    except TypeError as err:
        raise ValueError(f"bad parameters for scorer {scorer!r}: {err}") from err
    return AttributeJudge(inner, dict(spec))

