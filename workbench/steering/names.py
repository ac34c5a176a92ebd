"""One grammar for method names, parsed and printed in one place.

A name is ``[S-|A-]`` + ``Const-DiM | Const-MSE | PSR | PSR-LL`` + optional `` r<rank>`` +
optional `` (joint)``: ``"Const-DiM"``, ``"A-Const-MSE"``, ``"S-PSR"``, ``"A-PSR r4"``,
``"A-PSR (joint)"``, ``"S-PSR-LL"``. ``S-`` steers one layer (fitted on the accumulated delta),
``A-`` every layer; constant vectors without a prefix are single-layer. PSR-LL is always trained
through the model and does not say ``(joint)``. The experiment's ``methods``, the training panel,
the figures' legends, the tables and a steerer's own ``name`` all use it.

Weight-space adapters (:mod:`workbench.steering.weights`) share the grammar: ``"LoRA r<rank>"``
(the rank is required, e.g. ``"LoRA r8"``) and ``"Fine-tune"``; both change weights in every
block, so their scope is ``"all"`` and their training ``"joint"`` (through the model).

Example:
    >>> spec = parse_method("A-PSR r4")
    >>> spec.method, spec.scope, spec.rank, spec.training
    ('psr-mse', 'all', 4, 'layerwise')
    >>> method_name("psr-ll", "single", training="joint")
    'S-PSR-LL'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The trainer's method ids and how a name writes each.
KIND_OF_METHOD = {"const-dim": "Const-DiM", "const-mse": "Const-MSE", "psr-mse": "PSR", "psr-ll": "PSR-LL"}
METHOD_OF_KIND = {kind: method for method, kind in KIND_OF_METHOD.items()}
#: Weight-space methods (not steerers: :mod:`workbench.steering.weights`) and how a name writes each.
WEIGHT_METHODS = {"lora": "LoRA", "finetune": "Fine-tune"}
_LORA_RE = re.compile(r"^LoRA(?: r(\d+))?$", re.IGNORECASE)
_FINETUNE_RE = re.compile(r"^fine-?tune$", re.IGNORECASE)
SCOPES = ("single", "all")
TRAININGS = ("layerwise", "joint")
_NAME_RE = re.compile(r"^(?:(S|A)-)?(Const-DiM|Const-MSE|PSR|PSR-LL)(?: r(\d+))?(?: \((joint)\))?$")
EXAMPLES = ("Const-DiM", "Const-MSE", "S-PSR", "A-PSR", "A-PSR r4", "A-PSR (joint)", "S-PSR-LL", "A-Const-DiM",
            "LoRA r8", "Fine-tune")


@dataclass(frozen=True)
class MethodSpec:
    """What a method name stands for, in the trainer's terms (:func:`workbench.steering.train_steerer`)."""

    name: str
    method: str  # const-dim, const-mse, psr-mse, psr-ll; or lora, finetune (weight space)
    scope: str  # single, all
    rank: int = 1
    training: str = "layerwise"

    @property
    def weight_space(self) -> bool:
        """Whether the method changes the model's weights (LoRA, fine-tune) instead of steering."""
        return self.method in WEIGHT_METHODS


def parse_method(name: str) -> MethodSpec:
    """Parse a method name (see the module docstring); raises ValueError naming the bad name."""
    if isinstance(name, str) and _LORA_RE.match(name.strip()):
        rank = _LORA_RE.match(name.strip()).group(1)
        if rank is None:
            raise ValueError(f"method {name!r}: say the LoRA's rank, e.g. 'LoRA r8'")
        if int(rank) < 1:
            raise ValueError(f"method {name!r}: a LoRA's rank must be >= 1")
        return MethodSpec(name.strip(), "lora", "all", int(rank), "joint")
    if isinstance(name, str) and _FINETUNE_RE.match(name.strip()):
        return MethodSpec(name.strip(), "finetune", "all", 1, "joint")
    match = _NAME_RE.match(name.strip()) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"unknown method name {name!r}; examples: " + ", ".join(repr(e) for e in EXAMPLES))
    scope_letter, kind, rank, joint = match.groups()
    if kind.startswith("PSR") and scope_letter is None:
        raise ValueError(f"method {name!r}: say where PSR acts, 'S-{kind}' (one layer) or 'A-{kind}' (every layer)")
    method = METHOD_OF_KIND[kind]
    rank = int(rank) if rank else 1
    if rank < 1:
        raise ValueError(f"method {name!r}: rank must be >= 1")
    if method.startswith("const") and rank != 1:
        raise ValueError(f"method {name!r}: a constant vector has rank 1")
    if method == "const-dim" and joint:
        raise ValueError(f"method {name!r}: Const-DiM is a closed-form mean; it has no joint training")
    training = "joint" if joint or method == "psr-ll" else "layerwise"
    return MethodSpec(name.strip(), method, "all" if scope_letter == "A" else "single", rank, training)


def method_name(method: str, scope: str, rank: int = 1, training: str = "layerwise") -> str:
    """The name of a method in the trainer's terms; :func:`parse_method` reads it back.

    ``("psr-mse", "single")`` -> ``"S-PSR"``; ``("psr-mse", "all", 2)`` -> ``"A-PSR r2"``;
    ``("const-mse", "all")`` -> ``"A-Const-MSE"``; ``(..., training="joint")`` adds ``" (joint)"``.

    Raises:
        ValueError: for a combination no trainer accepts (Const-DiM joint, PSR-LL layerwise, ...).

    Weight space: ``("lora", "all", 8)`` -> ``"LoRA r8"``; ``("finetune", "all")`` -> ``"Fine-tune"``.
    """
    if method in WEIGHT_METHODS:
        if scope != "all":
            raise ValueError(f"{WEIGHT_METHODS[method]} changes weights in every block; its scope is 'all', not {scope!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be an integer >= 1, got {rank!r}")
        return f"LoRA r{rank}" if method == "lora" else "Fine-tune"
    if method not in KIND_OF_METHOD:
        raise ValueError(f"unknown steering method {method!r}; expected one of {list(KIND_OF_METHOD)}")
    if scope not in SCOPES:
        raise ValueError(f"scope must be 'single' (one layer) or 'all' (every layer), got {scope!r}")
    if training not in TRAININGS:
        raise ValueError(f"training must be one of {TRAININGS}, got {training!r}")
    prefix = "A-" if scope == "all" else ("" if method.startswith("const") else "S-")
    name = prefix + KIND_OF_METHOD[method] + (f" r{rank}" if rank != 1 else "")
    if training == "joint" and method != "psr-ll":
        name += " (joint)"
    spec = parse_method(name)  # raises for Const-DiM (joint), constant rank > 1, ...
    if spec.training != training:
        raise ValueError(f"{name} is trained {spec.training}, not {training!r}")
    return name

