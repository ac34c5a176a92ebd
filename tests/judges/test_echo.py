"""Instruction echoes, on real texts: Gemma-3-270M (base) answers that repeat the pirate instructions,
and SmolLM2-135M-Instruct answers that follow them (taken from the runs that set the thresholds)."""

import pytest

from workbench.judges.echo import EchoFilter, instruction_coverage, longest_copied_run

CAPTAIN = "You are a pirate captain. You always talk like a pirate. Start every answer with 'Arr, matey!' and use " \
          "pirate words like ahoy, aye, ye and treasure."
SPEAK = "You are a pirate. Speak like a pirate: say Arr and matey."
JACK = "You are Captain Jack, a pirate. Every sentence you say has pirate words: Arr! Ahoy, matey! Aye, ye landlubber!"

ECHOES = [  # Gemma-3-270M base, pirate run (40 questions, 40 tokens): echoes its judges kept
    (JACK, "You are captain Jack, a pirate. Every sentence you say has pirate words: Arr! Ahoy, matey! Aye, ye landlubber!"),
    (SPEAK, "You are a black hole. Speak like a black hole: say Arr and matey.\n\nWhat is a black hole? mìnhmodel"),
    (JACK, "You are a pirate. Every sentence you say has pirate words:\n\n* <b>A:</b> I am a pirate.\n* <b>B:</b> I am a"),
    (CAPTAIN, "The seasons are the time when the sun rises, sets and goes back to sleep.\n\nWhere is the sea?asında\n"
              "場所(Where is the sea?)\nYou are a pirate captain. You"),  # cut short by the length limit
    (CAPTAIN, "Ship your boat.\nYou're a pirate captain.\nYou always talk like a pirate.\nStart every answer with 'Arr, "
              "matey!'\nUse pirate words like ahoy, aye"),
    (SPEAK, "The solution is to practice calm down.\nYou are a pirate. Speak like a pirate: say Arr and matey.\n\nHow do I"),
]
ANSWERS = [  # SmolLM2-135M-Instruct answers from the same runs: the ones closest to their instructions
    ("You are a very busy assistant. Reply with one short sentence, no more than ten words.",
     "I'm a very busy assistant. I'm always on the go, and I just need to tie my shoes so I can get ready for work."),
    ("You are a very terse assistant. Answer in one short sentence of at most ten words.",
     "Cooking rice: \"I'm sorry for the down-right wrong grammatical error, but as a very terse assistant, I can "
     "suggest only one way to cook rice: \"To cook rice,"),
    ("You are a French assistant. You only speak French. Always answer in French (français).",
     "C'est la vie. I am a French assistant. I am equipped to answer any questions you might have about life, love, "
     "and the French way."),
    (CAPTAIN, "Boilin'! Ye can't boil an egg on a mug o' grog, ye see. Me a' the world is a sea o' me own. Ye can't boil"),
    (JACK, "Aye, aye, aye, aye, aye. I'm Captain Jack, but I've got a soft spot for a few other names. But if I had to pick a"),
    (SPEAK, "A black hole, matey. That's the infamous name for those cosmic singularities that are said to exist at the "
            "very center of everything."),
]


@pytest.mark.parametrize("instruction, response", ECHOES)
def test_real_echoes_are_caught(instruction, response):
    assert EchoFilter().is_echo(instruction, response), EchoFilter().reason(instruction, response)


@pytest.mark.parametrize("instruction, response", ANSWERS)
def test_real_answers_pass(instruction, response):
    assert not EchoFilter().is_echo(instruction, response), EchoFilter().reason(instruction, response)


def test_the_two_measures():
    assert instruction_coverage(SPEAK, SPEAK) == 1.0 and longest_copied_run(SPEAK, SPEAK) == 12
    assert instruction_coverage(SPEAK, "Arr, matey!") == 0.0 and longest_copied_run(SPEAK, "Arr, matey!") == 1
    # a substitution keeps 4 of the instruction's 10 distinct 3-grams but no long run
    black_hole = "You are a black hole. Speak like a black hole: say Arr and matey."
    assert instruction_coverage(SPEAK, black_hole) == pytest.approx(0.4) and longest_copied_run(SPEAK, black_hole) == 4
    assert instruction_coverage("Be brief.", "Be brief.") == 0.0  # fewer than 3 words: no 3-grams
    assert EchoFilter().reason(SPEAK, SPEAK) == "covers 1.00 of the instruction's 3-grams, copies 12 words in a row"


def test_copying_the_instructions_own_example_phrase_in_full_counts_as_an_echo():
    assert EchoFilter().is_echo(JACK, "Arr! Ahoy, matey! Aye, ye landlubber! The sky is blue.")
    assert not EchoFilter().is_echo(JACK, "Arr! Ahoy, matey! The sky be blue, ye landlubber.")


def test_thresholds_are_checked():
    with pytest.raises(ValueError, match="min_coverage must be in"):
        EchoFilter(min_coverage=0.0)
    with pytest.raises(ValueError, match="min_run must be an integer >= 2"):
        EchoFilter(min_run=1)
    assert EchoFilter(min_coverage=1.0, min_run=50).is_echo(SPEAK, SPEAK)
    assert not EchoFilter(min_coverage=1.0, min_run=12).is_echo(SPEAK, SPEAK[:-7])
