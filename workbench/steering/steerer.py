"""The steerer classes: one intervention form each, maths on plain tensors (DESIGN.md section 4).

A steerer acts on the residual stream ``a`` (``blocks.{l}.hook_resid_post``) at each of its layers:

- :class:`ConstSteerer` (Const-DiM, Const-MSE): ``a + alpha * z_l``;
- :class:`PSRSteerer` (PSR-MSE, PSR-LL, any rank r):
  ``a + alpha * sum_k ReLU(a . w_lk + b_lk) * z_lk``; rank 1 is plain PSR.

Both share one interface: ``lambdas_from_acts(layer, acts) -> [tokens, rank]`` (the per-token
strength, all ones for a constant vector), ``delta(layer, acts) -> [tokens, d_model]`` (what is
added at ``alpha = 1``), ``steer_acts``, and the model-facing ``apply`` / ``lambdas`` / ``save`` /
``load``, which live in :mod:`workbench.steering.hooks` and :mod:`workbench.steering.io`.

Parameters are stacked over the steerer's layers, in ``info.layers`` order:
``z [n_steered_layers, rank, d_model]``, ``w [n_steered_layers, rank, d_model]``,
``b [n_steered_layers, rank]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

import workbench.steering.hooks as hooks
import workbench.steering.io as io
from workbench.core.intervention import Intervention
from workbench.steering.alpha import check_alpha
from workbench.steering.names import KIND_OF_METHOD, SCOPES, TRAININGS, method_name

METHODS: tuple[str, ...] = tuple(KIND_OF_METHOD)
_FORM = {"const-dim": "const", "const-mse": "const", "psr-mse": "psr", "psr-ll": "psr"}


@dataclass(frozen=True)
class SteererInfo:
    """What a steerer is and where it came from; all of it is saved with the parameters.

    Attributes:
        method: ``"const-dim"``, ``"const-mse"``, ``"psr-mse"`` or ``"psr-ll"``.
        scope: ``"single"`` (S-, one layer, fitted on accumulated deltas) or ``"all"`` (A-).
        training: ``"layerwise"`` (fitted on stored deltas, each layer on its own) or ``"joint"``
            (trained through the model, the intervention at layer l changing what layer l+1 sees).
        layers: the steered layers (``blocks.{l}.hook_resid_post``), sorted.
        rank: number of (probe, direction) components; 1 for constant vectors.
        model_id, d_model, n_layers: the model it was trained on (checked when applied).
        attribute: the steered attribute's name, when known.
        config: the training configuration, as a plain dict.
        data_hash: a hash of the training data.
        history: a summary of training (steps, best validation loss, why it stopped).
    """

    method: str
    scope: str
    training: str
    layers: tuple[int, ...]
    rank: int
    model_id: str
    d_model: int
    n_layers: int
    attribute: str | None = None
    config: dict = field(default_factory=dict)
    data_hash: str = ""
    history: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown steering method {self.method!r}; expected one of {METHODS}")
        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}; expected one of {SCOPES}")
        if self.training not in TRAININGS:
            raise ValueError(f"unknown training {self.training!r}; expected one of {TRAININGS}")
        object.__setattr__(self, "layers", tuple(int(l) for l in self.layers))
        if not self.layers:
            raise ValueError("a steerer needs at least one layer")
        if list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"layers must be sorted and distinct, got {list(self.layers)}")
        bad = [l for l in self.layers if not 0 <= l < self.n_layers]
        if bad:
            raise ValueError(f"layer {bad[0]} is out of range for a model with {self.n_layers} layers")
        if self.scope == "single" and len(self.layers) != 1:
            raise ValueError(f"a single-layer steerer has exactly one layer, got {list(self.layers)}")
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"rank must be an integer >= 1, got {self.rank!r}")
        if self.form == "const" and self.rank != 1:
            raise ValueError(f"{self.method} is a constant vector; its rank is 1, got {self.rank}")

    @property
    def form(self) -> str:
        """``"const"`` or ``"psr"``: which intervention formula."""
        return _FORM[self.method]

    @property
    def name(self) -> str:
        """The method's name in the one grammar of :mod:`workbench.steering.names`, e.g. ``"S-PSR"``,
        ``"A-PSR r2 (joint)"``, ``"Const-DiM"``."""
        try:
            return method_name(self.method, self.scope, self.rank, self.training)
        except ValueError:  # a combination no trainer makes (e.g. a sum of steerers): say it plainly
            return f"{'S' if self.scope == 'single' else 'A'}-{KIND_OF_METHOD[self.method]} r{self.rank} ({self.training})"

    def describe_model(self) -> str:
        return f"{self.model_id!r} (d_model {self.d_model}, {self.n_layers} layers)"

    def check_model(self, model) -> None:
        """Raise ValueError unless ``model`` is the model the steerer was trained on, naming both."""
        ours = (self.model_id, self.d_model, self.n_layers)
        theirs = (model.model_id, model.d_model, model.n_layers)
        if ours != theirs:
            raise ValueError(
                f"steerer was trained on {self.describe_model()} but the model is "
                f"{model.model_id!r} (d_model {model.d_model}, {model.n_layers} layers)"
            )


class Steerer:
    """Shared interface of the steerer forms; subclasses define :meth:`lambdas_from_acts`."""

    form: ClassVar[str] = ""

    def __init__(self, info: SteererInfo, z: torch.Tensor, w: torch.Tensor | None = None,
                 b: torch.Tensor | None = None) -> None:
        if info.form != self.form:
            raise ValueError(f"{type(self).__name__} holds {self.form!r} steerers, not {info.method!r}")
        expected = (len(info.layers), info.rank, info.d_model)
        if not isinstance(z, torch.Tensor) or tuple(z.shape) != expected:
            raise ValueError(f"z must have shape {list(expected)} (layers, rank, d_model), got "
                             f"{list(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")
        self.info = info
        self.z = z

    # -- description ------------------------------------------------------------------------

    @property
    def layers(self) -> tuple[int, ...]:
        return self.info.layers

    @property
    def rank(self) -> int:
        return self.info.rank

    @property
    def d_model(self) -> int:
        return self.info.d_model

    @property
    def name(self) -> str:
        return self.info.name

    def __repr__(self) -> str:
        layers = self.layers if len(self.layers) <= 4 else f"{self.layers[0]}..{self.layers[-1]}"
        return f"<{type(self).__name__} {self.name} layers={layers} model={self.info.model_id!r}>"

    def params(self) -> dict[str, torch.Tensor]:
        """The parameter tensors by name (``z``, and ``w``, ``b`` for PSR)."""
        return {"z": self.z}

    def layer_index(self, layer: int) -> int:
        """Index of ``layer`` in the stacked parameters."""
        try:
            return self.layers.index(int(layer))
        except ValueError:
            raise IndexError(f"layer {layer} is not steered by {self.name}, which steers layers {list(self.layers)}") from None

    def _check_acts(self, acts: torch.Tensor) -> None:
        if not isinstance(acts, torch.Tensor) or acts.ndim < 1 or acts.shape[-1] != self.d_model:
            shape = list(acts.shape) if isinstance(acts, torch.Tensor) else type(acts).__name__
            raise ValueError(f"activations must end in d_model {self.d_model}, got shape {shape}")

    # -- maths on plain tensors ---------------------------------------------------------------

    def lambdas_from_acts(self, layer: int, acts: torch.Tensor) -> torch.Tensor:
        """Per-token strength of each component. ``acts [..., d_model] -> [..., rank]``."""
        raise NotImplementedError

    def delta(self, layer: int, acts: torch.Tensor) -> torch.Tensor:
        """What the steerer adds at ``alpha = 1``: ``sum_k lambda_k(a) z_k``. ``[..., d] -> [..., d]``."""
        lam = self.lambdas_from_acts(layer, acts)
        z = self.z[self.layer_index(layer)].to(device=lam.device, dtype=lam.dtype)
        return lam @ z

    def steer_acts(self, layer: int, acts: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """``a + alpha * delta(a)``; ``alpha == 0`` returns ``acts`` itself. ``[..., d] -> [..., d]``."""
        alpha = check_alpha(alpha)
        if alpha == 0:
            return acts
        return acts + (alpha * self.delta(layer, acts.float())).to(acts.dtype)

    # -- copies -------------------------------------------------------------------------------

    def with_params(self, info: SteererInfo | None = None, **params: torch.Tensor) -> "Steerer":
        """A new steerer of the same form with some parameters (or the info) replaced."""
        current = {**self.params(), **params}
        return type(self)(info or self.info, **current)

    def detached(self) -> "Steerer":
        """A copy with every parameter detached, cloned and on the CPU in float32."""
        return self.with_params(**{k: v.detach().float().cpu().clone() for k, v in self.params().items()})

    # -- strength and composition -----------------------------------------------------------

    def at(self, alpha: float) -> "SteererAt":
        """This steerer at strength ``alpha``: a value :func:`~workbench.generate` and friends take.

        Example:
            >>> from workbench.steering.steerer import ConstSteerer, SteererInfo
            >>> import torch
            >>> info = SteererInfo("const-dim", "single", "layerwise", (0,), 1, "m", 4, 2)
            >>> s = ConstSteerer(info, torch.ones(1, 1, 4))
            >>> s.at(1.5).alpha, (2 * s).alpha
            (1.5, 2.0)
        """
        return SteererAt(self, check_alpha(alpha))

    def __rmul__(self, alpha: float) -> "SteererAt":
        if isinstance(alpha, (Steerer, SteererAt)):
            return NotImplemented
        return self.at(alpha)

    __mul__ = __rmul__

    def __add__(self, other: "Steerer") -> "Steerer":
        """The sum of two steerers of the same form on the same model: both interventions at once.

        Constant vectors add up to one vector per layer; PSR steerers stack their components (rank
        r_a + r_b). Layers steered by only one of them get zero directions from the other, so the
        sum is exactly ``a + alpha * (delta_self(a) + delta_other(a))`` at every layer.
        """
        if not isinstance(other, Steerer):
            return NotImplemented
        return compose(self, other)

    # -- the model-facing side (see hooks.py and io.py) ---------------------------------------

    def check_model(self, model) -> None:
        """Refuse a model other than the one the steerer was trained on, naming both."""
        self.info.check_model(model)

    def apply(self, model, alpha: float = 1.0, span=None):
        """Context manager: steer ``model`` at strength ``alpha`` on ``span`` (see :func:`~workbench.steering.hooks.apply`)."""
        return hooks.apply(model, self, alpha, span)

    def lambdas(self, model, sequence, alpha: float = 0.0, which: str = "base") -> torch.Tensor:
        """Per-token lambda read through the model: ``[n_steered_layers, tokens, rank]`` (see hooks.lambdas)."""
        return hooks.lambdas(model, self, sequence, alpha, which)

    def save(self, path) -> Path:
        """Write one safetensors file atomically (see :mod:`workbench.steering.io`); returns its path."""
        return save_steerer(self, path)

    @staticmethod
    def load(path, model=None) -> "Steerer":
        """Load a steerer file; with ``model``, refuse a steerer trained on another model."""
        return load_steerer(path, model)


class ConstSteerer(Steerer):
    """A constant vector per layer: ``a + alpha * z_l`` (Const-DiM / CAA, Const-MSE)."""

    form = "const"

    def lambdas_from_acts(self, layer: int, acts: torch.Tensor) -> torch.Tensor:
        self._check_acts(acts)
        self.layer_index(layer)
        return torch.ones(acts.shape[:-1] + (1,), dtype=torch.float32 if not acts.is_floating_point() else acts.dtype,
                          device=acts.device)


class PSRSteerer(Steerer):
    """Prompt Steering Replacement: ``a + alpha * sum_k ReLU(a . w_lk + b_lk) * z_lk``."""

    form = "psr"

    def __init__(self, info: SteererInfo, z: torch.Tensor, w: torch.Tensor | None = None,
                 b: torch.Tensor | None = None) -> None:
        super().__init__(info, z)
        if w is None or b is None:
            raise ValueError("a PSR steerer needs probe weights w and biases b")
        if tuple(w.shape) != tuple(z.shape):
            raise ValueError(f"w must have shape {list(z.shape)} (layers, rank, d_model), got {list(w.shape)}")
        if tuple(b.shape) != tuple(z.shape[:2]):
            raise ValueError(f"b must have shape {list(z.shape[:2])} (layers, rank), got {list(b.shape)}")
        self.w, self.b = w, b

    def params(self) -> dict[str, torch.Tensor]:
        return {"z": self.z, "w": self.w, "b": self.b}

    def lambdas_from_acts(self, layer: int, acts: torch.Tensor) -> torch.Tensor:
        self._check_acts(acts)
        i = self.layer_index(layer)
        acts = acts if acts.is_floating_point() else acts.float()
        w = self.w[i].to(device=acts.device, dtype=acts.dtype)
        b = self.b[i].to(device=acts.device, dtype=acts.dtype)
        return torch.relu(acts @ w.T + b)


def make_steerer(info: SteererInfo, z: torch.Tensor, w: torch.Tensor | None = None,
                 b: torch.Tensor | None = None) -> Steerer:
    """The steerer class for ``info.method`` built from its parameters."""
    if info.form == "const":
        if w is not None or b is not None:
            raise ValueError(f"{info.method} is a constant vector and takes no probe (w, b)")
        return ConstSteerer(info, z)
    return PSRSteerer(info, z, w, b)


@dataclass(frozen=True)
class SteererAt:
    """An intervention (a steerer, a LoRA, a fine-tune) at a strength: what generation, comparison and
    faithfulness take.

    Made by ``steerer.at(alpha)`` or ``alpha * steerer`` (``adapter.at(alpha)`` alike); ``alpha = 0``
    is the unsteered model.
    """

    steerer: Intervention
    alpha: float

    def __post_init__(self) -> None:
        if not isinstance(self.steerer, Intervention) or isinstance(self.steerer, SteererAt):
            raise TypeError(f"SteererAt needs a steerer or a weight adapter (an Intervention), got "
                            f"{type(self.steerer).__name__}")
        object.__setattr__(self, "alpha", check_alpha(self.alpha))

    def __iter__(self):  # unpacks like the (steerer, alpha) pairs older code passes
        return iter((self.steerer, self.alpha))

    def apply(self, model, span=None):
        """Context manager: steer ``model`` at this strength (the intervention's own ``apply``)."""
        return self.steerer.apply(model, self.alpha, span)

    def __repr__(self) -> str:
        return f"{self.alpha:g} * {self.steerer!r}"


def compose(first: Steerer, second: Steerer) -> Steerer:
    """``first + second`` (see :meth:`Steerer.__add__`)."""
    a, b = first.info, second.info
    if a.form != b.form:
        raise TypeError(f"cannot add {first.name} and {second.name}: a constant vector and a PSR steerer are "
                        "different forms (give both to generate(steerers=[...]) instead)")
    if (a.model_id, a.d_model, a.n_layers) != (b.model_id, b.d_model, b.n_layers):
        raise ValueError(f"cannot add steerers of different models: {a.describe_model()} and {b.describe_model()}")
    layers = tuple(sorted(set(a.layers) | set(b.layers)))

    def spread(steerer: Steerer, tensor: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((len(layers),) + tuple(tensor.shape[1:]), dtype=torch.float32)
        for i, layer in enumerate(steerer.layers):
            out[layers.index(layer)] = tensor[i].detach().float().cpu()
        return out

    pa, pb = first.params(), second.params()
    if a.form == "const":
        params = {"z": spread(first, pa["z"]) + spread(second, pb["z"])}
        rank = 1
    else:
        params = {k: torch.cat([spread(first, pa[k]), spread(second, pb[k])], dim=1) for k in ("z", "w", "b")}
        rank = a.rank + b.rank
    info = SteererInfo(
        method=a.method if a.method == b.method else ("psr-mse" if a.form == "psr" else "const-mse"),
        scope="single" if len(layers) == 1 else "all",
        training=a.training if a.training == b.training else "layerwise",
        layers=layers, rank=rank, model_id=a.model_id, d_model=a.d_model, n_layers=a.n_layers,
        attribute=a.attribute if a.attribute == b.attribute else None,
        config={"composed_of": [first.name, second.name]},
        data_hash="+".join(h for h in (a.data_hash, b.data_hash) if h),
        history={"composed_of": [a.history, b.history]},
    )
    return make_steerer(info, **params)


def save_steerer(steerer: Steerer, path: str | Path) -> Path:
    """Write ``steerer`` to ``path`` (a ``.safetensors`` file) atomically; returns the path."""
    return io.write_steerer_file(path, steerer.params(), steerer.info)


def load_steerer(path: str | Path, model=None) -> Steerer:
    """Load a steerer; with ``model``, also check it was trained on that model.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a truncated, foreign or inconsistent file (naming it), or a model mismatch
            (naming both models).
    """
    path = Path(path)
    meta, tensors = io.read_steerer_file(path)
    fields = set(SteererInfo.__dataclass_fields__)
    try:
        info = SteererInfo(**{k: v for k, v in meta.items() if k in fields})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} holds invalid steerer metadata: {err}") from err
    expected = {"z"} if info.form == "const" else {"z", "w", "b"}
    if set(tensors) != expected:
        raise ValueError(f"{path} holds tensors {sorted(tensors)}, expected {sorted(expected)} for {info.method}")
    try:
        steerer = make_steerer(info, **tensors)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    if model is not None:
        info.check_model(model)
    return steerer
