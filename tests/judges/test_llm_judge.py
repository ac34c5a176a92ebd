"""LLM judge against a scripted OpenAI-compatible server on 127.0.0.1 (no network, < 30 s)."""

from __future__ import annotations

import json
import logging
import math
import socket
import time
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from judges.fake_judge_server import FakeServer, Reply, completion, scripted_judge

from workbench import judges as lj
from workbench.judges.base import Judge, Score

KEY = "sk-test-SECRET-4242"


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


@pytest.fixture
def config(server, tmp_path):
    def make(**kw: Any) -> lj.LLMJudgeConfig:
        base = dict(base_url=server.url, model="judge-model", api_key=KEY, timeout_s=2,
                    max_retries=2, backoff_s=0.01, max_total_s=5, cache_dir=tmp_path / "cache")
        base.update(kw)
        return lj.LLMJudgeConfig(**base)
    return make


# --------------------------------------------------------------------------- configuration


def test_config_repr_hides_key_and_normalises_url(tmp_path):
    cfg = lj.LLMJudgeConfig("http://127.0.0.1:9/v1/", "m", api_key=KEY, cache_dir=tmp_path)
    assert cfg.base_url == "http://127.0.0.1:9/v1"
    for text in (repr(cfg), str(cfg), repr(lj.ScoreJudge(cfg)), repr(lj.RatingJudge(cfg, "c")),
                 repr(lj.ChatClient(cfg))):
        assert KEY not in text and "SECRET" not in text
    assert "api_key='***'" in repr(cfg)
    assert "api_key=None" in repr(lj.LLMJudgeConfig("http://h/v1", "m"))
    with pytest.raises(ValueError, match="http"):
        lj.LLMJudgeConfig("127.0.0.1:8000", "m")
    with pytest.raises(ValueError, match="model"):
        lj.LLMJudgeConfig("http://h/v1", " ")
    with pytest.raises(ValueError, match="timeout_s"):
        lj.LLMJudgeConfig("http://h/v1", "m", timeout_s=0)


def test_config_from_env():
    assert lj.LLMJudgeConfig.from_env({}) is None
    assert lj.LLMJudgeConfig.from_env({"WORKBENCH_JUDGE_BASE_URL": "http://h/v1"}) is None  # no model
    cfg = lj.LLMJudgeConfig.from_env({
        "WORKBENCH_JUDGE_BASE_URL": "http://a/v1", "OPENAI_BASE_URL": "http://b/v1",
        "WORKBENCH_JUDGE_MODEL": "m1", "WORKBENCH_JUDGE_API_KEY": "k1", "OPENAI_API_KEY": "k2",
    }, timeout_s=7)
    assert (cfg.base_url, cfg.model, cfg.api_key, cfg.timeout_s) == ("http://a/v1", "m1", "k1", 7)
    cfg = lj.LLMJudgeConfig.from_env({"OPENAI_BASE_URL": "http://b/v1", "WORKBENCH_JUDGE_MODEL": "m",
                                      "OPENAI_API_KEY": "k2"})
    assert (cfg.base_url, cfg.api_key) == ("http://b/v1", "k2")
    cfg = lj.LLMJudgeConfig.from_env({"WORKBENCH_JUDGE_MODEL": "m", "OPENAI_API_KEY": "k2"})
    assert cfg.base_url == "https://api.openai.com/v1"
    cfg = lj.LLMJudgeConfig.from_env({"WORKBENCH_JUDGE_BASE_URL": "http://127.0.0.1:8080/v1",
                                      "WORKBENCH_JUDGE_MODEL": "local"})
    assert cfg.api_key is None


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "wb"))
    assert lj.default_cache_dir() == tmp_path / "wb" / "judge"
    assert lj.LLMJudgeConfig("http://h/v1", "m").resolved_cache_dir == tmp_path / "wb" / "judge"


# --------------------------------------------------------------------------- pure parsing


def test_score_from_top_logprobs_pure():
    tops = [{"token": t, "logprob": math.log(p)} for t, p in
            [("80", 0.3), (" 90", 0.3), ("150", 0.1), ("x", 0.3)]]
    value, mass = lj.score_from_top_logprobs(tops)
    assert value == pytest.approx(85.0, abs=1e-9)  # 150 is out of range, "x" not an integer
    assert mass == pytest.approx(0.6)
    assert lj.score_from_top_logprobs(tops[:1] + tops[3:])[0] == pytest.approx(80.0)
    low = [{"token": "70", "logprob": math.log(0.2)}, {"token": "no", "logprob": math.log(0.8)}]
    assert lj.score_from_top_logprobs(low) == (None, pytest.approx(0.2))


def test_parse_score_text():
    assert lj.parse_score_text("Score: 73") == 73
    assert lj.parse_score_text("100") == 100
    assert lj.parse_score_text("0") == 0
    assert lj.parse_score_text("150 points") is None
    assert lj.parse_score_text("-5") is None
    assert lj.parse_score_text("no idea") is None


def test_parse_rating_after_last_marker():
    assert lj.parse_rating("blah Rating: 1 ... Rating: 2") == 2
    assert lj.parse_rating("The concept is there.\nRating: [[1]]") == 1
    assert lj.parse_rating("**Rating:** 2.") == 2
    assert lj.parse_rating("Rating: [[2]]\nthanks") == 2
    assert lj.parse_rating("I think it deserves a 2") == 0  # no marker
    assert lj.parse_rating("Rating: two") == 0
    assert lj.parse_rating("Rating: 2\nlater Rating: 7") is None  # last marker wins, off the scale: missing


def test_combine_ratings_harmonic_mean():
    assert lj.combine_ratings([2, 2, 2]) == 100.0
    assert lj.combine_ratings([2, 1, 2]) == pytest.approx(75.0)  # 3 / (1/2 + 1 + 1/2) = 1.5
    assert lj.combine_ratings([1, 1, 1]) == pytest.approx(50.0)
    assert lj.combine_ratings([2, 0, 2]) == 0.0


# --------------------------------------------------------------------------- ScoreJudge


def test_logprob_weighted_mean_and_request_shape(server, config):
    server.default = Reply(body=completion("80", {"80": 0.5, "90": 0.5}))
    judge = lj.ScoreJudge(config(), "Speaks like a pirate.")
    assert isinstance(judge, Judge)
    s = judge.score("How are you?", "Arr, fine matey.")
    assert s.value == pytest.approx(85.0, abs=1e-9)
    assert server.n == 1
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {KEY}"
    body = req["body"]
    assert body["model"] == "judge-model" and body["temperature"] == 0.0
    assert (body["logprobs"], body["top_logprobs"], body["max_tokens"]) == (True, 20, 3)
    prompt = body["messages"][0]["content"]
    assert "Speaks like a pirate." in prompt and "How are you?" in prompt and "Arr, fine matey." in prompt


def test_low_integer_mass_is_no_score_even_if_text_is_a_number(server, config):
    server.default = Reply(body=completion("80", {"80": 0.2, "I": 0.7}))
    s = lj.ScoreJudge(config()).score("q", "a")
    assert s.value is None and "mass" in s.reason


def test_no_logprobs_falls_back_to_text(server, config):
    server.script = [Reply(body=completion("Score: 73")), Reply(body=completion("150")),
                     Reply(body=completion("no idea"))]
    judge = lj.ScoreJudge(config(cache=False))
    assert judge.score("q", "a").value == 73.0
    assert judge.score("q", "a").value is None
    s = judge.score("q", "a")
    assert s.value is None and "no idea" in s.reason
    assert server.n == 3


def test_logprobs_rejected_by_endpoint_retries_without(server, config):
    def reply(body: dict) -> Reply:
        if body.get("logprobs"):
            return Reply(400, {"error": {"message": "logprobs is not supported"}})
        return Reply(body=completion("64"))
    server.default = reply
    judge = lj.ScoreJudge(config())
    assert judge.score("q", "a").value == 64.0
    assert server.n == 2 and "logprobs" not in server.requests[1]["body"]
    assert judge.score("q", "b").value == 64.0
    assert server.n == 3  # remembered: no second rejected request


def test_empty_response_makes_no_request(server, config):
    assert lj.ScoreJudge(config(), "x").score("q", "  ").value is None
    assert lj.ScoreJudge(config()).score("q", "").value == 0.0
    assert lj.RatingJudge(config(), "x").score("q", "").value == 0.0
    assert server.n == 0


def test_malformed_json_is_none_not_retried_not_cached(server, config):
    server.default = Reply(raw=b"{not json")
    judge = lj.ScoreJudge(config())
    s = judge.score("q", "a")
    assert s.value is None and "malformed JSON" in s.reason
    assert server.n == 1
    judge.score("q", "a")
    assert server.n == 2  # the failure was not cached


def test_missing_choices_is_none(server, config):
    server.default = Reply(body={"object": "chat.completion", "choices": []})
    s = lj.ScoreJudge(config()).score("q", "a")
    assert s.value is None and "choices" in s.reason


def test_timeout_is_retried_then_none(server, config):
    server.default = Reply(body=completion("50"), delay=1.0)
    judge = lj.ScoreJudge(config(timeout_s=0.2, max_retries=1, backoff_s=0.01))
    t0 = time.monotonic()
    s = judge.score("q", "a")
    elapsed = time.monotonic() - t0
    assert s.value is None and "timed out" in s.reason and "2 attempt" in s.reason
    assert server.n == 2
    assert elapsed < 0.9  # two 0.2 s attempts, not the server's 1 s


def test_500_then_success(server, config):
    server.script = [Reply(500, {"error": "boom"}), Reply(503, {"error": "busy"})]
    server.default = Reply(body=completion("42", {"42": 0.9, "40": 0.1}))
    judge = lj.ScoreJudge(config(max_retries=2))
    s = judge.score("q", "a")
    assert s.value == pytest.approx(41.8)
    assert server.n == 3 and judge.client.http_requests == 3


def test_5xx_exhausts_retries(server, config):
    server.default = Reply(502, {"error": "bad gateway"})
    s = lj.ScoreJudge(config(max_retries=2)).score("q", "a")
    assert s.value is None and "502" in s.reason
    assert server.n == 3


def test_429_honours_retry_after(server, config):
    server.script = [Reply(429, {"error": "slow down"}, headers={"Retry-After": "0.3"})]
    server.default = Reply(body=completion("10"))
    t0 = time.monotonic()
    s = lj.ScoreJudge(config(backoff_s=0.0)).score("q", "a")
    assert s.value == 10.0 and server.n == 2
    assert time.monotonic() - t0 >= 0.3


def test_429_retry_after_beyond_budget_gives_up_at_once(server, config):
    server.default = Reply(429, {"error": "quota"}, headers={"Retry-After": "3600"})
    t0 = time.monotonic()
    s = lj.ScoreJudge(config(max_total_s=1.0)).score("q", "a")
    assert s.value is None and "429" in s.reason and "max_total_s" in s.reason
    assert server.n == 1 and time.monotonic() - t0 < 0.8


def test_401_not_retried_and_key_scrubbed(server, config):
    server.default = Reply(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}})
    judge = lj.ScoreJudge(config(max_retries=4))
    s = judge.score("q", "a")
    assert s.value is None and "401" in s.reason
    assert KEY not in s.reason and "***" in s.reason
    assert server.n == 1


def test_connection_refused_is_bounded(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = lj.LLMJudgeConfig(f"http://127.0.0.1:{port}/v1", "m", api_key=KEY, max_retries=2,
                            backoff_s=0.01, timeout_s=0.5, cache_dir=tmp_path)
    judge = lj.ScoreJudge(cfg)
    s = judge.score("q", "a")
    assert s.value is None and "connection" in s.reason and KEY not in s.reason
    assert judge.client.http_requests == 3


# --------------------------------------------------------------------------- cache


def test_cache_hit_makes_no_request_and_holds_no_key(server, config, tmp_path):
    server.default = Reply(body=completion("80", {"80": 0.5, "90": 0.5}))
    cfg = config()
    first = lj.ScoreJudge(cfg, "pirate").score("q", "a")
    assert server.n == 1
    again = lj.ScoreJudge(cfg, "pirate")  # a fresh judge: the hit comes from disk
    second = again.score("q", "a")
    assert server.n == 1 and again.client.cache_hits == 1
    assert first == second and first.value == pytest.approx(85.0)
    lj.ScoreJudge(cfg, "pirate").score("q", "another answer")
    assert server.n == 2  # a different request is not a hit
    files = list((tmp_path / "cache").rglob("*.json"))
    assert len(files) == 2
    for f in files:
        text = f.read_text()
        assert KEY not in text and "SECRET" not in text and "Bearer" not in text
        assert json.loads(text)["response"]["choices"]
    assert not list((tmp_path / "cache").rglob(".tmp-*"))
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


def test_cache_key_depends_on_model_and_url(config, tmp_path):
    body = {"messages": [{"role": "user", "content": "x"}]}
    a = lj.ChatClient(config()).cache_key(body)
    assert a != lj.ChatClient(config(model="other")).cache_key(body)
    assert a != lj.ChatClient(config(base_url="http://127.0.0.1:1/v1")).cache_key(body)
    assert a == lj.ChatClient(config(api_key="another-key")).cache_key(body)


# --------------------------------------------------------------------------- RatingJudge


def _criterion(body: dict) -> str:
    content = body["messages"][0]["content"]
    return next(c for c in ("concept", "instruction", "fluency") if f"[Criterion: {c}]" in content)


def test_rating_judge_harmonic_mean(server, config):
    answers = {"concept": "blah Rating: 1 ... Rating: 2", "instruction": "Partly.\nRating: [[1]]",
               "fluency": "Fine.\nRating: [[2]]"}
    server.default = lambda body: Reply(body=completion(answers[_criterion(body)]))
    judge = lj.RatingJudge(config(), "The Eiffel Tower")
    assert isinstance(judge, Judge)
    ratings = judge.rate("Tell me about Paris.", "The tower is tall.")
    assert (ratings.concept, ratings.instruction, ratings.fluency) == (2, 1, 2)
    assert ratings.value == pytest.approx(75.0)
    assert server.n == 3
    prompts = {_criterion(r["body"]): r["body"]["messages"][0]["content"] for r in server.requests}
    assert "The Eiffel Tower" in prompts["concept"] and "Tell me about Paris." in prompts["instruction"]
    assert "Tell me about Paris." not in prompts["fluency"]
    s = judge.score("Tell me about Paris.", "The tower is tall.")  # cached: no new request
    assert s.value == pytest.approx(75.0) and "instruction=1" in s.reason and server.n == 3


def test_rating_judge_unparseable_counts_as_zero(server, config):
    answers = {"concept": "Rating: [[2]]", "instruction": "I cannot say.", "fluency": "Rating: 2"}
    server.default = lambda body: Reply(body=completion(answers[_criterion(body)]))
    s = lj.RatingJudge(config(), "c").score("q", "a")
    assert s.value == 0.0 and "instruction=0" in s.reason


def test_rating_judge_failure_is_none(server, config):
    server.script = [Reply(body=completion("Rating: 2"))]
    server.default = Reply(403, {"error": "forbidden"})
    s = lj.RatingJudge(config(), "c").score("q", "a")
    assert s.value is None and "403" in s.reason and "instruction" in s.reason
    assert server.n == 2


# --------------------------------------------------------------------------- batches


def test_score_batch_keeps_order(server, config):
    def reply(body: dict) -> Reply:
        content = body["messages"][0]["content"]
        n = int(content.split("answer-")[1].split()[0])
        return Reply(body=completion(str(n)), delay=0.02 * (n % 3))
    server.default = reply
    judge = lj.ScoreJudge(config(), max_workers=4)
    responses = [f"answer-{n} here" for n in (7, 3, 99, 0, 55, 12)]
    scores = judge.score_batch(["q"] * 6, responses)
    assert [s.value for s in scores] == [7.0, 3.0, 99.0, 0.0, 55.0, 12.0]
    assert all(isinstance(s, Score) for s in scores)
    with pytest.raises(ValueError):
        judge.score_batch(["q"], ["a", "b"])


# --------------------------------------------------------------------------- digit-splitting tokenizers

INTENDED = [0, 7, 15, 40, 85, 100]


@pytest.mark.parametrize("splits", [False, True], ids=["whole-number tokenizer", "digit-splitting tokenizer"])
def test_scores_are_on_0_100_whatever_the_tokenizer(server, config, splits):
    server.default = scripted_judge(splits_digits=splits)
    judge = lj.ScoreJudge(config(), "Talks like a pirate.", max_workers=1)
    scores = judge.score_batch(["q"] * len(INTENDED), [f"an answer, score-{n}" for n in INTENDED])
    assert [s.value for s in scores] == pytest.approx(INTENDED, abs=1e-6)
    assert all(not s.failed for s in scores)
    assert judge.digit_splitting is splits
    before = server.n
    assert judge.score("q", "one more, score-55").value == pytest.approx(55.0)
    assert server.n == before + 1  # once the tokenizer is known, one request per score
    last = server.prompts()[-1]
    if splits:
        assert "from 0 to 9" in last and "0-9 scale" in scores[-2].reason
    else:
        assert "from 0 to 100" in last and "0-9" not in scores[-2].reason


def test_the_plain_0_100_reading_is_off_scale_on_a_digit_splitting_tokenizer(server, config):
    """What the automatic scale corrects: 80/85/90 generated as "8"/"9" first tokens read 8.25."""
    server.default = scripted_judge(splits_digits=True)
    s = lj.ScoreJudge(config(), "Talks like a pirate.", scale="0-100").score("q", "score-85")
    assert s.value == pytest.approx(8.25, abs=1e-9)
    assert "'8' is not the whole number 85" in s.reason
    assert server.n == 1


def test_a_fixed_0_9_scale_is_rescaled(server, config):
    server.default = scripted_judge(splits_digits=False)
    judge = lj.ScoreJudge(config(), scale="0-9")
    assert judge.score("q", "score-40").value == pytest.approx(40.0)
    assert server.n == 1 and "from 0 to 9" in server.prompts()[0]
    with pytest.raises(ValueError, match="digit_prompt"):
        lj.ScoreJudge(config(), prompt="Rate {answer} 0-100.", scale="0-9")


def test_a_custom_prompt_without_a_digit_prompt_fails_clearly_on_split_digits(server, config):
    server.default = scripted_judge(splits_digits=True)
    s = lj.ScoreJudge(config(), prompt="Rate {answer} from 0 to 100.").score("q", "score-85")
    assert s.value is None and s.failed and "digit_prompt" in s.reason


def test_text_replies_without_logprobs_are_read_on_either_scale(server, config):
    server.default = lambda body: Reply(body=completion("7" if "from 0 to 9" in body["messages"][0]["content"]
                                                        else "85"))
    assert lj.ScoreJudge(config(cache=False)).score("q", "a").value == 85.0
    assert lj.ScoreJudge(config(cache=False), scale="0-9").score("q", "a").value == pytest.approx(700 / 9)


# --------------------------------------------------------------------------- ratings off the scale


def test_rating_off_the_scale_is_missing_with_its_reason(server, config):
    answers = {"concept": "It is there.\nRating: 0.15", "instruction": "Rating: [[2]]", "fluency": "Rating: 2"}
    server.default = lambda body: Reply(body=completion(answers[_criterion(body)]))
    judge = lj.RatingJudge(config(), "pirate speech")
    ratings = judge.rate("q", "a")
    assert ratings.concept is None and ratings.value is None
    s = judge.score("q", "a")
    assert s.value is None and not s.failed
    assert "concept=missing" in s.reason and "0.15 is not one of 0, 1, 2" in s.reason
    assert lj.parse_rating("Rating: 0.15") is None and lj.parse_rating("Rating: 1.5") is None
    assert lj.parse_rating("Rating: 2.0") == 2 and lj.parse_rating("Rating: -1") is None


def test_unparseable_ratings_count_as_zero_and_say_so(server, config):
    answers = {"concept": "Rating: [[2]]", "instruction": "I would say two.", "fluency": "Rating: 2"}
    server.default = lambda body: Reply(body=completion(answers[_criterion(body)]))
    s = lj.RatingJudge(config(), "c").score("q", "a")
    assert s.value == 0.0 and "instruction: no 'Rating:' in the reply, counted as 0" in s.reason


# --------------------------------------------------------------------------- failures are not results


def test_verdicts_and_failures_are_told_apart(server, config):
    server.default = Reply(body=completion("80", {"80": 0.2, "I": 0.7}))
    verdict = lj.ScoreJudge(config()).score("q", "a")
    assert verdict.value is None and not verdict.failed
    server.default = Reply(401, {"error": "bad key"})
    failure = lj.ScoreJudge(config()).score("q", "b")
    assert failure.value is None and failure.failed
    with pytest.raises(ValueError, match="no value"):
        Score(50.0, "x", failed=True)


def test_an_answer_without_choices_fails_and_is_not_cached(server, config):
    server.script = [Reply(body={"object": "chat.completion", "choices": [], "error": "overloaded"})]
    server.default = Reply(body=completion("64", {"64": 0.9, "x": 0.1}))
    judge = lj.ScoreJudge(config(max_retries=0))
    first = judge.score("q", "a")
    assert first.value is None and first.failed and "choices" in first.reason
    second = judge.score("q", "a")
    assert second.value == pytest.approx(64.0) and server.n == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_circuit_breaker_stops_a_run_against_a_dead_endpoint(tmp_path, caplog):
    cfg = lj.LLMJudgeConfig(f"http://127.0.0.1:{_free_port()}/v1", "m", max_retries=4, backoff_s=0.05,
                            timeout_s=1, breaker_after=3, cache_dir=tmp_path)
    judge = lj.ScoreJudge(cfg, max_workers=1)
    with caplog.at_level(logging.WARNING, logger="workbench.judges.llm_client"):
        scores = judge.score_batch(["q"] * 5, [f"answer {i}" for i in range(5)])
    assert judge.client.http_requests == 3  # without the breaker: 5 calls x 5 attempts
    assert all(s.value is None and s.failed for s in scores)
    assert all("unreachable: 3 connection failures in a row" in s.reason for s in scores)
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1  # said once
    assert not list(tmp_path.rglob("*.json"))  # nothing cached
    judge.client.reset_breaker()
    assert judge.score("q", "again").failed and judge.client.http_requests == 6


def test_timeouts_do_not_open_the_breaker(server, config):
    server.default = Reply(body=completion("50"), delay=1.0)
    judge = lj.ScoreJudge(config(timeout_s=0.2, max_retries=1, breaker_after=1))
    s = judge.score("q", "a")
    assert s.failed and "timed out" in s.reason and judge.client.unreachable is None


def test_make_llm_judges_share_one_client(config):
    attribute_judge, coherence_judge = lj.make_llm_judges(config(), "pirate speech")
    assert attribute_judge.client is coherence_judge.client
    rating_judge, _ = lj.make_llm_judges(config(), "pirate speech", style="rating")
    assert isinstance(rating_judge, lj.RatingJudge)


# --------------------------------------------------------------------------- settings


def test_timeouts_retries_budget_and_breaker_from_the_environment():
    assert lj.LLMJudgeConfig("http://h/v1", "m").timeout_s >= 120
    env = {"WORKBENCH_JUDGE_BASE_URL": "http://127.0.0.1:9/v1", "WORKBENCH_JUDGE_MODEL": "m",
           "WORKBENCH_JUDGE_TIMEOUT_S": "45.5", "WORKBENCH_JUDGE_MAX_RETRIES": "2",
           "WORKBENCH_JUDGE_MAX_TOTAL_S": "90", "WORKBENCH_JUDGE_BREAKER_AFTER": "3"}
    cfg = lj.LLMJudgeConfig.from_env(env)
    assert (cfg.timeout_s, cfg.max_retries, cfg.max_total_s, cfg.breaker_after) == (45.5, 2, 90.0, 3)
    assert lj.LLMJudgeConfig.from_env(env, timeout_s=7).timeout_s == 7  # arguments win
    with pytest.raises(ValueError, match="WORKBENCH_JUDGE_TIMEOUT_S must be a number"):
        lj.LLMJudgeConfig.from_env({**env, "WORKBENCH_JUDGE_TIMEOUT_S": "soon"})
    with pytest.raises(ValueError, match="WORKBENCH_JUDGE_MAX_RETRIES"):
        lj.LLMJudgeConfig.from_env({**env, "WORKBENCH_JUDGE_MAX_RETRIES": "-1"})


def test_evaluate_flags_override_the_environment(monkeypatch):
    from workbench.app import cli

    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "WORKBENCH_JUDGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKBENCH_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("WORKBENCH_JUDGE_MODEL", "m")
    monkeypatch.setenv("WORKBENCH_JUDGE_TIMEOUT_S", "45")
    cfg = cli._judge_config(cli.build_parser().parse_args(["evaluate", "--judge", "llm"]))
    assert cfg.timeout_s == 45 and cfg.max_retries == 4
    args = cli.build_parser().parse_args(["evaluate", "--judge", "llm", "--judge-timeout", "200", "--judge-retries",
                                          "0", "--judge-max-total", "600", "--judge-breaker-after", "0"])
    cfg = cli._judge_config(args)
    assert (cfg.timeout_s, cfg.max_retries, cfg.max_total_s, cfg.breaker_after) == (200, 0, 600, 0)


# --------------------------------------------------------------------------- the evaluation cache


def _planted_answers(calls):
    from workbench.core.generation import Generation

    def answers(model, questions, *, instruction=None, steerers=(), **kwargs):
        calls.append(len(questions))
        return [Generation(q, instruction, [1], f"Arr, answer {i}", 1) for i, q in enumerate(questions)]

    return answers


def test_a_rerun_after_an_outage_judges_again_without_deleting_files(tmp_path, monkeypatch):
    from workbench.evaluation import comparison

    calls: list[int] = []
    monkeypatch.setattr(comparison, "generate_answers", _planted_answers(calls))
    port = _free_port()
    cfg = lj.LLMJudgeConfig(f"http://127.0.0.1:{port}/v1", "judge-model", timeout_s=2, max_retries=1,
                            backoff_s=0.01, max_total_s=5, cache_dir=tmp_path / "judge-cache")

    def evaluate():  # one run: fresh judges and evaluator, the same directories
        attribute_judge, coherence_judge = lj.make_llm_judges(cfg, "Talks like a pirate.")
        evaluator = comparison.Evaluator(SimpleNamespace(model_id="fake-model"), "pirate",
                                         comparison.EvalConfig(n_validation=2, n_test=3),
                                         attribute_judge=attribute_judge, coherence_judge=coherence_judge,
                                         cache_dir=tmp_path / "evaluations")
        return evaluator.evaluate(comparison.Method("no steering"), 0.0, "test")

    down = evaluate()  # the server is not there
    assert down["attribute"].isna().all() and down["coherence"].isna().all()
    assert down["attribute_failed"].all() and down["coherence_failed"].all()
    assert "connection" in down["attribute_reason"].iloc[0]
    assert not list((tmp_path / "judge-cache").rglob("*.json"))
    stored = list((tmp_path / "evaluations").glob("*.parquet"))
    assert len(stored) == 1 and pd.read_parquet(stored[0])["coherence"].isna().all()

    server = FakeServer(port=port)
    server.default = Reply(body=completion("70", {"70": 0.5, "80": 0.5}))
    try:
        up = evaluate()
    finally:
        server.close()
    assert up["attribute"].tolist() == pytest.approx([75.0] * 3)
    assert up["coherence"].tolist() == pytest.approx([75.0] * 3)
    assert not up["attribute_failed"].any() and not up["coherence_failed"].any()
    assert server.n == 6 and calls == [3]  # judged again; the answers were not generated again
    assert list((tmp_path / "evaluations").glob("*.parquet")) == stored

    again = evaluate()  # server gone again: everything is stored now, nothing is asked
    assert again["attribute"].tolist() == pytest.approx([75.0] * 3) and calls == [3]


def test_a_judge_that_scores_nothing_does_not_stop_the_sweep(tmp_path, monkeypatch):
    import torch

    from workbench.evaluation import comparison

    monkeypatch.setattr(comparison, "generate_answers", _planted_answers([]))
    steerer = SimpleNamespace(name="s", layers=(1,), info=SimpleNamespace(method="psr-mse", scope="single"),
                              params=lambda: {"z": torch.tensor([1.0])}, check_model=lambda model: None,
                              apply=lambda model, alpha=1.0, span=None: None)  # never applied: answers are planted
    cfg = lj.LLMJudgeConfig(f"http://127.0.0.1:{_free_port()}/v1", "judge-model", max_retries=0,
                            cache_dir=tmp_path / "judge-cache")
    attribute_judge, coherence_judge = lj.make_llm_judges(cfg, "Talks like a pirate.")
    with pytest.warns(RuntimeWarning, match="n_missing") as warned:
        result = comparison.compare_methods(SimpleNamespace(model_id="fake-model"), "pirate", {"s": steerer},
                                            comparison.EvalConfig(n_validation=2, n_test=3),
                                            attribute_judge=attribute_judge, coherence_judge=coherence_judge,
                                            progress=False)
    rows = result.results.set_index(["method", "target"])
    assert set(result.results["target"]) == {"C80", "Cp"}
    assert (result.results["n_missing"] == 3).all() and result.results["attribute"].isna().all()
    assert math.isnan(rows.loc[("s", "C80"), "alpha"]) and not rows.loc[("s", "C80"), "reached"]
    assert "not measured: the coherence judge scored none" in rows.loc[("s", "C80"), "note"]
    assert "prompt's own coherence could not be measured" in rows.loc[("s", "Cp"), "note"]
    message = str(warned[0].message)
    assert "judgements failed" in message and "s @ C80" in message


def test_a_corrupt_cache_entry_is_asked_again_not_trusted(server, config, tmp_path):
    server.default = Reply(body=completion("80", {"80": 1.0}))
    cfg = config()
    assert lj.ScoreJudge(cfg, "pirate").score("q", "a").value == pytest.approx(80.0)
    (entry,) = (tmp_path / "cache").rglob("*.json")
    entry.write_text(entry.read_text().replace('"80"', '"10"'))  # a changed score, the checksum not
    server.default = Reply(body=completion("90", {"90": 1.0}))
    judge = lj.ScoreJudge(cfg, "pirate")
    assert judge.score("q", "a").value == pytest.approx(90.0)  # asked the server again
    assert server.n == 2 and judge.client.cache_hits == 0
