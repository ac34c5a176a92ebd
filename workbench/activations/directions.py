"""Delta_PS along a direction: the mean direction, per-token coefficients, and how much of the
change a few directions hold (DESIGN.md section 3, "Strength along a direction").

The paper writes each token's change as a strength times one direction per layer, ``D[l, t] ~ c_t z``
(its Assumption 3.1), and its PSR learns the strength ``c_t``. The norm ``||D[l, t]||`` cannot say
whether that picture is right: it is large both when a token moves far along ``z`` and when it moves
far in some other direction. This module measures the picture itself, on plain tensors:

- :func:`check_direction`: a direction given by anyone (a user's vector, a steerer's ``z``) made a
  unit vector, refused when it has the wrong length, is zero or holds NaN / inf;
- :func:`mean_direction`: the unit mean of a layer's deltas (estimate it on *training* triplets);
- :func:`coefficients`: ``c_t = <D[l, t], z>`` for a unit ``z`` (measure it on *held-out* triplets,
  so that ``z`` was not fitted to the tokens it is measured on);
- :func:`principal_directions` (the top right singular vectors of the uncentred deltas, the
  directions holding the most of ``sum_t ||D_t||^2``) and :func:`random_directions` (a random
  orthonormal basis, the baseline: ``k`` random directions hold about ``k / d_model`` of it);
- :func:`captured_energy`: per response, how much of ``sum_t ||D_t||^2`` the first ``k`` directions
  of a basis hold, for every ``k`` at once;

and thin readers of a :class:`~workbench.activations.store.DeltaStore`: :func:`response_deltas`,
:func:`mean_directions` and :func:`coefficient_table` (the tidy per-token table the heat maps draw).
Intervals over responses are computed from these in :mod:`workbench.evaluation.assumptions`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from workbench.activations.store import DeltaStore
from workbench.core.checks import check_int

__all__ = ["captured_energy", "check_direction", "coefficient_table", "coefficients", "mean_direction",
           "mean_directions", "principal_directions", "random_directions", "response_deltas"]

COEFFICIENT_COLUMNS = ["sample", "layer", "position", "token_id", "token", "is_header", "norm", "coef", "cos"]


def check_direction(z, d_model: int, name: str = "direction") -> torch.Tensor:
    """``z`` as a float32 unit vector ``[d_model]``, or an error naming it and what is wrong.

    Accepts a tensor, a numpy array or a list of numbers. Refused: another length than
    ``d_model`` (``ValueError`` naming both), the zero vector, NaN or infinite entries.

    Example:
        >>> check_direction([3.0, 0.0, 4.0], 3)
        tensor([0.6000, 0.0000, 0.8000])
        >>> check_direction([1.0, 2.0], 3, name="z")
        Traceback (most recent call last):
        ...
        ValueError: z has shape [2] but a direction here needs one entry per residual dimension, d_model = 3
        >>> check_direction([0.0, 0.0, 0.0], 3, name="z")
        Traceback (most recent call last):
        ...
        ValueError: z is the zero vector: a direction needs a non-zero length
    """
    d_model = check_int("d_model", d_model, minimum=1)
    if isinstance(z, torch.Tensor):
        vector = z.detach().to("cpu", torch.float32)
    else:
        try:
            vector = torch.as_tensor(np.asarray(z, dtype=np.float64), dtype=torch.float32)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a vector of numbers (tensor, array or list), got "
                            f"{type(z).__name__}") from None
    if tuple(vector.shape) != (d_model,):
        raise ValueError(f"{name} has shape {list(vector.shape)} but a direction here needs one entry per residual "
                         f"dimension, d_model = {d_model}")
    bad = ~torch.isfinite(vector)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name} holds {int(bad.sum())} non-finite value(s), the first at index {first} "
                         f"({float(vector[first])})")
    norm = float(vector.double().norm())
    if norm == 0.0:
        raise ValueError(f"{name} is the zero vector: a direction needs a non-zero length")
    return (vector.double() / norm).float()


def _check_deltas(deltas: torch.Tensor, name: str = "deltas") -> torch.Tensor:
    if not isinstance(deltas, torch.Tensor) or deltas.ndim != 2:
        shape = list(deltas.shape) if isinstance(deltas, torch.Tensor) else type(deltas).__name__
        raise ValueError(f"{name} must be a [tokens, d_model] tensor, got {shape}")
    if deltas.shape[0] == 0:
        raise ValueError(f"{name} holds no tokens")
    return deltas.double()


def mean_direction(deltas: torch.Tensor) -> torch.Tensor:
    """The unit vector along the mean of ``deltas [tokens, d_model]``: ``[d_model]`` float32.

    Example:
        >>> mean_direction(torch.tensor([[2.0, 0.0], [4.0, 0.0], [3.0, 0.0]]))
        tensor([1., 0.])
    """
    mean = _check_deltas(deltas).mean(0)
    norm = float(mean.norm())
    if norm == 0.0:
        raise ValueError("the deltas average to the zero vector: they have no mean direction")
    return (mean / norm).float()


def coefficients(deltas: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``c_t = <D_t, z>`` for each token: ``deltas [tokens, d_model]``, ``z [d_model]`` -> ``[tokens]``.

    ``z`` is made a unit vector first (:func:`check_direction`), so ``c_t`` is in the units of the
    residual stream and ``c_t z`` is the part of ``D_t`` along ``z``.

    Example:
        >>> coefficients(torch.tensor([[2.0, 1.0], [-1.0, 5.0]]), torch.tensor([10.0, 0.0]))
        tensor([ 2., -1.])
    """
    deltas = _check_deltas(deltas)
    unit = check_direction(z, deltas.shape[1], name="z").double()
    return (deltas @ unit).float()


def principal_directions(deltas: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """The ``k`` orthonormal directions that hold the most of ``sum_t ||D_t||^2``: ``[k, d_model]``.

    These are the top right singular vectors of the *uncentred* ``deltas [tokens, d_model]`` (the
    eigenvectors of ``sum_t D_t D_t^T``), so a delta that is a constant direction times varying
    strengths gives that direction first. Each is signed so that the deltas' mean projects
    positively on it. ``k`` defaults to (and is at most) ``min(tokens, d_model)``.

    Example:
        >>> strength = torch.tensor([3.0, -1.0, 2.0, 0.5])
        >>> deltas = strength[:, None] * torch.tensor([0.0, 0.6, 0.8])  # one direction, varying strength
        >>> principal_directions(deltas, k=1)[:, 1:]  # signed along the mean
        tensor([[0.6000, 0.8000]])
    """
    deltas = _check_deltas(deltas)
    most = min(deltas.shape)
    k = most if k is None else check_int("k", k, minimum=1, maximum=most)
    _, _, vh = torch.linalg.svd(deltas, full_matrices=False)
    basis = vh[:k]
    sign = torch.sign(basis @ deltas.mean(0))
    sign[sign == 0] = 1.0
    return (basis * sign[:, None]).float()


def random_directions(d_model: int, k: int, seed: int = 0) -> torch.Tensor:
    """``k`` random orthonormal directions in ``d_model`` dimensions (uniform over subspaces): ``[k, d_model]``.

    Example:
        >>> q = random_directions(8, 3, seed=1)
        >>> torch.allclose(q @ q.T, torch.eye(3), atol=1e-6)
        True
    """
    d_model = check_int("d_model", d_model, minimum=1)
    k = check_int("k", k, minimum=1, maximum=d_model)
    g = torch.Generator().manual_seed(check_int("seed", seed))
    q, r = torch.linalg.qr(torch.randn(d_model, k, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))[None, :]  # the sign fix that makes QR's Q uniform (Haar)
    return q.T.float()


def captured_energy(deltas: torch.Tensor, basis: torch.Tensor, sample: torch.Tensor
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per response, the squared length of its deltas that the first ``k`` directions of ``basis`` hold.

    Args:
        deltas: ``[tokens, d_model]``.
        basis: ``[r, d_model]`` orthonormal rows (e.g. :func:`principal_directions`; one row for a
            single direction ``z``).
        sample: ``[tokens]``, each token's response id.
    Returns:
        ``(captured [responses, r], total [responses], ids [responses])``: ``captured[i, k-1]`` is
        ``sum_t sum_{j<k} <D_t, b_j>^2`` over response ``ids[i]``'s tokens (cumulative over ``k``),
        ``total[i]`` is ``sum_t ||D_t||^2``; responses in increasing id.

    Example:
        >>> d = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
        >>> captured, total, ids = captured_energy(d, torch.eye(2), torch.tensor([0, 0, 1]))
        >>> captured.tolist(), total.tolist(), ids.tolist()
        ([[10.0, 26.0], [0.0, 4.0]], [26.0, 4.0], [0, 1])
    """
    deltas = _check_deltas(deltas)
    if not isinstance(basis, torch.Tensor) or basis.ndim != 2 or basis.shape[1] != deltas.shape[1]:
        shape = list(basis.shape) if isinstance(basis, torch.Tensor) else type(basis).__name__
        raise ValueError(f"basis must be [r, d_model = {deltas.shape[1]}], got {shape}")
    sample = torch.as_tensor(sample)
    if tuple(sample.shape) != (deltas.shape[0],):
        raise ValueError(f"sample must give one response id per token ({deltas.shape[0]}), got shape {list(sample.shape)}")
    ids, inverse = torch.unique(sample, return_inverse=True)
    projected = (deltas @ basis.double().T).pow(2).cumsum(1)  # [tokens, r]
    captured = torch.zeros(len(ids), basis.shape[0], dtype=torch.float64).index_add_(0, inverse, projected)
    total = torch.zeros(len(ids), dtype=torch.float64).index_add_(0, inverse, deltas.pow(2).sum(1))
    return captured.numpy(), total.numpy(), ids.numpy()


# --------------------------------------------------------------------------------------------
# store readers
# --------------------------------------------------------------------------------------------


def response_deltas(store: DeltaStore, layer: int, kind: str = "acc", samples: Sequence[int] | None = None,
                    header: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's deltas of a store, response tokens only (``header=True``: the assistant header too).

    Returns:
        ``(deltas [tokens, d_model], sample [tokens])`` in pair order (sample by sample, by position).
        A layer the store lacks raises ``IndexError`` naming it and the store's layers.
    """
    if kind not in ("acc", "loc"):
        raise ValueError(f"kind must be 'acc' or 'loc', got {kind!r}")
    layer = check_int("layer", layer)
    deltas = store.get(kind, layer, samples)
    tokens = store.tokens(samples)
    keep = torch.ones(len(deltas), dtype=torch.bool) if header else ~tokens["is_header"]
    if not bool(keep.any()):
        raise ValueError(f"{store.directory}: no response tokens in samples {samples if samples is not None else 'all'}")
    return deltas[keep], tokens["sample"][keep]


def mean_directions(store: DeltaStore, layers: Sequence[int] | None = None, kind: str = "acc",
                    samples: Sequence[int] | None = None) -> dict[int, torch.Tensor]:
    """``{layer: unit mean direction [d_model]}`` of a store's response-token deltas (estimate it on
    the training store; ``samples``: only those triplets)."""
    layers = store.layers if layers is None else [check_int(f"layers[{i}]", l) for i, l in enumerate(layers)]
    return {int(l): mean_direction(response_deltas(store, l, kind, samples)[0]) for l in layers}


def coefficient_table(store: DeltaStore, directions: Mapping[int, torch.Tensor], kind: str = "acc",
                      samples: Sequence[int] | None = None, tokenizer=None) -> pd.DataFrame:
    """Per token and layer, the coefficient along each layer's direction, as a tidy table.

    Args:
        store: the deltas to measure (held-out triplets, for a direction fitted on training ones).
        directions: ``{layer: z [d_model]}`` (any non-zero vector; made a unit vector), e.g. from
            :func:`mean_directions` on the training store or a steerer's own ``z``.
        kind: ``"acc"`` or ``"loc"`` deltas.
        tokenizer: decodes a ``token`` column when given.
    Returns:
        Columns ``sample, layer, position, token_id, token, is_header, norm, coef, cos``: ``norm`` is
        ``||D_t||``, ``coef`` is ``c_t = <D_t, z>``, ``cos`` is ``c_t / ||D_t||`` (1: the token moved
        exactly along ``z``). Header tokens are kept (flagged), as in
        :func:`~workbench.activations.deltas.token_magnitudes`.
    """
    if kind not in ("acc", "loc"):
        raise ValueError(f"kind must be 'acc' or 'loc', got {kind!r}")
    if not isinstance(directions, Mapping) or not directions:
        raise ValueError("directions must be a non-empty {layer: vector} mapping")
    tokens = store.tokens(samples)
    frames = []
    for layer, z in sorted(directions.items()):
        layer = check_int("layer", layer)
        deltas = store.get(kind, layer, samples).double()
        unit = check_direction(z, store.d_model, name=f"directions[{layer}]").double()
        coef = deltas @ unit
        norm = deltas.norm(dim=1)
        frames.append(pd.DataFrame({
            "sample": tokens["sample"].numpy(), "layer": layer, "position": tokens["position"].numpy(),
            "token_id": tokens["token_ids"].numpy(), "token": "", "is_header": tokens["is_header"].numpy(),
            "norm": norm.numpy(), "coef": coef.numpy(), "cos": (coef / norm.clamp_min(1e-12)).numpy()}))
    table = pd.concat(frames, ignore_index=True)
    if tokenizer is not None:
        vocab = {i: tokenizer.decode([i]) for i in set(table["token_id"].tolist())}
        table["token"] = table["token_id"].map(vocab)
    return table.sort_values(["sample", "layer", "position"], ignore_index=True)[COEFFICIENT_COLUMNS]
