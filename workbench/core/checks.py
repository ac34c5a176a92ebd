"""Checks of user input at the door: each refusal names the argument and the bad value.

One rule per kind of value, used by every config and entry point, so that a count, a strength or
a list of layers is refused in the same words wherever it is given:

- :func:`check_int`: an integer: a Python int or a numpy integer; not a bool, and not a float
  even when it is integral (``2.0`` given for a count is a mistake worth refusing);
- :func:`check_number`: an int, a float or a numpy scalar of either; NaN always refused,
  infinities unless ``finite=False``;
- :func:`check_str_sequence`: a list (or tuple, or any iterable) of strings, never one string,
  whose characters would otherwise be taken one by one;
- :func:`check_layers`: layer indices of a model (``None``: every layer; one int: that layer);
- :func:`check_instance`: an object of the expected class (a config passed as a dict, say);
- :func:`check_field`: one field of a config dataclass, checked in its ``__post_init__`` and
  stored back as a plain Python value (a numpy integer becomes an int, so the config still
  serialises to JSON).

Wrong types raise ``TypeError``, values out of range ``ValueError``, a layer past the model's
depth ``IndexError``. The checks return the value as a plain ``int`` / ``float`` / ``list``;
a Python int or float comes back unchanged (an int given for a float stays an int, so that cache
keys made from it do not move).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any, Callable

__all__ = ["check_field", "check_instance", "check_int", "check_layers", "check_number", "check_str_sequence",
           "is_int", "is_number"]

_MAX_SHOWN = 80


def _show(value: Any) -> str:
    """``repr(value)``, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _shown_with_type(value: Any) -> str:
    return f"{_show(value)} ({type(value).__name__})"


def _bounds(minimum=None, maximum=None, above=None, below=None) -> str:
    """The range in words: ``" >= 1"``, ``" > 0"``, ``" in (0, 1]"``, or ``""`` for no bounds."""
    low = f"[{minimum:g}" if minimum is not None else f"({above:g}" if above is not None else None
    high = f"{maximum:g}]" if maximum is not None else f"{below:g})" if below is not None else None
    if low is not None and high is not None:
        return f" in {low}, {high}"
    if minimum is not None:
        return f" >= {minimum:g}"
    if above is not None:
        return f" > {above:g}"
    if maximum is not None:
        return f" <= {maximum:g}"
    if below is not None:
        return f" < {below:g}"
    return ""


def _within(value, minimum=None, maximum=None, above=None, below=None) -> bool:
    return ((minimum is None or value >= minimum) and (maximum is None or value <= maximum)
            and (above is None or value > above) and (below is None or value < below))


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer in the sense of :func:`check_int` (a bool is not).

    Example:
        >>> import numpy as np
        >>> is_int(3), is_int(np.int64(3)), is_int(True), is_int(3.0)
        (True, True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a number in the sense of :func:`check_number` (numpy scalars are; a bool is not).

    Example:
        >>> import numpy as np
        >>> is_number(0.5), is_number(np.float32(0.5)), is_number(np.int8(2)), is_number(True), is_number("0.5")
        (True, True, True, False, False)
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None,
              optional: bool = False) -> int | None:
    """``value`` as a Python int, or a ``TypeError`` / ``ValueError`` naming ``name`` and the value.

    ``optional``: ``None`` is allowed (and returned).

    Example:
        >>> import numpy as np
        >>> check_int("batch_size", np.int64(8), minimum=1)
        8
        >>> check_int("TripletConfig: batch_size", -1, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: TripletConfig: batch_size must be an integer >= 1, got -1
        >>> check_int("n_questions", 2.5, minimum=1, optional=True)
        Traceback (most recent call last):
        ...
        TypeError: n_questions must be an integer >= 1 or None, got 2.5 (float)
    """
    if value is None and optional:
        return None
    wanted = f"an integer{_bounds(minimum, maximum)}{' or None' if optional else ''}"
    if not is_int(value):
        raise TypeError(f"{name} must be {wanted}, got {_shown_with_type(value)}")
    if not _within(value, minimum, maximum):
        raise ValueError(f"{name} must be {wanted}, got {_show(value)}")
    return int(value)


def check_number(name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                 above: float | None = None, below: float | None = None, finite: bool = True,
                 optional: bool = False) -> int | float | None:
    """``value`` as a Python int or float, or a ``TypeError`` / ``ValueError`` naming ``name`` and the value.

    ``minimum`` / ``maximum`` are inclusive bounds, ``above`` / ``below`` exclusive ones. NaN is
    always refused; infinities too unless ``finite=False``. An integer comes back as an int, any
    other number (a numpy float32, say) as a float.

    Example:
        >>> import numpy as np
        >>> check_number("alpha", np.float32(1.5))
        1.5
        >>> check_number("SamplingConfig: temperature", float("nan"), minimum=0)
        Traceback (most recent call last):
        ...
        ValueError: SamplingConfig: temperature must be finite, got nan
        >>> check_number("top_p", 1.5, above=0, maximum=1)
        Traceback (most recent call last):
        ...
        ValueError: top_p must be a number in (0, 1], got 1.5
    """
    if value is None and optional:
        return None
    wanted = f"a number{_bounds(minimum, maximum, above, below)}{' or None' if optional else ''}"
    if not is_number(value):
        raise TypeError(f"{name} must be {wanted}, got {_shown_with_type(value)}")
    number = int(value) if isinstance(value, numbers.Integral) else float(value)
    if math.isnan(number) or (finite and math.isinf(number)):
        raise ValueError(f"{name} must be finite, got {_show(value)}")
    if not _within(number, minimum, maximum, above, below):
        raise ValueError(f"{name} must be {wanted}, got {_show(value)}")
    return number


def check_str_sequence(name: str, value: Any) -> list[str]:
    """``value`` as a list of strings; one string (not in a list) is refused, saying so.

    Example:
        >>> check_str_sequence("questions", ("Why?", "How?"))
        ['Why?', 'How?']
        >>> check_str_sequence("questions", "Why?")
        Traceback (most recent call last):
        ...
        TypeError: questions must be a list of strings, got one string 'Why?': pass a list, e.g. ['Why?']
    """
    if isinstance(value, str):
        raise TypeError(f"{name} must be a list of strings, got one string {_show(value)}: pass a list, "
                        f"e.g. [{_show(value)}]")
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a list of strings, got {_shown_with_type(value)}")
    items = list(value)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] must be a string, got {_shown_with_type(item)}")
    return items


def check_layers(layers: Any, n_layers: int, model_id: str, name: str = "layers") -> list[int]:
    """Layer indices of a model with ``n_layers`` layers, sorted and without repeats.

    ``None`` means every layer and one integer that layer; otherwise a list (or any iterable) of
    integers, numpy integers included. Floats, bools and strings are refused (``int(0.9)`` would
    silently be layer 0), as is an empty list; an index outside ``0..n_layers - 1`` is an
    ``IndexError`` naming it.

    Example:
        >>> import numpy as np
        >>> check_layers([np.int64(2), 0, 2], 3, "tiny")
        [0, 2]
        >>> check_layers([0.9], 3, "tiny")
        Traceback (most recent call last):
        ...
        TypeError: layers[0] must be an integer, got 0.9 (float)
    """
    if layers is None:
        return list(range(n_layers))
    if is_int(layers):
        layers = [layers]
    elif isinstance(layers, (str, bytes, Mapping)) or not isinstance(layers, Iterable):
        raise TypeError(f"{name} must be a list of integers, one integer or None, got {_shown_with_type(layers)}")
    out = sorted({check_int(f"{name}[{i}]", layer) for i, layer in enumerate(layers)})
    if not out:
        raise ValueError(f"{name} is empty; pass None for all layers")
    bad = [layer for layer in out if not 0 <= layer < n_layers]
    if bad:
        raise IndexError(f"layer index {bad[0]} is out of range for {model_id!r}, which has layers 0..{n_layers - 1}")
    return out


def check_instance(name: str, value: Any, kind: type) -> Any:
    """``value`` itself when it is a ``kind``, else a ``TypeError`` naming ``name`` and what came.

    Example:
        >>> check_instance("config", {"n_questions": 3}, tuple)
        Traceback (most recent call last):
        ...
        TypeError: config must be a tuple, got {'n_questions': 3} (dict)
    """
    if not isinstance(value, kind):
        article = "an" if kind.__name__[:1] in "AEIOUaeiou" else "a"
        raise TypeError(f"{name} must be {article} {kind.__name__}, got {_shown_with_type(value)}")
    return value


def check_field(config: Any, field: str, check: Callable[..., Any], **rule: Any) -> None:
    """Check ``config.<field>`` with ``check`` (e.g. :func:`check_int`) under the name
    ``"<Class>: <field>"``, and store the plain value it returns (frozen dataclasses too).

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Sizes:
        ...     batch_size: int = 8
        ...     def __post_init__(self):
        ...         check_field(self, "batch_size", check_int, minimum=1)
        >>> Sizes(0)
        Traceback (most recent call last):
        ...
        ValueError: Sizes: batch_size must be an integer >= 1, got 0
    """
    value = check(f"{type(config).__name__}: {field}", getattr(config, field), **rule)
    object.__setattr__(config, field, value)
