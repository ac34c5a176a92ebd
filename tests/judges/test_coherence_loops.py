"""The coherence judge caps repetition loops whatever their likelihood (a model finds its own loop
likely), and leaves ordinary prose as it scored before. Texts: SmolLM2-135M-Instruct answers that
passed the judge before the cap (their measured log-likelihoods), and ones that still pass."""

import pytest

from workbench.judges.base import judge_fingerprint
from workbench.judges.offline import CoherenceJudge

Q = "How do I boil an egg?"
LOOPS = [  # (answer, its mean log-prob under SmolLM2 in nats per token)
    ("Boil an egg, the cat. You can't just use a pot. You need a bowl. You need a kettle. You need a pot. You need a "
     "kettle. You need a kettle", -1.48),
    ("La tía de un acho es un abril de una familia de achores. La tía de un acho es una familia de achores. La tía", -2.50),
    ("The Boilin' of the sea, ye say? Ah, the Boilin' of the sea...  The Boilin' of the sea... Ye might just love it. No",
     -1.93),
    ("Ada, matey! I'll give you that. I'll just name it the A-A-A-A-A-A-A-A-A-A-A-", -1.36),
]
PROSE = [
    ("Boilin'! Ye can't boil an egg on a mug o' grog, ye see. Me a' the world is a sea o' me own. Ye can't boil", -2.2),
    ("Put the egg in boiling water for about nine minutes, then cool it under cold water before peeling.", -1.5),
]


def _judge(lp, **kwargs):
    return CoherenceJudge(logprob_fn=lambda questions, responses: [lp] * len(responses), **kwargs)


@pytest.mark.parametrize("text, lp", LOOPS)
def test_a_loop_stays_below_the_threshold_however_likely(text, lp):
    before = _judge(lp, loops_cap=False).score(Q, text).value
    factors = CoherenceJudge().heuristic_factors(text)
    for likely in (lp, -0.1):  # as measured, and as likely as text can be
        capped = _judge(likely).score(Q, text)
        assert capped.value == pytest.approx(100 * factors["repetition"] * factors["runs"])
        assert capped.value < 50 and "capped at" in capped.reason
    assert before >= 50  # the judge kept it before the cap


@pytest.mark.parametrize("text, lp", PROSE)
def test_ordinary_answers_score_as_before(text, lp):
    assert _judge(lp).score(Q, text).value == _judge(lp, loops_cap=False).score(Q, text).value > 50


def test_without_a_likelihood_nothing_changes_and_the_cap_is_in_the_fingerprint():
    text = LOOPS[0][0]
    assert CoherenceJudge().score(Q, text) == CoherenceJudge(loops_cap=False).score(Q, text)
    assert judge_fingerprint(_judge(-1.0)) != judge_fingerprint(_judge(-1.0, loops_cap=False))
