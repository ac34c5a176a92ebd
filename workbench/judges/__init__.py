"""Judges: score a model's response on 0-100 for an attribute or for coherence (DESIGN.md section 5).

A judge is anything with a ``name`` and ``score(question, response)`` /
``score_batch(questions, responses)`` returning :class:`Score` objects (the :class:`Judge`
protocol). The workbench ships offline judges, deterministic and with no network, and LLM judges
for any OpenAI-compatible endpoint (hosted, or a local vLLM, llama.cpp server or Ollama).
Modules, one job each:

- :mod:`~workbench.judges.base`: the protocol, :class:`Score` (with ``failed`` for a judgement
  that was not made, which is never stored), the batch check and :func:`success`;
- :mod:`~workbench.judges.offline`: the lexicon, uppercase, emoji, language, brevity and function
  judges, the coherence proxy, and :func:`make_judge` for attribute JSON specs;
- :mod:`~workbench.judges.llm_client`: :class:`LLMJudgeConfig` (also from the environment) and
  the HTTP client with retries, a disk cache and a circuit breaker;
- :mod:`~workbench.judges.llm_http`: one POST that ends by its deadline however the server sends
  and reads no more than a size cap, through the environment's proxy;
- :mod:`~workbench.judges.llm_parsing`: reading scores from top log-probs or text, and ratings;
- :mod:`~workbench.judges.llm_prompts`: the prompt templates;
- :mod:`~workbench.judges.llm_judges`: :class:`ScoreJudge` (0-100, digit-splitting tokenizers
  handled), :class:`RatingJudge` (AxBench 0/1/2) and :func:`make_llm_judges`.
"""

from workbench.judges.base import Judge, Score, check_batch, success
from workbench.judges.ifeval import IFEvalJudge
from workbench.judges.llm_client import ChatClient, JudgeRequestError, LLMJudgeConfig, default_cache_dir
from workbench.judges.llm_judges import RatingJudge, Ratings, ScoreJudge, make_llm_judges
from workbench.judges.llm_parsing import combine_ratings, parse_rating, parse_score_text, score_from_top_logprobs
from workbench.judges.offline import (
    JUDGE_FACTORIES,
    AttributeJudge,
    BaseJudge,
    BrevityJudge,
    CoherenceJudge,
    EmojiJudge,
    FunctionJudge,
    LexiconJudge,
    StopwordLanguageJudge,
    UppercaseJudge,
    count_emoji,
    make_judge,
    words_of,
)

__all__ = [
    "IFEvalJudge",
    "Judge", "Score", "check_batch", "success",
    "AttributeJudge", "BaseJudge", "BrevityJudge", "CoherenceJudge", "EmojiJudge", "FunctionJudge", "LexiconJudge",
    "StopwordLanguageJudge", "UppercaseJudge", "JUDGE_FACTORIES", "make_judge", "words_of", "count_emoji",
    "LLMJudgeConfig", "ChatClient", "JudgeRequestError", "default_cache_dir",
    "ScoreJudge", "RatingJudge", "Ratings", "make_llm_judges",
    "score_from_top_logprobs", "parse_score_text", "parse_rating", "combine_ratings",
]
