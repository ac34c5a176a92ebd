"""The shared question pool ``data/questions.json``: size, fixed splits, no near-duplicates, varied forms.

Near-duplicates are measured on a question's content words: lower-cased words without question and
function words (``how, do, I, what, the, can you explain, difference between`` ...) and light verbs
(``make, get, take, have, go, keep, put, give, use``), with a crude plural / -ing stem. Two questions
are near-duplicates when the Jaccard overlap of those sets is >= 0.6, or the character 3-grams of the
sorted content words overlap >= 0.7 (spelling variants such as color / colour). Why 0.6: the same
question asked with other function words scores 1.0; a question that gains or loses one qualifier
or swaps its light verb ("cook rice" / "cook brown rice", "make a cup of tea" / "brew a cup of tea")
scores 0.67-0.75; a question that swaps one of two content words for another ("largest desert" /
"largest bird in the world", "cook rice" / "cook pasta") scores at most 0.5 and is a different
question. The pool's closest pairs score 0.5 (content words) and 0.55 (3-grams). The planted
duplicates below must all be caught. Not caught: a synonym swap of a content word ("boil an egg" /
"cook an egg"); the pool was also read by hand for those.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import itertools
import json
import re

import pytest

from workbench.data.attributes import data_dir, list_attributes, load_attribute, load_question_splits

SPLITS = ("train", "validation", "test")

# sha256 of json.dumps({"train": [60], "validation": [18], "test": [18]}, sort_keys=True): the pool before it
# grew. Stored notebook outputs and README numbers use the first n questions of a split, so this prefix must
# never change.
OLD_PREFIX_SHA256 = "ca89e703097cfb5d930f8b043f8b9b9beacb51dcdc261ee859aeb667e097e4fe"
OLD_SIZES = {"train": 60, "validation": 18, "test": 18}

_STOP = set("""
a an the and or of to in on at for from with by about into as is are was were be been do does did i my me we our
you your it its this that these those how why what which who whom when where can could should would will shall
there their they them he she his her some any so if than then not no yes just very much many more most own up out
off over under again after before while during between difference different compare explain please tell help
make makes made get gets take takes have has go goes keep keeps put give use
""".split())

# Question forms, tried in order; the first pattern that matches names the form.
FORMS = (
    ("compare", r"difference between|different from|^which (is|makes)\b|^is (tea|walking|a laptop)\b|^is it better"
                r"|\bcompare\b|pros and cons"),
    ("explain", r"^(can|could) you explain\b"),
    ("advice", r"^should i\b|^(what|when|how often) should i\b|^is it (a good idea|okay|safe|bad|rude|worth)\b"
               r"|\btips\b|\bbest way\b"),
    ("how-to", r"^how (do|can|should) i\b"),
    ("why", r"^why\b"),
    ("factual", r"^(what|who|when|where|which|how)\b"),
)
MIN_PER_FORM = {"how-to": 150, "why": 80, "factual": 150, "explain": 40, "compare": 50, "advice": 50}
MIN_PER_FORM_TEST = {"how-to": 30, "why": 15, "factual": 30, "explain": 8, "compare": 10, "advice": 10}


def _words(question: str) -> list[str]:
    return re.sub(r"[^a-z0-9 ]+", " ", question.lower()).split()


def _stem(word: str) -> str:
    for suffix, repl in (("ies", "y"), ("ing", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + repl
    return word


@functools.lru_cache(maxsize=None)
def content_words(question: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in _words(question) if w not in _STOP)


@functools.lru_cache(maxsize=None)
def _trigrams(question: str) -> frozenset[str]:
    s = " ".join(sorted(content_words(question)))
    return frozenset(s[i:i + 3] for i in range(len(s) - 2))


def _jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def near_duplicate(a: str, b: str) -> bool:
    return _jaccard(content_words(a), content_words(b)) >= 0.6 or _jaccard(_trigrams(a), _trigrams(b)) >= 0.7


def form(question: str) -> str:
    for name, pattern in FORMS:
        if re.search(pattern, question.lower()):
            return name
    return "other"


def _near_duplicate_pairs(questions: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in itertools.combinations(questions, 2) if near_duplicate(a, b)]


@pytest.fixture(scope="module")
def splits() -> dict[str, tuple[str, ...]]:
    return load_question_splits(data_dir() / "questions.json")


def test_pool_size_and_test_split(splits):
    sizes = {s: len(splits[s]) for s in SPLITS}
    assert sum(sizes.values()) >= 600, sizes
    assert sizes["test"] >= 150 and sizes["validation"] >= 100, sizes


def test_old_questions_are_the_unchanged_prefix(splits):
    prefix = {s: list(splits[s][:OLD_SIZES[s]]) for s in SPLITS}
    digest = hashlib.sha256(json.dumps(prefix, sort_keys=True).encode()).hexdigest()
    assert digest == OLD_PREFIX_SHA256, "the first 60 / 18 / 18 questions changed; append new ones after them"
    assert prefix["train"][0] == "What is the moon made of?" and prefix["test"][-1] == "How do magnets work?"


def test_no_question_in_two_splits_and_no_exact_duplicates(splits):
    flat = [q for s in SPLITS for q in splits[s]]
    normalised = [" ".join(_words(q)) for q in flat]
    dupes = [q for q, n in collections.Counter(normalised).items() if n > 1]
    assert not dupes, dupes
    for a, b in itertools.combinations(SPLITS, 2):
        assert not set(splits[a]) & set(splits[b]), (a, b)
    assert all(q.strip() == q and q.endswith("?") and q[0].isupper() for q in flat)


def test_no_near_duplicates(splits):
    flat = [q for s in SPLITS for q in splits[s]]
    pairs = _near_duplicate_pairs(flat)
    assert not pairs, pairs[:10]


@pytest.mark.parametrize("planted, original", [
    ("How can I make a good cup of tea?", "How do I make a cup of tea?"),
    ("How do I sleep better at night?", "How can I sleep better at night?"),
    ("Why do leaves change colour in the autumn?", "Why do leaves change color in autumn?"),
    ("How do I cook brown rice?", "How do I cook rice?"),
    ("How do I brew a cup of tea?", "How do I make a cup of tea?"),
    ("What is the difference between a toad and a frog?", "What is the difference between a frog and a toad?"),
    ("Can you explain how magnets work?", "How do magnets work?"),
])
def test_planted_near_duplicate_is_caught(splits, planted, original):
    flat = [q for s in SPLITS for q in splits[s]]
    assert original in flat
    assert planted not in flat
    assert [q for q in flat if near_duplicate(q, planted)] == [original]


def test_different_questions_on_one_template_are_not_flagged():
    assert not near_duplicate("How do I cook rice?", "How do I cook pasta?")
    assert not near_duplicate("What is the largest desert in the world?", "What is the largest bird in the world?")
    assert not near_duplicate("What is the difference between a frog and a toad?",
                              "What is the difference between a town and a city?")


def test_forms_are_varied(splits):
    everything = collections.Counter(form(q) for s in SPLITS for q in splits[s])
    test = collections.Counter(form(q) for q in splits["test"])
    assert everything["other"] == 0, [q for s in SPLITS for q in splits[s] if form(q) == "other"]
    for name, minimum in MIN_PER_FORM.items():
        assert everything[name] >= minimum, (name, everything)
    for name, minimum in MIN_PER_FORM_TEST.items():
        assert test[name] >= minimum, (name, test)


def test_form_classifier():
    assert form("What is the difference between a frog and a toad?") == "compare"
    assert form("Could you explain how cheese is made?") == "explain"
    assert form("Should I stretch before running?") == "advice"
    assert form("How do I tie my shoes?") == "how-to"
    assert form("Why is the sky blue?") == "why"
    assert form("Who invented the telephone?") == "factual"


def test_attributes_use_the_pool(splits):
    for name in list_attributes():
        attribute = load_attribute(name)
        for s in SPLITS:
            assert attribute.questions(s) == splits[s], (name, s)
