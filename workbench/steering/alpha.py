"""Steering strength: the one check every entry point applies to a user's ``alpha``, and how a
layer range is written."""

from __future__ import annotations

import torch

from workbench.core.checks import check_number

MAX_ABS_ALPHA = 100.0


def check_alpha(alpha: float) -> float:
    """Validate a steering strength: any finite number with ``|alpha| <= 100``, as a float.

    Numbers are Python and numpy scalars (``np.float32(1.5)`` too) and one-element tensors.
    Negative values are allowed on purpose: they subtract the intervention (steer away from the
    attribute). NaN, infinities, non-numbers and magnitudes above 100 (surely a units mistake:
    trained steerers correspond to alpha in [0, 1]) are refused.
    """
    if isinstance(alpha, torch.Tensor) and alpha.numel() == 1:
        alpha = alpha.item()
    value = float(check_number("alpha", alpha))
    if abs(value) > MAX_ABS_ALPHA:
        raise ValueError(f"alpha {value} is outside the sane range [-{MAX_ABS_ALPHA:g}, {MAX_ABS_ALPHA:g}]")
    return value


def layers_label(layers) -> str:
    """Where a steerer acts, short: ``"15"``, ``"0-29"`` (a run of three or more), or ``"3,7"``."""
    layers = [int(l) for l in layers]
    if len(layers) > 2 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return ",".join(str(l) for l in layers)
