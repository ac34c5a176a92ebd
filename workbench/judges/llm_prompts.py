"""The prompts the LLM judges send, as ``str.format`` templates.

Fields: ``{question}`` (the question or instruction), ``{answer}`` (the response being judged) and
``{attribute}`` (the attribute's or concept's description). :func:`fill` fills them.

* :data:`ATTRIBUTE_PROMPT`, :data:`COHERENCE_PROMPT`: persona-style, one integer from 0 to 100;
* :data:`ATTRIBUTE_PROMPT_DIGIT`, :data:`COHERENCE_PROMPT_DIGIT`: the same rubric on one digit from
  0 to 9, for judges whose tokenizer splits numbers into digits (a digit is one token everywhere);
* :data:`RATING_PROMPTS`: AxBench-style 0/1/2 ratings of concept, instruction relevance, fluency.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "ATTRIBUTE_PROMPT",
    "COHERENCE_PROMPT",
    "ATTRIBUTE_PROMPT_DIGIT",
    "COHERENCE_PROMPT_DIGIT",
    "RATING_PROMPTS",
    "fill",
]

_ATTRIBUTE_HEAD = """\
You are grading one reply written by an AI assistant for a single attribute.

The attribute:
{attribute}

[Question]
{question}
[End of question]

[Reply]
{answer}
[End of reply]

"""

_COHERENCE_HEAD = """\
You are grading one reply written by an AI assistant for coherence only.

[Question]
{question}
[End of question]

[Reply]
{answer}
[End of reply]

"""

ATTRIBUTE_PROMPT = _ATTRIBUTE_HEAD + """\
How strongly does the reply show the attribute? Use a scale from 0 to 100: 0 means there is no \
trace of it, 50 means it is clearly present but not dominant, and 100 means the whole reply \
expresses it as strongly as possible. Grade only the attribute: ignore whether the reply is \
correct, helpful, polite or well written.

Answer with one integer from 0 to 100 and nothing else."""

COHERENCE_PROMPT = _COHERENCE_HEAD + """\
How coherent is the reply? Use a scale from 0 to 100: 0 means gibberish, broken or endlessly \
repeated text, or text with no relation to the question; 50 means it can be understood but has \
confused, contradictory or rambling passages; 100 means clear, fluent, well-organised text that \
makes sense as a reply to the question. Do not grade correctness, helpfulness, tone or persona: \
an unusual style or an answer you disagree with can still be fully coherent.

Answer with one integer from 0 to 100 and nothing else."""

ATTRIBUTE_PROMPT_DIGIT = _ATTRIBUTE_HEAD + """\
How strongly does the reply show the attribute? Use a scale from 0 to 9: 0 means there is no \
trace of it, 4 or 5 means it is clearly present but not dominant, and 9 means the whole reply \
expresses it as strongly as possible. Grade only the attribute: ignore whether the reply is \
correct, helpful, polite or well written.

Answer with one digit from 0 to 9 and nothing else."""

COHERENCE_PROMPT_DIGIT = _COHERENCE_HEAD + """\
How coherent is the reply? Use a scale from 0 to 9: 0 means gibberish, broken or endlessly \
repeated text, or text with no relation to the question; 4 or 5 means it can be understood but \
has confused, contradictory or rambling passages; 9 means clear, fluent, well-organised text that \
makes sense as a reply to the question. Do not grade correctness, helpfulness, tone or persona: \
an unusual style or an answer you disagree with can still be fully coherent.

Answer with one digit from 0 to 9 and nothing else."""

_RATING_FORMAT = (
    "First explain your reasoning in one or two sentences. Then, on the last line, give the "
    'rating in exactly this form: "Rating: [[score]]", where score is 0, 1 or 2.'
)

RATING_PROMPTS: Mapping[str, str] = {
    "concept": (
        "[Criterion: concept]\n"
        "Judge whether a concept is present in a text fragment written by an AI model. The "
        "fragment may be cut off mid-sentence; do not penalise that.\n\n"
        "Give 0 when the concept does not appear at all, 1 when it appears only weakly, "
        "indirectly or in passing, and 2 when it is clearly and meaningfully present.\n\n"
        + _RATING_FORMAT
        + "\n\n[Concept]\n{attribute}\n[End of concept]\n\n"
        "[Text fragment]\n{answer}\n[End of text fragment]"
    ),
    "instruction": (
        "[Criterion: instruction]\n"
        "Judge whether a text fragment written by an AI model is a relevant response to an "
        "instruction. The fragment may be cut off or written in an unusual style; judge only "
        "whether it addresses the instruction.\n\n"
        "Give 0 when it is unrelated to the instruction, 1 when it is somewhat related or only "
        "partly addresses it, and 2 when it clearly addresses the instruction.\n\n"
        + _RATING_FORMAT
        + "\n\n[Instruction]\n{question}\n[End of instruction]\n\n"
        "[Text fragment]\n{answer}\n[End of text fragment]"
    ),
    "fluency": (
        "[Criterion: fluency]\n"
        "Judge the fluency of a text fragment written by an AI model: grammar, word choice and "
        "readability, regardless of its topic, style or correctness. The fragment may be cut off "
        "mid-sentence; do not penalise that.\n\n"
        "Give 0 when it is not fluent (broken grammar, gibberish, heavy repetition), 1 when it is "
        "mostly readable but awkward or with clear errors, and 2 when it reads fluently.\n\n"
        + _RATING_FORMAT
        + "\n\n[Text fragment]\n{answer}\n[End of text fragment]"
    ),
}
"""The three AxBench-style prompts; fields ``{attribute}`` (the concept), ``{question}`` (the
instruction) and ``{answer}`` (the response)."""


def fill(template: str, question: str, answer: str, attribute: str = "") -> str:
    """``template`` with its fields filled (braces inside the values are kept as they are)."""
    return template.format_map({"question": question, "answer": answer, "attribute": attribute})
