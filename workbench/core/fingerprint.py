"""One way to hash what a stored result depends on, for every cache key and seed in the workbench.

A fingerprint is the SHA-256 of a canonical JSON encoding of its parts: dict keys sorted, tuples
as lists, dataclasses as their fields, tensors and arrays by dtype, shape and raw bytes. Two calls
give the same fingerprint exactly when their parts are equal, whatever the dict order.

Behaviour is fingerprinted too, so that a cache keyed on a judge sees a changed scorer:

- an object with a ``fingerprint_identity()`` method stands for what that method returns (a loaded
  model: its id; an LLM judge: its endpoint, model and prompt);
- a function by its qualified name, its source where Python can find it (a module, a notebook
  cell; not for a lambda, whose source is the whole line it sits on) and its bytecode and constants, its default arguments, the values its closure holds, and
  the simple values and functions it reads from its module's globals; a ``version`` attribute on
  the function (``fn.version = 2``) is part of it, for a change none of that shows;
- ``functools.partial`` by its function and arguments; a bound method by its function and object.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import types
from pathlib import PurePath
from typing import Any

import numpy as np
import torch


#: How deep a function's globals are followed (a scorer calling a helper calling a helper).
_GLOBALS_DEPTH = 3
_PLAIN = (str, int, float, bool)


def _canonical(value: Any, digest, depth: int = 0) -> Any:
    """A JSON-able stand-in for ``value``; tensor and array bytes go straight into ``digest``."""
    kind = type(value)
    if value is None or kind in _PLAIN:  # the common case first: long lists of token ids
        return value
    if kind is list or kind is tuple:
        return [v if v is None or type(v) in _PLAIN else _canonical(v, digest, depth) for v in value]
    identity = getattr(value, "fingerprint_identity", None)
    if callable(identity) and not isinstance(value, type):
        return {"identity": type(value).__qualname__, "of": _canonical(identity(), digest, depth)}
    if isinstance(value, (types.FunctionType, types.MethodType, functools.partial)) or \
            isinstance(value, (types.BuiltinFunctionType, types.CodeType)):
        return _callable(value, digest, depth)
    if isinstance(value, torch.Tensor):
        array = value.detach().cpu().contiguous()
        digest.update(array.view(torch.uint8).numpy().tobytes() if array.numel() else b"")
        return {"tensor": str(array.dtype), "shape": list(array.shape)}
    if isinstance(value, np.ndarray):
        digest.update(np.ascontiguousarray(value).tobytes())
        return {"array": str(value.dtype), "shape": list(value.shape)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name), digest, depth) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _canonical(v, digest, depth) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, digest, depth) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_canonical(v, digest, depth) for v in value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes):
        return {"bytes": hashlib.sha256(value).hexdigest()}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot fingerprint a {type(value).__name__}: give its parameters instead")


def _or_type(value: Any, digest, depth: int) -> Any:
    """``value``'s canonical form, or its type's name where it has none (a closure over a socket)."""
    try:
        return _canonical(value, digest, depth)
    except (TypeError, RecursionError):
        return {"unfingerprintable": f"{type(value).__module__}.{type(value).__qualname__}"}


def _code(code: types.CodeType, digest, depth: int) -> dict:
    return {"bytecode": hashlib.sha256(code.co_code).hexdigest(), "names": list(code.co_names),
            "consts": [_code(c, digest, depth) if isinstance(c, types.CodeType) else _or_type(c, digest, depth)
                       for c in code.co_consts]}


def _callable(fn: Any, digest, depth: int) -> Any:
    """What a function's results depend on that Python can see (see the module docstring)."""
    if isinstance(fn, types.CodeType):
        return _code(fn, digest, depth)
    if isinstance(fn, functools.partial):
        return {"partial": _callable(fn.func, digest, depth), "args": [_or_type(a, digest, depth) for a in fn.args],
                "keywords": {k: _or_type(v, digest, depth) for k, v in sorted(fn.keywords.items())}}
    if isinstance(fn, types.MethodType):
        return {"method": _callable(fn.__func__, digest, depth), "self": _or_type(fn.__self__, digest, depth)}
    if isinstance(fn, types.BuiltinFunctionType):
        return {"builtin": f"{getattr(fn, '__module__', None)}.{fn.__qualname__}"}
    source = None
    if fn.__name__ != "<lambda>":  # a lambda's source is its whole line: its code says what it does
        try:
            source = inspect.getsource(fn)
        except (OSError, TypeError):
            pass
    out = {"function": f"{fn.__module__}.{fn.__qualname__}", "source": source, "code": _code(fn.__code__, digest, depth),
           "defaults": _or_type(fn.__defaults__, digest, depth),
           "kwdefaults": _or_type(fn.__kwdefaults__, digest, depth),
           "closure": [_or_type(cell.cell_contents, digest, depth) if _cell_filled(cell) else None
                       for cell in fn.__closure__ or ()],
           "version": _or_type(getattr(fn, "version", None), digest, depth)}
    if depth < _GLOBALS_DEPTH:
        out["globals"] = {name: _global(fn.__globals__[name], digest, depth + 1)
                          for name in sorted(set(_all_names(fn.__code__))) if name in fn.__globals__}
    return out


def _all_names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += _all_names(const)
    return names


def _global(value: Any, digest, depth: int) -> Any:
    """A global a function reads: functions and plain values count, modules and classes by name."""
    if isinstance(value, types.FunctionType):
        return _callable(value, digest, depth)
    if value is None or isinstance(value, (str, int, float, bool, tuple, frozenset)):
        return _or_type(value, digest, depth)
    return {"global": f"{type(value).__module__}.{type(value).__qualname__}"}


def _cell_filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # a cell not yet assigned
        return False
    return True


def fingerprint(*parts: Any, length: int = 16) -> str:
    """Hex digest (``length`` characters, at most 64) of ``parts``.

    Example:
        >>> fingerprint({"b": 1, "a": 2}) == fingerprint({"a": 2, "b": 1})
        True
        >>> len(fingerprint("x", [1, 2], length=20))
        20
    """
    if not 1 <= length <= 64:
        raise ValueError(f"length must be within 1..64, got {length}")
    digest = hashlib.sha256()
    body = json.dumps(_canonical(list(parts), digest), sort_keys=True, separators=(",", ":"))
    digest.update(body.encode("utf-8"))
    return digest.hexdigest()[:length]


def _class_sources(cls: type) -> list[str | None]:
    """SHA-256 of the source of ``cls`` and of each class it inherits from (``None`` where Python has
    no source: builtins, classes made at run time)."""
    out = []
    for klass in cls.__mro__[:-1]:  # not object
        try:
            out.append(hashlib.sha256(inspect.getsource(klass).encode()).hexdigest())
        except (OSError, TypeError):
            out.append(None)
    return out


def behaviour_fingerprint(obj: Any, length: int = 16) -> str:
    """Fingerprint of what an object does: its class and the source of its class (and of the classes
    it inherits from), and its ``fingerprint_identity()``, its dataclass fields or its function (see
    the module docstring), else its attributes, each attribute without a canonical form standing by
    its type (a lock, a thread pool). An edit to a judge's code therefore changes it too.

    Example:
        >>> behaviour_fingerprint(lambda r: 100.0) != behaviour_fingerprint(lambda r: 0.0)
        True
    """
    kind = [f"{type(obj).__module__}.{type(obj).__qualname__}", _class_sources(type(obj))]
    try:
        return fingerprint(kind, obj, length=length)
    except TypeError:
        digest = hashlib.sha256()  # tensor bytes of the attributes go into this digest, then the body
        state = {k: _or_type(v, digest, 0) for k, v in sorted(vars(obj).items())} if hasattr(obj, "__dict__") else {}
        digest.update(json.dumps([kind, state], sort_keys=True, separators=(",", ":")).encode("utf-8"))
        return digest.hexdigest()[:length]


def sample_seed(seed: int, question: str, instruction: str, sample_index: int) -> int:
    """A per-sample seed that does not depend on batching or on the order of work (32 bits).

    Kept on its own encoding so that stored runs keep their draws.
    """
    key = json.dumps([seed, question, instruction, sample_index]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")
