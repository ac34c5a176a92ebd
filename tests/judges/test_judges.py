"""Offline judges pinned on hand-written responses (no model needed)."""

from __future__ import annotations

import math

import pytest

from workbench.judges.base import Judge, Score, success
from workbench.judges.offline import (
    AttributeJudge,
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

Q = "What is the capital of France?"

PIRATE_SPEC = {
    "scorer": "lexicon",
    "words": ["matey", "ahoy", "ye", "aye", "landlubber", "treasure", "shiver me timbers"],
    "patterns": ["a+r+r+"],
}

NORMAL = [
    "The capital of France is Paris. It is famous for the Eiffel Tower, the Louvre museum and "
    "its cafes, and it sits on the river Seine in the north of the country.",
    "To boil an egg, place it in a pot of cold water, bring the water to a boil, then let it "
    "simmer for about nine minutes. Cool it in cold water before peeling.",
    "The sky looks blue because air molecules scatter short blue wavelengths of sunlight much "
    "more than red ones, so blue light reaches our eyes from every direction.",
    "Here is a simple recipe:\n\n**Ingredients**\n\n* 1 cup of flour\n* 2 eggs\n* 1/2 cup of "
    "milk\n\nMix everything, heat a pan and cook each pancake for 2 minutes per side.",
    "Paris.",
]
PERSONA = [
    "Arr, matey! The capital of France be Paris, ye landlubber. Aye, a fine port it is, full "
    "of treasure and grog for a thirsty crew.",
    "Meow! Purr... the sky is blue because the sunlight bounces around in the air, meow. "
    "I like to nap in the sun and watch the birds.",
    "THE CAPITAL OF FRANCE IS PARIS! IT IS A BIG CITY WITH A TALL TOWER!",
    "Paris is the capital of France 🇫🇷🗼. It is a lovely city to visit in the spring 🌸😊.",
    "La capitale de la France est Paris. C'est une très belle ville avec la tour Eiffel.",
]
DEGENERATE = [
    "the the the the the the the the the the the the the the the the",
    "Arr arr arr arr arr arr",
    "xq7#kz!!p qqzx 9f8g&& ptkv% zzrtq wq#x vbnm3 !!ll kkjhg",
    "banana banana banana banana banana banana banana banana banana banana",
    "!!!!!!!!!!!!!!!!!!!!!!!!!",
    "I can cook the rice with the best. I can cook the rice with the best. I can cook the rice "
    "with the best. I can cook the rice with the best. I can cook the rice with the best.",
    "🌟🌟🌟🌟🌟🌟🌟🌟🌟🌟🌟🌟🌟🌟🌟🌟",
    "Yo-o-o-o-o-o-o-o-o-o-o-o-o-o-o-o-o-o-o-o-o-o-o-o",
]


# --------------------------------------------------------------------------- Score, protocol


def test_score_validates_range():
    assert Score(0.0).value == 0.0 and Score(100.0).value == 100.0 and Score(None).value is None
    with pytest.raises(ValueError, match="0, 100"):
        Score(101.0)
    with pytest.raises(ValueError, match="0, 100"):
        Score(-0.5)


@pytest.mark.parametrize(
    "judge",
    [LexiconJudge(words=("x",)), UppercaseJudge(), EmojiJudge(), BrevityJudge(), CoherenceJudge(),
     FunctionJudge(lambda r: 1.0), make_judge(PIRATE_SPEC),
     StopwordLanguageJudge(stopwords=("le", "la"))],
)
def test_judges_follow_protocol(judge):
    assert isinstance(judge, Judge)
    assert isinstance(judge.name, str)


def test_score_batch_checks_lengths():
    with pytest.raises(ValueError, match="2 questions but 1 responses"):
        UppercaseJudge().score_batch([Q, Q], ["A"])
    with pytest.raises(TypeError, match="sequences"):
        UppercaseJudge().score_batch(Q, "A")


# --------------------------------------------------------------------------- lexicon


def test_pirate_answer_scores_high_and_normal_answer_zero():
    pirate = make_judge(PIRATE_SPEC)
    assert pirate.score(Q, PERSONA[0]).value == 100.0
    for text in NORMAL:
        assert pirate.score(Q, text).value == 0.0


def test_lexicon_saturation_one_hit_in_a_normal_answer_passes():
    pirate = make_judge(PIRATE_SPEC)
    one_hit = "Arrr, " + NORMAL[0] + " " + NORMAL[1]  # one hit in 66 words
    assert len(words_of(one_hit)) == 66
    value = pirate.score(Q, one_hit).value
    assert value == pytest.approx(100 * (100 / 66) / 2.5)
    assert 50.0 <= value < 100.0
    assert pirate.score(Q, "Arrr, " + NORMAL[1]).value == 100.0  # one hit in 34 words saturates


def test_lexicon_word_boundaries_and_case():
    j = make_judge(PIRATE_SPEC)
    assert j.inner.matches("Yes, yesterday we arrived in a narrow array, eye to eye.") == []
    assert j.inner.matches("ARRR MATEY! Aarrr! ye, Ye and YE") == ["ARRR", "MATEY", "Aarrr", "ye", "Ye", "YE"]
    assert j.inner.matches("Shiver me   timbers, matey's treasure") == [
        "Shiver me   timbers", "matey", "treasure"]


def test_lexicon_rejects_bad_specs():
    with pytest.raises(ValueError, match="at least one word or pattern"):
        LexiconJudge()
    with pytest.raises(ValueError, match="invalid lexicon pattern"):
        LexiconJudge(patterns=("a(",))
    with pytest.raises(ValueError, match="empty"):
        LexiconJudge(words=("ok", "  "))


# --------------------------------------------------------------------------- other attribute judges


def test_uppercase_judge():
    j = UppercaseJudge()
    assert j.score(Q, PERSONA[2]).value == 100.0
    assert j.score(Q, NORMAL[0]).value < 10.0
    assert make_judge({"scorer": "uppercase"}).score(Q, PERSONA[0]).value < 10.0
    assert j.score(Q, "123 🌟 !!").value is None


def test_emoji_judge():
    j = EmojiJudge()
    assert count_emoji("Sun ☀️ and water 💧, flag 🇫🇷, thumbs 👍🏽") == 3
    assert j.score(Q, PERSONA[3]).value == 100.0
    assert j.score(Q, NORMAL[0]).value == 0.0
    assert j.score(Q, "One emoji 😊 in a short reply.").value == 100.0  # counted as 20 words
    one_in_long = NORMAL[0] + " 😊"  # 1 emoji in 32 words: 3.1 per 100 words, saturation 4
    assert len(words_of(one_in_long)) == 32
    assert j.score(Q, one_in_long).value == pytest.approx(100 * (100 / 32) / 4)


def test_language_judge():
    french = make_judge({"scorer": "language", "language": "fr",
                         "stopwords": ["le", "la", "les", "de", "est", "une", "et", "avec", "c"]})
    assert french.score(Q, PERSONA[4]).value > 90.0
    assert french.score(Q, NORMAL[0]).value < 10.0
    none = french.score(Q, "Paris!")
    assert none.value is None and "stopwords" in none.reason


def test_brevity_judge():
    j = BrevityJudge(full_words=15, zero_words=40)
    assert j.score(Q, "Paris is the capital.").value == 100.0
    assert j.score(Q, NORMAL[0]).value < 100.0
    assert j.score(Q, " ".join(["word"] * 60)).value == 0.0
    with pytest.raises(ValueError):
        BrevityJudge(full_words=10, zero_words=5)


def test_function_judge_clips_or_raises():
    assert FunctionJudge(lambda r: 150.0).score(Q, "x").value == 100.0
    assert "clipped" in FunctionJudge(lambda r: -3).score(Q, "x").reason
    with pytest.raises(ValueError, match="outside 0-100"):
        FunctionJudge(lambda r: 150.0, clip=False).score(Q, "x")
    assert FunctionJudge(lambda r: math.nan).score(Q, "x").value is None
    with pytest.raises(TypeError, match="non-numeric"):
        FunctionJudge(lambda r: "high").score(Q, "x")


@pytest.mark.parametrize("judge", [make_judge(PIRATE_SPEC), UppercaseJudge(), EmojiJudge(),
                                   BrevityJudge(), FunctionJudge(lambda r: 50.0)])
@pytest.mark.parametrize("empty", ["", "   ", "\n\t "])
def test_empty_response_scores_none_with_reason(judge, empty):
    s = judge.score(Q, empty)
    assert s.value is None and "empty" in s.reason


def test_judges_are_deterministic():
    j = make_judge(PIRATE_SPEC)
    c = CoherenceJudge()
    texts = NORMAL + PERSONA + DEGENERATE
    assert j.score_batch([Q] * len(texts), texts) == j.score_batch([Q] * len(texts), texts)
    assert c.score_batch([Q] * len(texts), texts) == c.score_batch([Q] * len(texts), texts)


# --------------------------------------------------------------------------- registry


def test_make_judge_registry():
    j = make_judge(PIRATE_SPEC)
    assert isinstance(j, AttributeJudge) and j.name == "lexicon" and j.spec == PIRATE_SPEC
    with pytest.raises(ValueError, match="unknown scorer 'nope'"):
        make_judge({"scorer": "nope"})
    with pytest.raises(ValueError, match="no 'scorer' key"):
        make_judge({"words": ["a"]})
    with pytest.raises(ValueError, match="bad parameters for scorer 'uppercase'"):
        make_judge({"scorer": "uppercase", "colour": "red"})


# --------------------------------------------------------------------------- coherence


@pytest.mark.parametrize("text", NORMAL + PERSONA)
def test_coherence_high_on_normal_and_persona_answers(text):
    assert CoherenceJudge().score(Q, text).value >= 70.0


@pytest.mark.parametrize("text", DEGENERATE)
def test_coherence_low_on_degenerate_text(text):
    s = CoherenceJudge().score(Q, text)
    assert s.value < 40.0, s.reason
    assert s.reason.startswith("low:")


def test_coherence_ordering_margin():
    c = CoherenceJudge()
    good = min(c.score(Q, t).value for t in NORMAL + PERSONA)
    bad = max(c.score(Q, t).value for t in DEGENERATE)
    assert good - bad >= 40.0


def test_coherence_empty_is_zero():
    assert CoherenceJudge().score(Q, "  ").value == 0.0


def test_coherence_blends_logprob():
    calls = []

    def lp(questions, responses):
        calls.append(len(responses))
        return [-1.5 if "Paris" in r else -6.0 for r in responses]

    c = CoherenceJudge(logprob_fn=lp)
    scores = c.score_batch([Q, Q, Q], [NORMAL[0], "", NORMAL[1]])
    assert calls == [2]  # empty responses are not sent to the model
    assert scores[0].value > 90.0
    assert scores[1].value == 0.0
    assert scores[2].value < 40.0  # fluent text the model finds very unlikely
    # repetitive text stays low even when the model finds it likely
    assert CoherenceJudge(logprob_fn=lambda q, r: [-0.1] * len(r)).score(Q, DEGENERATE[0]).value < 10


def test_logprob_mapping_is_monotone_and_documented():
    c = CoherenceJudge()
    values = [c.logprob_score(x) for x in (-8.0, -5.0, -3.5, -2.5, -1.5, -0.5)]
    assert values == sorted(values)
    assert c.logprob_score(-1.5) > 90 and c.logprob_score(-5.0) < 10
    assert c.logprob_score(-3.5) == pytest.approx(50.0)


def test_coherence_checks_logprob_fn_output():
    c = CoherenceJudge(logprob_fn=lambda q, r: [-1.0])
    with pytest.raises(ValueError, match="1 values for 2 responses"):
        c.score_batch([Q, Q], ["Paris is nice.", "Lyon is nice."])
    with pytest.raises(ValueError, match="logprob_weight"):
        CoherenceJudge(logprob_weight=2.0)


# --------------------------------------------------------------------------- success


def test_success_rule():
    assert success(Score(50.0), Score(50.0))
    assert success(80.0, 90.0)
    assert not success(Score(49.9), Score(90.0))
    assert not success(Score(90.0), Score(10.0))
    assert not success(Score(None, "empty response"), Score(90.0))
    assert not success(90.0, None)
    assert success(Score(30.0), Score(30.0), threshold=25.0)
