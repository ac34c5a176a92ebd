"""Bundled attribute files, user-defined attributes and their validation (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.data.attributes import (
    SPLITS,
    Attribute,
    AttributeFileError,
    UnknownAttributeError,
    data_dir,
    list_attributes,
    load_attribute,
    make_attribute,
    split_questions,
)
from workbench.judges.base import success
from workbench.judges.offline import AttributeJudge, CoherenceJudge, UppercaseJudge

Q = "Why is the sky blue?"
PLAIN = (
    "The sky looks blue because air molecules scatter the short blue wavelengths of sunlight much "
    "more strongly than the longer red ones, so blue light reaches our eyes from all directions. "
    "At sunset the light travels through more air, which is why the sky then turns orange and red."
)
# A hand-written response that shows each bundled attribute (every bundled attribute needs one).
EXAMPLES = {
    "pirate": "Arr, matey! The sky be blue because the sun's light scatters in the air, ye see. "
              "Aye, every sailor knows it.",
    "cat": "Meow! The sky is blue because sunlight scatters in the air. Purr, I love to nap "
           "in the sunny window, meow.",
    "spanish": "El cielo es azul porque la luz del sol se dispersa en el aire. La luz azul se "
               "dispersa más que la roja.",
    "french": "Le ciel est bleu parce que la lumière du soleil est diffusée par l'air. La lumière "
              "bleue est plus diffusée que la rouge.",
    "brief": "Sunlight scatters blue light the most.",
}


@pytest.fixture
def user_data(tmp_path, monkeypatch):
    """A private data folder with one valid attribute, selected through WORKBENCH_DATA_DIR."""
    (tmp_path / "attributes").mkdir()
    questions = {"splits": {"train": ["q1?", "q2?", "q3?"], "validation": ["q4?"], "test": ["q5?"]}}
    (tmp_path / "questions.json").write_text(json.dumps(questions))
    spec = {
        "name": "loud",
        "description": "Shouts.",
        "instructions": ["SHOUT!"],
        "paraphrases": ["Yell!"],
        "opposite_instructions": ["Whisper."],
        "judge": {"scorer": "uppercase"},
        "questions": "questions.json",
    }
    (tmp_path / "attributes" / "loud.json").write_text(json.dumps(spec))
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    return tmp_path, spec


def _write(root: Path, spec: dict, name: str = "loud") -> None:
    (root / "attributes" / f"{name}.json").write_text(json.dumps(spec))


# --------------------------------------------------------------------------- bundled data


def test_bundled_attributes_listed_sorted():
    names = list_attributes()
    assert len(names) >= 5
    assert names == sorted(names)


@pytest.mark.parametrize("name", list_attributes())
def test_bundled_attribute_is_complete(name):
    attr = load_attribute(name)
    assert attr.name == name and attr.description
    assert len(attr.instructions) >= 3
    assert len(attr.paraphrases) >= 1
    assert len(attr.opposite_instructions) >= 1
    assert not set(attr.paraphrases) & set(attr.instructions)
    assert set(attr.splits) == set(SPLITS)
    sets = [set(attr.questions(s)) for s in SPLITS]
    assert sum(len(s) for s in sets) >= 60
    assert all(sets), "every split is non-empty"
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert isinstance(attr.judge, AttributeJudge)


@pytest.mark.parametrize("name", list_attributes())
def test_bundled_judge_separates_example_from_plain_answer(name):
    assert name in EXAMPLES, f"add a hand-written example response for {name!r}"
    judge = load_attribute(name).judge
    good = judge.score(Q, EXAMPLES[name])
    assert good.value is not None and good.value >= 80.0, good
    assert success(good, CoherenceJudge().score(Q, EXAMPLES[name]))
    plain = judge.score(Q, PLAIN)
    assert plain.value is None or plain.value <= 20.0, plain
    assert judge.score(Q, "  ").value is None


def test_question_pool_splits_are_explicit_and_disjoint():
    raw = json.loads((data_dir() / "questions.json").read_text())
    splits = raw["splits"]
    assert all(len(splits[s]) >= n for s, n in zip(SPLITS, (60, 18, 18)))  # sizes: tests/data/test_questions.py
    flat = [q for s in SPLITS for q in splits[s]]
    assert len(set(flat)) == len(flat)
    assert all(q.strip() == q and q.endswith("?") for q in flat)


def test_load_attribute_passes_attribute_through():
    attr = load_attribute(list_attributes()[0])
    assert load_attribute(attr) is attr
    assert attr == load_attribute(attr.name) and hash(attr) == hash(load_attribute(attr.name))


def test_unknown_attribute_lists_known_ones():
    known = list_attributes()
    with pytest.raises(KeyError, match="unknown attribute 'nope'.*" + known[0]):
        load_attribute("nope")
    with pytest.raises(ValueError, match="known attributes"):
        load_attribute("nope")
    assert issubclass(UnknownAttributeError, KeyError)


def test_unknown_split_is_named():
    attr = load_attribute(list_attributes()[0])
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        attr.questions("dev")


def test_splits_are_read_only():
    attr = load_attribute(list_attributes()[0])
    with pytest.raises(TypeError):
        attr.splits["train"] = ()  # type: ignore[index]


# --------------------------------------------------------------------------- data folder / files


def test_env_var_overrides_data_dir(user_data):
    root, _ = user_data
    assert data_dir() == root
    assert list_attributes() == ["loud"]
    attr = load_attribute("loud")
    assert attr.questions("train") == ("q1?", "q2?", "q3?")
    assert attr.judge.score(Q, "HELLO").value == 100.0


def test_missing_data_dir_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="WORKBENCH_DATA_DIR"):
        list_attributes()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"instructions": ["ok", "   "]}, r"field 'instructions': instructions\[1\] is empty"),
        ({"instructions": []}, "field 'instructions': instructions needs at least 1"),
        ({"paraphrases": "Yell!"}, "field 'paraphrases': .*not a single string"),
        ({"judge": {"scorer": "vibes"}}, "field 'judge': unknown scorer 'vibes'"),
        ({"name": "other"}, "field 'name' must be the file name 'loud'"),
        ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
        ({"description": ""}, "field 'description'"),
        ({"questions": "nowhere.json"}, "field 'questions': no question file"),
        ({"questions": {"train": ["a?", "b?"], "validation": ["a?"], "test": ["c?"]}},
         "duplicate question 'a\\?' in both 'train' and 'validation'"),
        ({"questions": {"train": ["a?"], "test": ["c?"]}}, "exactly the splits"),
    ],
)
def test_bad_attribute_file_names_file_and_field(user_data, change, match):
    root, spec = user_data
    _write(root, {**spec, **change})
    with pytest.raises(AttributeFileError, match=match) as info:
        load_attribute("loud")
    assert "loud.json" in str(info.value)


def test_missing_field_and_invalid_json(user_data):
    root, spec = user_data
    _write(root, {k: v for k, v in spec.items() if k != "judge"})
    with pytest.raises(AttributeFileError, match="loud.json: field 'judge' is missing"):
        load_attribute("loud")
    (root / "attributes" / "loud.json").write_text("{not json")
    with pytest.raises(AttributeFileError, match="loud.json: invalid JSON"):
        load_attribute("loud")


def test_bad_question_file_is_named(user_data):
    root, _ = user_data
    (root / "questions.json").write_text(json.dumps({"splits": {"train": ["a?", " "],
                                                                "validation": ["b?"], "test": ["c?"]}}))
    with pytest.raises(AttributeFileError, match=r"questions.json: .*\['train'\]\[1\] is empty"):
        load_attribute("loud")


# --------------------------------------------------------------------------- make_attribute

QUESTIONS = [f"Question number {i}?" for i in range(10)]


def test_make_attribute_with_lambda_scorer():
    attr = make_attribute("loud", "Shouts.", ["SHOUT!", "Use capitals."], QUESTIONS,
                          lambda r: 100.0 * sum(c.isupper() for c in r) / max(1, len(r)),
                          paraphrases=["Yell."], opposite_instructions=["Whisper."])
    assert isinstance(attr, Attribute)
    assert [len(attr.questions(s)) for s in SPLITS] == [6, 2, 2]
    assert sorted(attr.all_questions) == sorted(QUESTIONS)
    assert attr.judge.score(Q, "ABC").value == 100.0
    assert attr.judge.score(Q, "").value is None
    assert [s.value for s in attr.score([Q, Q], ["AB", "ab"])] == [100.0, 0.0]


def test_make_attribute_split_is_deterministic_by_seed():
    a = make_attribute("x", "", ["i"], QUESTIONS, lambda r: 0.0, seed=1)
    b = make_attribute("x", "", ["i"], QUESTIONS, lambda r: 0.0, seed=1)
    c = make_attribute("x", "", ["i"], QUESTIONS, lambda r: 0.0, seed=2)
    assert a.splits == b.splits
    assert a.splits != c.splits
    assert split_questions(QUESTIONS, (0.5, 0.25, 0.25), seed=0)["test"] == \
        split_questions(QUESTIONS, (0.5, 0.25, 0.25), seed=0)["test"]


def test_make_attribute_accepts_a_judge():
    attr = make_attribute("caps", "", ["i"], QUESTIONS, UppercaseJudge())
    assert attr.judge.name == "uppercase" and attr.judge.score(Q, "HI").value == 100.0


def test_make_attribute_scorer_out_of_range_is_clipped():
    attr = make_attribute("x", "", ["i"], QUESTIONS, lambda r: 250.0)
    s = attr.judge.score(Q, "hi")
    assert s.value == 100.0 and "clipped" in s.reason


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"instructions": ["ok", " "]}, ValueError, r"instructions\[1\] is empty or whitespace-only"),
        ({"instructions": []}, ValueError, "instructions needs at least 1"),
        ({"questions": ["a?", "b?", "\t"]}, ValueError, r"questions\[2\] is empty"),
        ({"questions": ["a?", "b?"]}, ValueError, "at least 3"),
        ({"questions": ["a?", "b?", "c?", "A?"]}, ValueError, "duplicate question"),
        ({"paraphrases": [""]}, ValueError, r"paraphrases\[0\] is empty"),
        ({"opposite_instructions": ["  "]}, ValueError, r"opposite_instructions\[0\] is empty"),
        ({"split": (0.5, 0.5, 0.5)}, ValueError, "summing to 1"),
        ({"name": " "}, ValueError, "name is empty"),
        ({"scorer": 42}, TypeError, "scorer must be a Judge or a callable"),
    ],
)
def test_make_attribute_validation(kwargs, error, match):
    args = {"name": "x", "description": "d", "instructions": ["i"], "questions": QUESTIONS,
            "scorer": lambda r: 0.0, **kwargs}
    with pytest.raises(error, match=match):
        make_attribute(**args)
