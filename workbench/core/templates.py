"""Attaching a chat template to a tokenizer that has none (a GGUF of a base model, an old checkpoint).

``load_model(..., chat_template=spec)`` takes one of three things:

- a name from :data:`workbench.core.families.CHAT_TEMPLATES` (``"chatml"``, ``"llama3"``, ``"gemma2"``,
  ``"gemma3"``, ``"mistral"``, ``"phi3"``): the family turn formats the workbench writes;
- a Jinja template string (anything holding ``{{`` or ``{%``);
- the path of a file holding one (``.jinja``, ``.j2``, ``.txt``, ...).

The template is checked before anything runs on it: it must render a user turn and open an
assistant turn (where the steered span starts). It replaces the tokenizer's own template, if any,
and is part of the model's identity (:mod:`workbench.core.identity`): x and x' depend on it.

Example:
    >>> from workbench.core.families import build_family_tokenizer
    >>> tok = build_family_tokenizer("tiny-random-gemma3")
    >>> tok.chat_template = None
    >>> attach_chat_template(tok, "gemma3")
    "the 'gemma3' template"
    >>> tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    '<bos><start_of_turn>user\\nHi<end_of_turn>\\n<start_of_turn>model\\n'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.core.chat import prompt_ids
from workbench.core.families import CHAT_TEMPLATES

__all__ = ["attach_chat_template", "check_chat_template", "resolve_chat_template", "set_chat_template", "template_names"]


def template_names() -> list[str]:
    """The names ``chat_template=`` knows."""
    return sorted(CHAT_TEMPLATES)


def resolve_chat_template(spec: str | Path) -> tuple[str, str]:
    """``(template text, what it is)`` for a name, a Jinja string or a file (see the module docstring).

    Raises:
        ValueError: an unknown name, an empty file or string, or a value of another type.
        FileNotFoundError: a path (it names a ``.jinja`` file or holds a ``/``) where no file is.
    """
    if isinstance(spec, Path) or (isinstance(spec, str) and "{{" not in spec and "{%" not in spec):
        text = str(spec).strip()
        if text in CHAT_TEMPLATES:
            return CHAT_TEMPLATES[text], f"the {text!r} template"
        path = Path(text).expanduser()
        if path.is_file():
            body = path.read_text(encoding="utf-8")
            if not body.strip():
                raise ValueError(f"the chat template file {path} is empty")
            return body, f"the template in {path}"
        if isinstance(spec, Path) or "/" in text or path.suffix in (".jinja", ".j2", ".txt", ".tmpl"):
            raise FileNotFoundError(f"no chat template file at {path}")
        raise ValueError(f"unknown chat template {text!r}: give one of {template_names()}, a Jinja template string, "
                         "or the path of a file holding one")
    if not isinstance(spec, str):
        raise ValueError(f"chat_template must be a template name, a Jinja string or a file path, got {type(spec).__name__}")
    return spec, "the given Jinja template"


def check_chat_template(tokenizer: Any, label: str = "the chat template") -> None:
    """Fail, naming ``label``, unless the tokenizer's template renders a user turn and opens an
    assistant turn after it."""
    try:
        prompt_ids(tokenizer, "Why is the sky blue?")
    except ValueError as err:
        if "assistant header" in str(err):
            raise ValueError(f"{label} renders no assistant turn: the generation prompt adds no tokens after the user's "
                             "message and no tokens close it, so there is nowhere to steer (the template must mark where "
                             "the answer starts, e.g. '<start_of_turn>model\\n')") from None
        raise
    except Exception as err:  # jinja2's TemplateSyntaxError, UndefinedError, raise_exception(...)
        raise ValueError(f"{label} cannot render a one-question conversation: {type(err).__name__}: {err}") from None


def attach_chat_template(tokenizer: Any, spec: str | Path) -> str:
    """Set the tokenizer's chat template from ``spec`` and check it; returns what it was (for messages).
    On a template that fails the check the tokenizer keeps the template it had."""
    return set_chat_template(tokenizer, *resolve_chat_template(spec))


def set_chat_template(tokenizer: Any, text: str, label: str) -> str:
    """:func:`attach_chat_template` for a template already resolved (``text``, ``label``)."""
    before = tokenizer.chat_template
    tokenizer.chat_template = text
    try:
        check_chat_template(tokenizer, label)
    except BaseException:
        tokenizer.chat_template = before
        raise
    return label
