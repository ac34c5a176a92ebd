"""The LLM judges against a real OpenAI-compatible server: llama-cpp-python's, on the embedded GGUF.

Optional: llama-cpp-python is not a dependency of the workbench (it builds llama.cpp from source,
see ``make judge-server``), so this module is skipped where it is not installed. The server runs on
127.0.0.1 only; nothing leaves the machine.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = pytest.mark.integration

if importlib.util.find_spec("llama_cpp") is None:
    pytest.skip('llama-cpp-python is not installed (build it with CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install '
                '"llama-cpp-python[server]", see `make judge-server`)', allow_module_level=True)

from workbench.core.models import embedded_gguf_path  # noqa: E402
from workbench.judges.llm_client import LLMJudgeConfig  # noqa: E402
from workbench.judges.llm_judges import RatingJudge, ScoreJudge  # noqa: E402

QUESTION = "How do I boil an egg?"
ANSWERS = [
    "Put the egg in boiling water for about eight minutes, then cool it in cold water.",
    "Arr matey, drop yer egg in the bubblin' pot fer eight minutes, then dunk it in cold sea water!",
    "egg egg egg the the the boil boil boil",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def judge_server(tmp_path_factory):
    """llama-cpp-python's server on the embedded GGUF at a free port; its base URL."""
    if importlib.util.find_spec("llama_cpp.server") is None:
        pytest.skip('llama-cpp-python was built without its server extra: pip install "llama-cpp-python[server]"')
    port = _free_port()
    log = tmp_path_factory.mktemp("judge-server") / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf_path()), "--model_alias", "judge",
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 180
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"the judge server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
            try:
                with opener.open(f"{base_url}/models", timeout=2) as response:
                    if response.status == 200 and json.loads(response.read()).get("data"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the judge server did not answer within 180 s:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def config(judge_server, tmp_path):
    return LLMJudgeConfig(judge_server, "judge", timeout_s=120, max_retries=1, cache_dir=tmp_path / "cache")


def test_score_judge_on_a_real_server(config):
    judge = ScoreJudge(config, attribute="Talks like a pirate.", max_workers=1)
    scores = judge.score_batch([QUESTION] * len(ANSWERS), ANSWERS)
    assert not any(s.failed for s in scores), [s.reason for s in scores]
    assert any(s.value is not None for s in scores), [s.reason for s in scores]
    assert all("logprob" in s.reason for s in scores if s.value is not None)  # the server returns top log-probs
    # SmolLM2's tokenizer writes numbers digit by digit: never taken for whole-number tokens
    assert judge.digit_splitting is not False
    coherence = ScoreJudge(config, max_workers=1).score_batch([QUESTION] * len(ANSWERS), ANSWERS)
    assert not any(s.failed for s in coherence), [s.reason for s in coherence]
    assert judge.client.http_requests >= len(ANSWERS)


def test_rating_judge_on_a_real_server(config):
    judge = RatingJudge(config, "pirate speech", max_workers=1)
    for answer in ANSWERS[:2]:
        ratings = judge.rate(QUESTION, answer)
        assert ratings.error is None
        assert set(ratings.replies) == {"concept", "instruction", "fluency"}
        for criterion, value in ratings.ratings.items():
            assert value in (0, 1, 2) or (value is None and "not one of 0, 1, 2" in ratings.notes[criterion])
        score = ratings.as_score()
        assert not score.failed and (score.value is None) == (None in ratings.ratings.values())
