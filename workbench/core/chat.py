"""Chat formatting and token alignment of the base and prompt-steered runs (DESIGN.md section 2).

``x`` is the user question with the *base system prompt*; ``x'`` adds the steering instruction, as
the system message by default or as a prefix of the user message. The base system prompt is what
the chat template does without a system message (``base_system=None``, the default; SmolLM2's
template then inserts its own default system prompt, "You are a helpful AI assistant named
SmolLM, trained by Hugging Face", so Delta_PS compares the instruction against that), or an
explicit system message of the user's (``base_system=""`` for an empty one, where the template
allows it). With ``placement="user"`` both prompts carry the same base system prompt. Both go through the tokenizer's chat template with
the generation prompt, so each ends with the assistant header (``<|im_start|>assistant\\n`` for
ChatML). The response ``y'`` is tokenized once and the same ids are appended to both prompts;
the steered span is the assistant header followed by the response.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from workbench.core.families import CHAT_TEMPLATES

log = logging.getLogger(__name__)

Placement = Literal["system", "user", "auto"]
PLACEMENTS: tuple[str, ...] = ("system", "user", "auto")


def _require_text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def build_messages(question: str, instruction: str | None = None, placement: Placement = "system",
                   base_system: str | None = None) -> list[dict]:
    """The chat messages of ``x`` (no instruction) or ``x'`` (with it).

    Args:
        base_system: the system message of ``x`` (and of ``x'`` when the instruction goes into the
            user turn); ``None`` sends none, leaving the chat template's default.
    """
    _require_text(question, "question")
    if base_system is not None and not isinstance(base_system, str):
        raise TypeError(f"base_system must be a string or None, got {type(base_system).__name__}")
    base = [] if base_system is None else [{"role": "system", "content": base_system}]
    if instruction is None:
        return base + [{"role": "user", "content": question}]
    _require_text(instruction, "instruction")
    if placement == "system":
        return [{"role": "system", "content": instruction}, {"role": "user", "content": question}]
    if placement == "user":
        return base + [{"role": "user", "content": f"{instruction}\n\n{question}"}]
    if placement == "auto":
        raise ValueError("placement 'auto' depends on the chat template: resolve it first with "
                         "resolve_placement(tokenizer, 'auto')")
    raise ValueError(f"unknown instruction placement {placement!r}; expected one of {PLACEMENTS}")


def _tokenizer_name(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or getattr(tokenizer, "init_kwargs", {}).get("name_or_path")
               or type(tokenizer).__name__)


def has_system_role(tokenizer: Any) -> bool:
    """Whether the chat template has a system turn of its own.

    False when a system message makes the template raise (Gemma-2), renders exactly as the same
    text put before the question in the user turn (Gemma-3, Mistral fold it there), or is dropped.
    """
    _require_template(tokenizer)
    question, instruction = "Q?", "S."
    try:
        as_system = tokenizer.apply_chat_template(build_messages(question, instruction, "system"), tokenize=False,
                                                  add_generation_prompt=True)
    except Exception:  # jinja's raise_exception: "System role not supported"
        return False
    as_user = tokenizer.apply_chat_template(build_messages(question, instruction, "user"), tokenize=False,
                                            add_generation_prompt=True)
    bare = tokenizer.apply_chat_template(build_messages(question), tokenize=False, add_generation_prompt=True)
    return as_system not in (as_user, bare)  # folded into the user turn, or dropped


def resolve_placement(tokenizer: Any, placement: str = "auto", *, announce: bool = False) -> str:
    """The instruction placement to use with this tokenizer: ``"system"`` or ``"user"``.

    ``"auto"`` is the system turn where the template has one, else the user turn (said in the log
    when ``announce``). An explicit ``"system"`` on a template without a system role is an error.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown instruction placement {placement!r}; expected one of {PLACEMENTS}")
    if placement == "user":
        return "user"
    system = has_system_role(tokenizer)
    if placement == "system" and not system:
        raise ValueError(
            f"the chat template of {_tokenizer_name(tokenizer)!r} has no system role (it rejects a system message, "
            "folds it into the user turn or drops it), so the instruction cannot go into a system message; use "
            "placement='user' (or 'auto', which chooses the user turn on such templates)"
        )
    if not system and announce:
        log.info("the chat template of %r has no system role: the instruction goes into the user turn",
                 _tokenizer_name(tokenizer))
    return "system" if system else "user"


def base_prompt_text(tokenizer: Any, base_system: str | None = None) -> str:
    """The base prompt ``x`` as the chat template renders it, with ``{question}`` for the question:
    what the triplets' metadata records, so that it is never a hidden convention.

    Raises:
        ValueError: ``base_system`` is given but the template drops it (it renders the same as no
            system message), so the choice cannot be honoured.
    """
    def render(system):
        return tokenizer.apply_chat_template(build_messages("{question}", None, "system", system), tokenize=False,
                                             add_generation_prompt=True)

    text = render(base_system)
    if base_system is not None and text == render(None):
        raise ValueError(f"the chat template ignores a system message of {base_system!r}: it renders x exactly as with "
                         "no system message; use base_system=None")
    return text


def _require_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"the tokenizer of {_tokenizer_name(tokenizer)!r} has no chat template; the workbench needs one to build "
            "x and x'. Attach one when loading: load_model(name, chat_template=...) with one of "
            f"{sorted(CHAT_TEMPLATES)} (e.g. 'gemma3' for a Gemma-3 GGUF), a Jinja template string or a file "
            "holding one (or set tokenizer.chat_template yourself)"
        )


def _template_ids(tokenizer: Any, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    _require_template(tokenizer)
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=False)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def prompt_ids(
    tokenizer: Any, question: str, instruction: str | None = None, placement: Placement = "auto",
    base_system: str | None = None,
) -> tuple[list[int], int]:
    """Token ids of a prompt ending with the assistant header, and the header's length
    (``placement``: see :func:`resolve_placement`; ``base_system``: see :func:`build_messages`).

    Returns:
        (ids, header_len): ``ids[-header_len:]`` are the assistant header tokens, the first
        positions of the steered span.
    """
    _require_template(tokenizer)
    if instruction is not None:
        placement = resolve_placement(tokenizer, placement)
    if base_system is not None and not has_system_role(tokenizer):
        raise ValueError(f"the chat template of {_tokenizer_name(tokenizer)!r} has no system role, so it cannot take "
                         f"the base system prompt {base_system!r}; use base_system=None")
    messages = build_messages(question, instruction, placement, base_system)
    with_header = _template_ids(tokenizer, messages, add_generation_prompt=True)
    without = _template_ids(tokenizer, messages, add_generation_prompt=False)
    return with_header, _header_len(tokenizer, messages, with_header, without)


def _header_len(tokenizer: Any, messages: list[dict], with_header: list[int], without: list[int]) -> int:
    """How many of the prompt's last tokens open the assistant turn (see the module docstring)."""
    common = 0
    for a, b in zip(with_header, without):
        if a != b:
            break
        common += 1
    if common < len(with_header) and common > 0:  # what the generation prompt adds (it may replace a closing eos)
        return len(with_header) - common
    if with_header == without:  # no generation prompt: the tokens that close the user turn
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        content = messages[-1]["content"].strip()
        at = text.rfind(content)
        tail = text[at + len(content):] if at >= 0 else ""
        tail_ids = [int(i) for i in tokenizer(tail, add_special_tokens=False)["input_ids"]] if tail.strip() else []
        if tail_ids and with_header[-len(tail_ids):] == tail_ids:
            return len(tail_ids)
    raise ValueError(
        f"cannot locate the assistant header in the chat template of {_tokenizer_name(tokenizer)!r}: the generation "
        "prompt adds no tokens after the conversation and no tokens close the user turn, so there is no assistant "
        "turn to steer (the template must mark where the answer starts)"
    )


_ANSWER, _NEXT = "WORKBENCH-ANSWER-7f3a", "WORKBENCH-NEXT-9c1e"


def end_of_turn_ids(tokenizer: Any, generation_config: Any = None) -> set[int]:
    """Token ids that end an assistant turn, read from the model itself, not from a shared list:

    - the tokenizer's eos and the generation config's ``eos_token_id`` (an int or a list: Llama-3
      and Gemma list several);
    - the special tokens the chat template writes between an answer and the next question: its
      end-of-turn token (ChatML ``<|im_end|>``, Gemma ``<end_of_turn>``, Llama-3 ``<|eot_id|>``,
      Phi-3 ``<|end|>``, Mistral's eos) and the tokens that open the next turn, which a model that
      follows the format poorly (a base model) writes instead (Gemma ``<start_of_turn>``).

    So a token that is special in one family and ordinary text in another is a stop only where the
    model says so: ``</s>`` ends a Mistral turn, but in Gemma-3 it is id 212, the HTML strikethrough
    close, and generation runs on through it.
    """
    ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
    configured = getattr(generation_config, "eos_token_id", None)
    if configured is not None:
        ids |= {int(i) for i in (configured if isinstance(configured, (list, tuple)) else [configured])}
    return ids | turn_boundary_ids(tokenizer)


def turn_boundary_ids(tokenizer: Any) -> set[int]:
    """The special token ids the chat template writes after an assistant answer, up to the next
    user message (empty without a template, or for one that writes no special tokens there)."""
    if not getattr(tokenizer, "chat_template", None):
        return set()
    turns = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": _ANSWER},
             {"role": "user", "content": _NEXT}]
    text = None
    for messages in (turns, turns[:2]):
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False)
            break
        except Exception:  # a template that takes no closing user turn, or raises on this conversation
            continue
    if not text or _ANSWER not in text:
        return set()
    after = text[text.index(_ANSWER) + len(_ANSWER):]
    between = after[: after.index(_NEXT)] if _NEXT in after else after
    special = {int(i) for i in tokenizer.all_special_ids}
    special |= {int(i) for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    return {int(i) for i in tokenizer(between, add_special_tokens=False)["input_ids"] if int(i) in special}


def encode_response(tokenizer: Any, response: str) -> list[int]:
    """Token ids of a response, tokenized once, with no special tokens added."""
    _require_text(response, "response")
    return [int(i) for i in tokenizer(response, add_special_tokens=False)["input_ids"]]


@dataclass(frozen=True)
class AlignedPair:
    """The base and prompt-steered sequences of one triplet, sharing the steered span's ids.

    ``base_ids = ids(x) + ids(y')`` and ``steered_ids = ids(x') + ids(y')``; the steered span
    (assistant header + response) starts at ``base_start`` / ``steered_start`` and has
    ``span_len`` tokens in both.
    """

    base_ids: tuple[int, ...]
    steered_ids: tuple[int, ...]
    base_start: int
    steered_start: int
    header_len: int

    @property
    def span_len(self) -> int:
        return len(self.base_ids) - self.base_start

    @property
    def span_ids(self) -> tuple[int, ...]:
        return self.base_ids[self.base_start :]

    def __post_init__(self) -> None:
        check_alignment(self)


def check_alignment(pair: AlignedPair) -> None:
    """Fail loudly unless both sequences carry exactly the same steered-span ids."""
    base_span = pair.base_ids[pair.base_start :]
    steered_span = pair.steered_ids[pair.steered_start :]
    if base_span != steered_span:
        first = next((i for i, (a, b) in enumerate(zip(base_span, steered_span)) if a != b), min(len(base_span), len(steered_span)))
        raise ValueError(
            f"misaligned tokens: the steered spans differ at span position {first} "
            f"(base has {len(base_span)} tokens, steered {len(steered_span)}); "
            "the response must be tokenized once and appended to both prompts"
        )
    if len(base_span) <= pair.header_len:
        raise ValueError("empty response: the steered span holds only the assistant header")


def align(
    tokenizer: Any,
    question: str,
    instruction: str,
    response_ids: Sequence[int],
    placement: Placement = "auto",
    max_len: int | None = None,
    base_system: str | None = None,
) -> AlignedPair:
    """Build the aligned base/steered pair of a triplet from the response's token ids.

    Args:
        max_len: the model's context length; a pair that would not fit raises ValueError.
        base_system: the base system prompt (see :func:`build_messages`).
    """
    response_ids = [int(i) for i in response_ids]
    if not response_ids:
        raise ValueError(f"empty response for question {question!r}")
    base_prompt, header_len = prompt_ids(tokenizer, question, None, placement, base_system)
    steered_prompt, steered_header_len = prompt_ids(tokenizer, question, instruction, placement, base_system)
    if base_prompt[-header_len:] != steered_prompt[-steered_header_len:]:
        raise ValueError("misaligned tokens: the assistant headers of x and x' differ")
    base_ids = tuple(base_prompt + response_ids)
    steered_ids = tuple(steered_prompt + response_ids)
    if max_len is not None and max(len(base_ids), len(steered_ids)) > max_len:
        raise ValueError(
            f"the response does not fit the model's context: {max(len(base_ids), len(steered_ids))} "
            f"tokens with the prompt, context length {max_len}"
        )
    return AlignedPair(
        base_ids=base_ids,
        steered_ids=steered_ids,
        base_start=len(base_prompt) - header_len,
        steered_start=len(steered_prompt) - header_len,
        header_len=header_len,
    )
