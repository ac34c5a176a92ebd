"""The input checks every config and entry point uses: what each refuses, in which words, and what it lets through."""

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from workbench.core.checks import (
    check_field,
    check_instance,
    check_int,
    check_layers,
    check_number,
    check_str_sequence,
    is_int,
    is_number,
)

#: (call, error type, fragments the message must hold): each names the argument and the bad value.
REFUSED = {
    "int: a float, even integral": (lambda: check_int("n", 2.0), TypeError, ["n must be an integer", "2.0 (float)"]),
    "int: a half": (lambda: check_int("n", 2.5, minimum=1), TypeError, ["n must be an integer >= 1", "2.5"]),
    "int: a bool": (lambda: check_int("n", True), TypeError, ["n must be an integer", "True (bool)"]),
    "int: a numpy bool": (lambda: check_int("n", np.bool_(True)), TypeError, ["n must be an integer", "(bool)"]),
    "int: a string": (lambda: check_int("n", "3"), TypeError, ["n must be an integer", "'3' (str)"]),
    "int: None, not optional": (lambda: check_int("n", None), TypeError, ["n must be an integer", "None"]),
    "int: below the minimum": (lambda: check_int("batch_size", -1, minimum=1), ValueError,
                               ["batch_size must be an integer >= 1, got -1"]),
    "int: above the maximum": (lambda: check_int("k", 5, maximum=4), ValueError, ["k must be an integer <= 4, got 5"]),
    "int: numpy below the minimum": (lambda: check_int("k", np.int64(0), minimum=1), ValueError, ["k", "got"]),
    "int: optional says None is allowed": (lambda: check_int("n", 0, minimum=1, optional=True), ValueError,
                                           ["n must be an integer >= 1 or None, got 0"]),
    "number: NaN": (lambda: check_number("t", math.nan), ValueError, ["t must be finite, got nan"]),
    "number: NaN even when infinities are allowed": (lambda: check_number("t", math.nan, finite=False), ValueError,
                                                     ["t must be finite, got nan"]),
    "number: inf": (lambda: check_number("t", math.inf), ValueError, ["t must be finite, got inf"]),
    "number: -inf": (lambda: check_number("t", -math.inf), ValueError, ["t must be finite, got -inf"]),
    "number: numpy NaN": (lambda: check_number("alpha", np.float32("nan")), ValueError,
                          ["alpha must be finite", "nan"]),
    "number: a string": (lambda: check_number("t", "0.7"), TypeError, ["t must be a number", "'0.7' (str)"]),
    "number: a bool": (lambda: check_number("t", False), TypeError, ["t must be a number", "False (bool)"]),
    "number: a complex": (lambda: check_number("t", 1j), TypeError, ["t must be a number", "1j (complex)"]),
    "number: a list": (lambda: check_number("t", [0.5]), TypeError, ["t must be a number", "[0.5] (list)"]),
    "number: exclusive lower bound": (lambda: check_number("top_p", 0, above=0, maximum=1), ValueError,
                                      ["top_p must be a number in (0, 1], got 0"]),
    "number: inclusive upper bound": (lambda: check_number("top_p", 1.5, above=0, maximum=1), ValueError,
                                      ["top_p must be a number in (0, 1], got 1.5"]),
    "number: exclusive upper bound": (lambda: check_number("f", 1.0, minimum=0, below=1), ValueError,
                                      ["f must be a number in [0, 1), got 1.0"]),
    "number: minimum": (lambda: check_number("lr", -1e-3, above=0), ValueError,
                        ["lr must be a number > 0, got -0.001"]),
    "strings: one string": (lambda: check_str_sequence("questions", "Why?"), TypeError,
                            ["questions must be a list of strings", "'Why?'", "pass a list"]),
    "strings: bytes": (lambda: check_str_sequence("questions", b"Why?"), TypeError, ["questions", "b'Why?' (bytes)"]),
    "strings: a dict": (lambda: check_str_sequence("questions", {"a": 1}), TypeError, ["questions", "(dict)"]),
    "strings: a number": (lambda: check_str_sequence("questions", 3), TypeError, ["questions", "3 (int)"]),
    "strings: a non-string item": (lambda: check_str_sequence("questions", ["a", 3]), TypeError,
                                   ["questions[1] must be a string, got 3 (int)"]),
    "strings: None item": (lambda: check_str_sequence("questions", ["a", None]), TypeError, ["questions[1]", "None"]),
    "layers: a float": (lambda: check_layers([0.9], 3, "m"), TypeError, ["layers[0] must be an integer, got 0.9"]),
    "layers: an integral float": (lambda: check_layers([1.0], 3, "m"), TypeError, ["layers[0]", "1.0 (float)"]),
    "layers: a bool": (lambda: check_layers([0, True], 3, "m"), TypeError, ["layers[1]", "True (bool)"]),
    "layers: one float": (lambda: check_layers(1.7, 3, "m"), TypeError, ["layers must be a list of integers", "1.7"]),
    "layers: one bool": (lambda: check_layers(False, 3, "m"), TypeError, ["layers must be", "False (bool)"]),
    "layers: a string": (lambda: check_layers("0,2", 3, "m"), TypeError, ["layers must be", "'0,2' (str)"]),
    "layers: empty": (lambda: check_layers([], 3, "m"), ValueError, ["layers is empty"]),
    "layers: past the depth": (lambda: check_layers([0, 3], 3, "m"), IndexError,
                               ["layer index 3 is out of range for 'm', which has layers 0..2"]),
    "layers: negative": (lambda: check_layers(-1, 3, "m"), IndexError, ["layer index -1 is out of range"]),
    "instance: a dict for a config": (lambda: check_instance("config", {"a": 1}, tuple), TypeError,
                                      ["config must be a tuple, got {'a': 1} (dict)"]),
}

#: (call, what it returns): numpy scalars are numbers, Python values come back unchanged.
ACCEPTED = {
    "int: numpy int64": (lambda: check_int("n", np.int64(3), minimum=1), 3),
    "int: numpy uint8": (lambda: check_int("n", np.uint8(3)), 3),
    "int: at the minimum": (lambda: check_int("n", 1, minimum=1), 1),
    "int: optional None": (lambda: check_int("n", None, optional=True), None),
    "number: numpy float32": (lambda: check_number("alpha", np.float32(1.5)), 1.5),
    "number: numpy float64": (lambda: check_number("alpha", np.float64(1.5)), 1.5),
    "number: numpy int": (lambda: check_number("t", np.int32(2), minimum=0), 2),
    "number: an int stays an int": (lambda: check_number("t", 1, minimum=0), 1),
    "number: inf when allowed": (lambda: check_number("t", math.inf, finite=False), math.inf),
    "number: optional None": (lambda: check_number("t", None, optional=True), None),
    "strings: a tuple": (lambda: check_str_sequence("q", ("a", "b")), ["a", "b"]),
    "strings: a generator": (lambda: check_str_sequence("q", (s for s in "ab")), ["a", "b"]),
    "strings: numpy strings": (lambda: check_str_sequence("q", np.array(["a", "b"])), ["a", "b"]),
    "layers: None is every layer": (lambda: check_layers(None, 3, "m"), [0, 1, 2]),
    "layers: one int is that layer": (lambda: check_layers(1, 3, "m"), [1]),
    "layers: one numpy int": (lambda: check_layers(np.int64(2), 3, "m"), [2]),
    "layers: a numpy array": (lambda: check_layers(np.array([2, 0]), 3, "m"), [0, 2]),
    "layers: repeats and order": (lambda: check_layers((2, 0, 2), 3, "m"), [0, 2]),
    "layers: a range": (lambda: check_layers(range(3), 3, "m"), [0, 1, 2]),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_values_are_refused_naming_argument_and_value(case):
    call, error, fragments = REFUSED[case]
    with pytest.raises(error) as caught:
        call()
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_good_values_come_back_as_plain_python(case):
    call, expected = ACCEPTED[case]
    value = call()
    assert value == expected
    assert type(value) is type(expected)


def test_numbers_keep_their_kind_so_cache_keys_do_not_move():
    assert type(check_number("t", 1)) is int and type(check_number("t", 0.7)) is float
    assert check_number("t", 0.7) == 0.7 and type(check_int("n", np.int16(4))) is int


def test_is_int_and_is_number_are_the_rules_the_checks_apply():
    values = (3, np.int64(3), True, np.bool_(False), 3.0, np.float32(3), "3", None)
    assert [is_int(v) for v in values] == [True, True, False, False, False, False, False, False]
    assert [is_number(v) for v in values] == [True, True, False, False, True, True, False, False]


def test_check_field_names_the_class_and_stores_plain_values():
    @dataclass(frozen=True)
    class Sizes:
        batch_size: int = 8
        temperature: float = 0.7

        def __post_init__(self):
            check_field(self, "batch_size", check_int, minimum=1)
            check_field(self, "temperature", check_number, minimum=0)

    sizes = Sizes(np.int64(4), np.float32(0.5))
    assert (sizes.batch_size, sizes.temperature) == (4, 0.5)
    assert json.dumps([sizes.batch_size, sizes.temperature]) == "[4, 0.5]"  # numpy scalars would not serialise
    with pytest.raises(ValueError, match=r"^Sizes: batch_size must be an integer >= 1, got -1$"):
        Sizes(-1)
    with pytest.raises(ValueError, match=r"^Sizes: temperature must be finite, got nan$"):
        Sizes(temperature=float("nan"))


def test_long_values_are_cut_in_messages():
    with pytest.raises(TypeError) as caught:
        check_int("n", "x" * 500)
    assert len(str(caught.value)) < 200 and "..." in str(caught.value)
