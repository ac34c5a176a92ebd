"""The LLM judge keeps its deadlines and caps its replies, however the server sends (all on 127.0.0.1).

Each deadline test measures the wall-clock time around one call and allows a generous second over
the deadline; the deadlines are small so that the file takes seconds.
"""

from __future__ import annotations

import doctest
import importlib
import json
import logging
import re
import shutil
import ssl
import subprocess
import threading
import time
import tracemalloc
from typing import Any

import pytest
from judges.fake_judge_server import FakeServer, RawServer, Reply, completion, stream, trickle

from workbench import judges as lj
from workbench.judges.base import judge_fingerprint
from workbench.judges.llm_http import Deadline, route_for
from workbench.judges.llm_prompts import ATTRIBUTE_PROMPT, ATTRIBUTE_PROMPT_DIGIT

KEY = "sk-test-SECRET-4242"
SLACK_S = 1.0
"""How far past a deadline a call may end in these tests (it should be milliseconds)."""

JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
MB50 = 50_000_000


def make_config(url: str, tmp_path, **kw: Any) -> lj.LLMJudgeConfig:
    base = dict(base_url=url, model="judge-model", api_key=KEY, timeout_s=2, max_retries=0,
                backoff_s=0.01, max_total_s=3, cache_dir=tmp_path / "cache")
    base.update(kw)
    return lj.LLMJudgeConfig(**base)


def cached_files(tmp_path) -> list:
    return [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] if (tmp_path / "cache").exists() else []


@pytest.fixture
def raw_server():
    servers: list[RawServer] = []

    def start(answer, tls: ssl.SSLContext | None = None) -> RawServer:
        servers.append(RawServer(answer, tls))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def timed(fn, *args):
    t0 = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - t0


def trickling_body(sock, stop):
    trickle(sock, stop, JSON_HEAD + b"Content-Length: 100000\r\n\r\n{")


def trickling_headers(sock, stop):
    trickle(sock, stop, b"HTTP/1.1 200 OK\r\nX-Slow: ")


def silent(sock, stop):
    stop.wait()


# --------------------------------------------------------------------------- the call's deadline


def test_a_trickling_body_is_cut_at_max_total_s(raw_server, tmp_path):
    """The user's measurement: one byte every 0.5 s held a judgement for 107 s at max_total_s=6."""
    server = raw_server(trickling_body)
    judge = lj.ScoreJudge(make_config(server.url, tmp_path, timeout_s=2, max_total_s=6, max_retries=0))
    score, elapsed = timed(judge.score, "q", "a")
    assert elapsed < 6 + SLACK_S
    assert score.failed and score.value is None
    assert re.search(r"reply still arriving at max_total_s=6: cut after \d+\.\d s, [1-9]\d* bytes read", score.reason)
    assert KEY not in score.reason
    assert judge.client.http_requests == 1 and not cached_files(tmp_path)


def test_retries_do_not_stretch_the_deadline_of_a_trickle(raw_server, tmp_path):
    server = raw_server(trickling_body)
    judge = lj.ScoreJudge(make_config(server.url, tmp_path, max_retries=3, max_total_s=3))
    score, elapsed = timed(judge.score, "q", "a")
    assert elapsed < 3 + SLACK_S
    assert score.failed and "cut after" in score.reason and "max_total_s=3" in score.reason
    assert server.n == 1  # the cut leaves no time for another attempt


def test_trickling_headers_are_cut_at_max_total_s(raw_server, tmp_path):
    server = raw_server(trickling_headers)
    judge = lj.ScoreJudge(make_config(server.url, tmp_path, max_retries=3, max_total_s=3))
    score, elapsed = timed(judge.score, "q", "a")
    assert elapsed < 3 + SLACK_S
    assert score.failed and "reply headers incomplete at max_total_s=3: cut after" in score.reason


def test_a_silent_server_times_out_each_attempt_and_stops_at_max_total_s(raw_server, tmp_path):
    server = raw_server(silent)
    judge = lj.ScoreJudge(make_config(server.url, tmp_path, timeout_s=0.5, max_retries=0, max_total_s=5))
    score, elapsed = timed(judge.score, "q", "a")
    assert elapsed < 0.5 + SLACK_S
    assert score.failed and "timed out after 0.5s" in score.reason
    judge = lj.ScoreJudge(make_config(server.url, tmp_path, timeout_s=0.5, max_retries=10, max_total_s=1.6))
    score, elapsed = timed(judge.score, "q", "b")
    assert elapsed < 1.6 + SLACK_S
    assert score.failed and "max_total_s=1.6" in score.reason
    assert 1 + 3 <= server.n <= 1 + 4  # 0.5 s attempts until the budget is spent


def test_the_deadline_holds_through_tls(raw_server, tmp_path, monkeypatch):
    """Over https the watchdog shuts down the socket under the TLS layer, which unblocks its read."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server = raw_server(trickling_body, tls=server_context)
    client_context = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(ssl, "_create_default_https_context", lambda: client_context)
    url = server.url.replace("http://", "https://")
    judge = lj.ScoreJudge(make_config(url, tmp_path, max_total_s=3))
    score, elapsed = timed(judge.score, "q", "a")
    assert elapsed < 3 + SLACK_S
    assert score.failed and "reply still arriving at max_total_s=3" in score.reason


# --------------------------------------------------------------------------- the batch's deadline


@pytest.mark.parametrize("workers", [4, 1], ids=["thread pool", "one thread"])
def test_a_batch_ends_by_max_batch_s(raw_server, tmp_path, workers):
    server = raw_server(silent)
    cfg = make_config(server.url, tmp_path, timeout_s=30, max_total_s=30, max_batch_s=1.5)
    judge = lj.ScoreJudge(cfg, "pirate", max_workers=workers)
    scores, elapsed = timed(judge.score_batch, ["q"] * 4, [f"answer {i}" for i in range(4)])
    assert elapsed < 1.5 + SLACK_S
    assert len(scores) == 4 and all(s.failed and s.value is None for s in scores)
    assert all("max_batch_s=1.5" in s.reason for s in scores), [s.reason for s in scores]


def test_a_batch_deadline_leaves_fast_answers_alone(tmp_path):
    server = FakeServer()
    try:
        server.default = Reply(body=completion("Rating: 2"))
        judge = lj.RatingJudge(make_config(server.url, tmp_path, max_batch_s=10), "pirate")
        scores = judge.score_batch(["q"] * 3, ["a", "b", "c"])
    finally:
        server.close()
    assert [s.value for s in scores] == [100.0] * 3 and server.n == 9


def test_within_puts_calls_under_the_earlier_deadline(tmp_path):
    client = lj.ChatClient(make_config("http://127.0.0.1:9/v1", tmp_path, max_total_s=100))
    assert client.deadline().label == "max_total_s=100"
    with client.within(Deadline.after(5, "max_batch_s=5")):
        assert client.deadline().label == "max_batch_s=5"
        seen = []
        other = threading.Thread(target=lambda: seen.append(client.deadline().label))
        other.start()
        other.join()
        assert seen == ["max_total_s=100"]  # one thread's batch is not another's
    with client.within(Deadline.after(500, "max_batch_s=500")):
        assert client.deadline().label == "max_total_s=100"
    with client.within(Deadline.after(5, "outer")):
        with client.within(None):
            assert client.deadline().label == "outer"  # a block only ever tightens
        with client.within(Deadline.after(50, "inner")):
            assert client.deadline().label == "outer"


# --------------------------------------------------------------------------- the size cap


def big_reply(size: int, framing: str):
    """A 200 reply of ``size`` bytes, framed by an honest Content-Length, chunks, the connection's
    close, or a Content-Length of 1000 that lies."""
    heads = {"length": b"Content-Length: %d\r\n\r\n" % size, "chunked": b"Transfer-Encoding: chunked\r\n\r\n",
             "close": b"Connection: close\r\n\r\n", "lying": b"Content-Length: 1000\r\n\r\n"}

    def answer(sock, stop):
        stream(sock, JSON_HEAD + heads[framing], size, chunked=framing == "chunked")

    return answer


def judged_within_memory(judge) -> tuple[lj.Score, int]:
    """One judgement, and the most Python memory allocated during it (tracemalloc's peak)."""
    tracemalloc.start()
    try:
        score = judge.score("q", "a")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return score, peak


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_a_50_mb_reply_is_refused_at_the_cap(raw_server, tmp_path, framing):
    server = raw_server(big_reply(MB50, framing))
    judge = lj.ScoreJudge(make_config(server.url, tmp_path, max_retries=2, max_total_s=20))
    score, peak = judged_within_memory(judge)
    assert score.failed and score.value is None
    assert "reply larger than max_reply_bytes=1000000" in score.reason and "not retried" in score.reason
    assert server.n == 1 and not cached_files(tmp_path)
    assert peak < 8_000_000  # about twice the 1 MB cap at most; the 50 MB reply read whole took 143 MB of RSS
    if framing == "length":
        assert "Content-Length is 50000000, the body was not read" in score.reason


def test_a_content_length_that_lies_bounds_what_is_read(raw_server, tmp_path):
    """HTTP ends the body at its Content-Length: what follows is never read, so a reply that says
    1000 bytes and sends 50 MB fails as the 1000 bytes it declared (not JSON), not at the cap."""
    server = raw_server(big_reply(MB50, "lying"))
    judge = lj.ScoreJudge(make_config(server.url, tmp_path))
    score, peak = judged_within_memory(judge)
    assert score.failed and "malformed JSON" in score.reason
    assert peak < 8_000_000 and not cached_files(tmp_path)


def padded_completion(size: int) -> bytes:
    """A chat-completions reply of exactly ``size`` bytes (its content is "50")."""
    shell = json.dumps({**completion("50"), "pad": ""}, separators=(",", ":")).encode()
    return shell[:-2] + b"x" * (size - len(shell)) + b'"}'


def test_a_reply_up_to_the_cap_is_read_and_one_byte_more_is_not(tmp_path):
    server = FakeServer()
    try:
        cfg = make_config(server.url, tmp_path, max_reply_bytes=100_000, cache=False)
        server.default = Reply(raw=padded_completion(100_000))
        assert lj.ScoreJudge(cfg).score("q", "a").value == 50.0
        server.default = Reply(raw=padded_completion(100_001))
        refused = lj.ScoreJudge(cfg).score("q", "a")
    finally:
        server.close()
    assert refused.failed and "reply larger than max_reply_bytes=100000" in refused.reason


def test_a_reply_just_under_the_cap_is_cached(tmp_path):
    server = FakeServer()
    try:
        server.default = Reply(raw=padded_completion(99_000))
        cfg = make_config(server.url, tmp_path, max_reply_bytes=100_000)
        assert lj.ScoreJudge(cfg).score("q", "a").value == 50.0
        again = lj.ScoreJudge(cfg)
        assert again.score("q", "a").value == 50.0 and again.client.cache_hits == 1
    finally:
        server.close()
    assert server.n == 1 and len(cached_files(tmp_path)) == 1


def test_a_reply_that_grows_past_the_cap_as_written_is_not_cached(tmp_path, caplog):
    """60 kB of compact JSON numbers, indented in the cache file, would take about 150 kB."""
    body = {**completion("50"), "pad": [0] * 30_000}
    server = FakeServer()
    try:
        server.default = Reply(raw=json.dumps(body, separators=(",", ":")).encode())
        cfg = make_config(server.url, tmp_path, max_reply_bytes=100_000)
        with caplog.at_level(logging.WARNING, logger="workbench.judges.llm_client"):
            assert lj.ScoreJudge(cfg).score("q", "a").value == 50.0
        assert lj.ScoreJudge(cfg).score("q", "a").value == 50.0
    finally:
        server.close()
    assert server.n == 2 and not cached_files(tmp_path)
    assert any("over max_reply_bytes=100000" in r.getMessage() for r in caplog.records)


def test_an_error_reply_of_any_size_reads_only_its_start(raw_server, tmp_path):
    def answer(sock, stop):
        head = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n" % MB50
        stream(sock, head, MB50)

    server = raw_server(answer)
    score, peak = judged_within_memory(lj.ScoreJudge(make_config(server.url, tmp_path, max_retries=1)))
    assert score.failed and "HTTP 503" in score.reason and server.n == 2  # still retried, as a 503 is
    assert peak < 8_000_000


# --------------------------------------------------------------------------- settings


def test_max_batch_s_and_max_reply_bytes_are_validated_and_read_from_the_environment():
    cfg = lj.LLMJudgeConfig("http://h/v1", "m")
    assert (cfg.max_batch_s, cfg.max_reply_bytes) == (None, 1_000_000)
    for bad in ({"max_batch_s": 0}, {"max_batch_s": -1.0}, {"max_reply_bytes": 0}, {"max_reply_bytes": 1.5},
                {"max_reply_bytes": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            lj.LLMJudgeConfig("http://h/v1", "m", **bad)
    env = {"WORKBENCH_JUDGE_BASE_URL": "http://127.0.0.1:9/v1", "WORKBENCH_JUDGE_MODEL": "m",
           "WORKBENCH_JUDGE_MAX_BATCH_S": "90", "WORKBENCH_JUDGE_MAX_REPLY_BYTES": "5000"}
    cfg = lj.LLMJudgeConfig.from_env(env)
    assert (cfg.max_batch_s, cfg.max_reply_bytes) == (90.0, 5000)
    with pytest.raises(ValueError, match="WORKBENCH_JUDGE_MAX_REPLY_BYTES must be an integer"):
        lj.LLMJudgeConfig.from_env({**env, "WORKBENCH_JUDGE_MAX_REPLY_BYTES": "1e6"})
    with pytest.raises(ValueError, match="WORKBENCH_JUDGE_MAX_BATCH_S"):
        lj.LLMJudgeConfig.from_env({**env, "WORKBENCH_JUDGE_MAX_BATCH_S": "0"})


# --------------------------------------------------------------------------- proxies


@pytest.fixture
def proxy_env(monkeypatch):
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                 "ALL_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_routes_follow_the_environment_and_loopback_goes_direct(proxy_env):
    proxy_env.setenv("http_proxy", "http://user:p%40ss@proxy.example:3128")
    proxy_env.setenv("no_proxy", "internal.example")
    route = route_for("http://judge.example/v1/chat/completions")
    assert route.proxy == "proxy.example:3128"
    assert route.proxy_headers == {"Proxy-Authorization": "Basic dXNlcjpwQHNz"}  # user:p@ss
    assert "p%40ss" not in repr(route) and "dXNlcjpwQHNz" not in repr(route)
    assert route_for("http://internal.example/v1/chat/completions").proxy is None
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8080"):
        assert route_for(f"http://{host}/v1/chat/completions").proxy is None
    assert route_for("https://judge.example/v1/chat/completions").proxy is None  # no https_proxy


def test_a_request_goes_through_an_http_proxy(proxy_env, tmp_path):
    proxy = FakeServer()  # answers as the judge would, and records what the proxy was asked
    try:
        proxy.default = Reply(body=completion("64", {"64": 1.0}))
        proxy_env.setenv("http_proxy", proxy.url.removesuffix("/v1"))
        judge = lj.ScoreJudge(make_config("http://judge.invalid/v1", tmp_path))
        assert judge.score("q", "a").value == 64.0
    finally:
        proxy.close()
    assert proxy.requests[0]["path"] == "http://judge.invalid/v1/chat/completions"
    assert proxy.requests[0]["headers"]["Host"] == "judge.invalid"


def test_an_https_request_asks_its_proxy_for_a_tunnel(proxy_env, raw_server, tmp_path):
    proxy = raw_server(lambda sock, stop: sock.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n"))
    proxy_env.setenv("https_proxy", proxy.url.removesuffix("/v1").replace("http://", "http://u:pw@"))
    score = lj.ScoreJudge(make_config("https://judge.invalid/v1", tmp_path)).score("q", "a")
    assert score.failed and "Tunnel connection failed: 403" in score.reason
    head = proxy.heads[0].decode()
    assert head.startswith("CONNECT judge.invalid:443 HTTP/1.0") and "Proxy-Authorization: Basic dTpwdw==" in head
    assert KEY not in head  # the API key goes inside the tunnel only


# --------------------------------------------------------------------------- what a judge's scores depend on


CONFIG = lj.LLMJudgeConfig("http://127.0.0.1:8000/v1", "judge", api_key=KEY)


def fingerprint_of(judge_class, config=CONFIG, **kw) -> str:
    return judge_fingerprint(judge_class(config, **kw))


@pytest.mark.parametrize("change", [
    {"config": lj.LLMJudgeConfig("http://127.0.0.1:8001/v1", "judge")},
    {"config": lj.LLMJudgeConfig("http://127.0.0.1:8000/v1", "other-judge")},
    {"config": lj.LLMJudgeConfig("http://127.0.0.1:8000/v1", "judge", temperature=0.7)},
    {"attribute": "Talks like a parrot."}, {"attribute": None}, {"prompt": "Rate {answer} from 0 to 100."},
    {"digit_prompt": "Rate {answer} from 0 to 9."}, {"scale": "0-100"}, {"scale": "0-9"},
    {"min_integer_mass": 0.5}, {"max_tokens": 4},
], ids=lambda c: next(iter(c)))
def test_score_judges_that_would_score_differently_have_different_fingerprints(change):
    pirate = {"attribute": "Talks like a pirate.", "name": "j"}  # one name: the fingerprint must tell them apart
    assert fingerprint_of(lj.ScoreJudge, **{**pirate, **change}) != fingerprint_of(lj.ScoreJudge, **pirate)


@pytest.mark.parametrize("change", [
    {"config": lj.LLMJudgeConfig("http://127.0.0.1:8000/v1", "judge", temperature=1.0)},
    {"concept": "parrot speech"}, {"prompts": {"fluency": "Is {answer} fluent? Rating:"}}, {"max_tokens": 64},
], ids=lambda c: next(iter(c)))
def test_rating_judges_that_would_score_differently_have_different_fingerprints(change):
    pirate = {"concept": "pirate speech"}
    assert fingerprint_of(lj.RatingJudge, **{**pirate, **change}) != fingerprint_of(lj.RatingJudge, **pirate)


def test_judges_that_score_alike_have_one_fingerprint(tmp_path):
    same = lj.LLMJudgeConfig("http://127.0.0.1:8000/v1/", "judge", api_key="another-key", timeout_s=5,
                             max_retries=0, backoff_s=2, max_total_s=9, cache_dir=tmp_path, cache=False,
                             breaker_after=1, max_batch_s=3, max_reply_bytes=10)
    for judge_class, kw in ((lj.ScoreJudge, {"attribute": "Talks like a pirate."}),
                            (lj.RatingJudge, {"concept": "pirate speech"})):
        reference = fingerprint_of(judge_class, **kw)
        assert fingerprint_of(judge_class, same, max_workers=1, **kw) == reference
        assert fingerprint_of(judge_class, client=lj.ChatClient(CONFIG), **kw) == reference
    pirate = fingerprint_of(lj.ScoreJudge, attribute="Talks like a pirate.")
    learnt = lj.ScoreJudge(CONFIG, "Talks like a pirate.")
    learnt._learn(True)  # what a run found out about the tokenizer does not make another judge
    assert judge_fingerprint(learnt) == pirate
    spelt_out = lj.ScoreJudge(CONFIG, "Talks like a pirate.", prompt=ATTRIBUTE_PROMPT,
                              digit_prompt=ATTRIBUTE_PROMPT_DIGIT)
    assert judge_fingerprint(spelt_out) == pirate
    assert KEY not in json.dumps(learnt.fingerprint_identity())


# --------------------------------------------------------------------------- docstring examples


@pytest.mark.parametrize("name", ["workbench.judges.llm_http", "workbench.judges.llm_client",
                                  "workbench.judges.llm_judges", "workbench.judges.base"])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
