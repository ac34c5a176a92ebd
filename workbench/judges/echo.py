"""Instruction echoes: a response that repeats the steering instruction instead of following it.

Weak and base models often answer ``x'`` by writing the instruction out again ("You are Captain
Jack, a pirate. Every sentence you say has pirate words: Arr! Ahoy, matey! ..."). A word-list judge
scores the echoed words as a perfect persona, and a likelihood finds repeated text plausible, so
without this check such samples pass as successful triplets and teach a steerer to copy the prompt.

Two measures over lower-cased words (:func:`workbench.judges.offline.words_of`), both against the
instruction:

- :func:`instruction_coverage`: the share of the instruction's distinct word 3-grams that the
  response contains (an echo cut short by the length limit still repeats a run of it);
- :func:`longest_copied_run`: the longest run of consecutive response words that is also a run of
  the instruction's words.

A response is an echo when either reaches its threshold (:class:`EchoFilter`): coverage >= 0.25 or
a copied run of >= 5 words. Measured on real echoes (Gemma-3-270M base on the pirate instructions,
40 answers of 40 tokens, 14 of them echoes by reading) and real answers (SmolLM2-135M-Instruct on
the five bundled attributes, 260 distinct answers): every SmolLM2 answer covers at most 0.14 of its
instruction and copies at most 4 words in a row ("I'm a very busy assistant"); every Gemma echo
covers at least 0.40 or copies at least 6 words (the README's *Bring your own model* has the numbers). Copying an example phrase of the instruction
in full ("Arr! Ahoy, matey! Aye, ye landlubber!", 6 words) counts as an echo too: words the
instruction supplies verbatim are no evidence that the model follows it.

Example:
    >>> ins = "You are a pirate. Speak like a pirate: say Arr and matey."
    >>> EchoFilter().is_echo(ins, "You are a pirate. Speak like a pirate: say Arr and matey. What is")
    True
    >>> EchoFilter().is_echo(ins, "Arr, matey! The sky be blue because sunlight scatters, aye.")
    False
    >>> round(instruction_coverage(ins, "You are a black hole. Speak like a black hole: say Arr and matey."), 2)
    0.4
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.judges.offline import words_of

__all__ = ["EchoFilter", "instruction_coverage", "longest_copied_run"]


def _words(text: str) -> list[str]:
    return [w.lower() for w in words_of(text)]


def _grams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def instruction_coverage(instruction: str, response: str, n: int = 3) -> float:
    """Share (0-1) of the instruction's distinct word ``n``-grams that occur in the response (0 for an
    instruction shorter than ``n`` words)."""
    wanted = _grams(_words(instruction), n)
    if not wanted:
        return 0.0
    return len(wanted & _grams(_words(response), n)) / len(wanted)


def longest_copied_run(instruction: str, response: str) -> int:
    """Length in words of the longest run of consecutive response words that the instruction also has."""
    a, b = _words(response), _words(instruction)
    best, previous = 0, [0] * (len(b) + 1)
    for word in a:
        current = [0] * (len(b) + 1)
        for j, other in enumerate(b, start=1):
            if word == other:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


@dataclass(frozen=True)
class EchoFilter:
    """Whether a response echoes its instruction: 3-gram coverage >= ``min_coverage`` or a copied
    run of >= ``min_run`` words (see the module docstring for how the defaults were measured)."""

    min_coverage: float = 0.25
    min_run: int = 5

    def __post_init__(self) -> None:
        if not 0.0 < self.min_coverage <= 1.0:
            raise ValueError(f"min_coverage must be in (0, 1], got {self.min_coverage!r}")
        if not isinstance(self.min_run, int) or self.min_run < 2:
            raise ValueError(f"min_run must be an integer >= 2, got {self.min_run!r}")

    def is_echo(self, instruction: str, response: str) -> bool:
        return (instruction_coverage(instruction, response) >= self.min_coverage
                or longest_copied_run(instruction, response) >= self.min_run)

    def reason(self, instruction: str, response: str) -> str:
        """The two measures, for a table's reason column."""
        return (f"covers {instruction_coverage(instruction, response):.2f} of the instruction's 3-grams, "
                f"copies {longest_copied_run(instruction, response)} words in a row")
