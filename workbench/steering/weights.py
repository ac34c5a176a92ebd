"""Weight-space adapters: LoRA (through ``peft``) and a full fine-tune, used like steerers.

Both are trained on the kept prompt-steered triplets of a run (:mod:`workbench.steering.weights_train`):
the input is ``x y'`` *without* the instruction and the loss is on the response tokens, so the
weights must carry the instruction (the prompt is distilled into them). Here they are objects with
the steerers' interface (``apply(model, alpha, span)`` as a context manager, ``layers``, ``name``,
``params()``, ``info``, ``check_model``, ``save`` / ``load``), so generation, the equal-coherence
search, faithfulness and the adaptation table take them unchanged.

Strength ``alpha``:

- **LoRA**: the adapter's update is scaled, ``W x + alpha * B A x`` at every targeted linear layer
  (``peft``'s LoRA layers, injected into the Hugging Face modules the bridge wraps, with their
  ``scaling`` set to ``alpha``). ``alpha = 0`` injects nothing: exactly the base model.
- **Fine-tune**: interpolation (and extrapolation) between the base and the fine-tuned weights,
  ``W + alpha * (W_ft - W)``. Chosen over checkpoints along training because the equal-coherence
  search bisects a continuous knob (checkpoints are a handful of discrete points whose spacing
  depends on early stopping), because ``alpha = 0`` is then exactly the base model, and because it
  is the same knob as LoRA's (a LoRA's ``alpha`` scales its weight delta in exactly this way).

Inside the ``with`` block the model *is* the adapted model; on leaving it every module and every
parameter tensor is put back (the original objects, so the base logits are bit-identical, which
the tests and the adaptation table measure). Unlike a steerer, a weight change acts on every
position of the sequence (the question too), not only on the steered span: a weight-space adapter
ignores the span's position mask and cannot be gated per row (``span.rows`` is refused). It has no
per-token strength: :meth:`WeightAdapter.lambdas_from_acts` reads 1 on every token.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Iterator

import torch
from torch import nn

from workbench.core.models import module_name
from workbench.core.tensor_files import TensorFile, write_tensor_file
from workbench.core.span import Span
from workbench.steering.alpha import check_alpha
from workbench.steering.steerer import SteererAt
from workbench.steering.names import WEIGHT_METHODS, method_name

WEIGHTS_FORMAT_VERSION = 2  # 2: checksums
META_KEY = "workbench_weights"
ADAPTER_NAME = "workbench"
#: The linear layers a LoRA adapts by default: every projection of attention and MLP (Llama names).
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_LAYER_RE = re.compile(r"(?:^|\.)layers\.(\d+)(?:\.|$)")


@dataclass(frozen=True)
class WeightInfo:
    """What a weight-space adapter is and where it came from; all of it is saved with the tensors.

    Attributes:
        method: ``"lora"`` or ``"finetune"``.
        rank: the LoRA rank (0 for a fine-tune: it changes full weight matrices).
        targets: the module short names adapted (LoRA) or ``("blocks",)`` (fine-tune).
        layers: the blocks holding adapted weights, sorted.
        model_id, d_model, n_layers: the model it was trained on (checked when applied or loaded).
        n_train: kept triplets it was trained on (train and validation sides together).
        attribute, config, data_hash, history: as for a steerer (training settings, a hash of the
            data, a summary of training: steps, best validation loss, seconds, peak memory).
    """

    method: str
    rank: int
    targets: tuple[str, ...]
    layers: tuple[int, ...]
    model_id: str
    d_model: int
    n_layers: int
    n_train: int = 0
    attribute: str | None = None
    config: dict = field(default_factory=dict)
    data_hash: str = ""
    history: dict = field(default_factory=dict)
    scope: ClassVar[str] = "all"
    training: ClassVar[str] = "joint"

    def __post_init__(self) -> None:
        if self.method not in WEIGHT_METHODS:
            raise ValueError(f"unknown weight-space method {self.method!r}; expected one of {list(WEIGHT_METHODS)}")
        object.__setattr__(self, "layers", tuple(int(l) for l in self.layers))
        object.__setattr__(self, "targets", tuple(self.targets))
        if self.method == "lora" and (not isinstance(self.rank, int) or self.rank < 1):
            raise ValueError(f"LoRA rank must be an integer >= 1, got {self.rank!r}")
        if self.method == "finetune" and self.rank != 0:
            raise ValueError(f"a fine-tune has no rank (0), got {self.rank!r}")

    @property
    def form(self) -> str:
        """``"weights"``: not one of the steerers' intervention formulas (``"const"``, ``"psr"``)."""
        return "weights"

    @property
    def name(self) -> str:
        """``"LoRA r8"`` or ``"Fine-tune"`` (the grammar of :mod:`workbench.steering.names`)."""
        return method_name(self.method, "all", self.rank or 1)

    def check_model(self, model) -> None:
        """Raise ValueError unless ``model`` is the model the adapter was trained on, naming both."""
        ours = (self.model_id, self.d_model, self.n_layers)
        theirs = (model.model_id, model.d_model, model.n_layers)
        if ours != theirs:
            raise ValueError(f"the {self.name} adapter was trained on {self.model_id!r} (d_model {self.d_model}, "
                             f"{self.n_layers} layers) but the model is {model.model_id!r} (d_model {model.d_model}, "
                             f"{model.n_layers} layers)")


def hf_module(model) -> nn.Module:
    """The Hugging Face model under the bridge (its submodules are the ones the bridge calls)."""
    return model.hf_model


def layer_of(path: str) -> int | None:
    """The block index in a module or parameter path (``...layers.12...`` -> 12), or None."""
    match = _LAYER_RE.search(path)
    return int(match.group(1)) if match else None


def lora_target_paths(model, targets=DEFAULT_TARGETS) -> list[str]:
    """Paths (in the Hugging Face model) of the ``nn.Linear`` layers a LoRA on ``targets`` adapts.

    TransformerLens' bridge replaces each HF linear layer by a ``LinearBridge`` that keeps the
    original ``nn.Linear`` inside it (:data:`workbench.core.models.WRAPPED_ATTRIBUTE`) and calls it; ``peft`` cannot wrap the bridge
    component, so the path is the inner ``nn.Linear``, which the bridge's forward then reaches
    through the LoRA layer. Only layers inside blocks count (never ``lm_head``).
    """
    targets = tuple(targets)
    if not targets:
        raise ValueError("a LoRA needs at least one target module name, e.g. 'q_proj'")
    out = []
    for path, module in hf_module(model).named_modules():
        if type(module) is nn.Linear and layer_of(path) is not None and module_name(path) in targets:
            out.append(path)
    if not out:
        raise ValueError(f"no linear layer named {list(targets)} inside the blocks of {model.model_id!r}")
    return out


def check_lora_rank(model, rank, paths) -> None:
    """Raise ValueError unless ``1 <= rank <= min(in, out)`` of every targeted layer."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"LoRA rank must be an integer >= 1, got {rank!r}")
    root = hf_module(model)
    for path in paths:
        layer = root.get_submodule(path)
        if rank > min(layer.in_features, layer.out_features):
            raise ValueError(f"LoRA rank {rank} is larger than the layer {path} allows "
                             f"({layer.in_features} -> {layer.out_features}, so rank <= "
                             f"{min(layer.in_features, layer.out_features)})")


@contextmanager
def injected_lora(model, paths, rank: int, *, seed: int | None = None) -> Iterator[dict[str, nn.Module]]:
    """``peft`` LoRA layers on ``paths`` (with ``lora_alpha = rank``, so the update is ``B A x``)
    inside the block; ``{path: lora layer}``. On leaving, each original ``nn.Linear`` is put back
    and every parameter's ``requires_grad`` flag restored (peft freezes the base weights).

    ``seed``: seeds peft's initialisation (A Kaiming-uniform, B zero); the global RNG is untouched.
    """
    import peft  # heavy (~2 s to import): loaded only when a LoRA is trained or applied

    root = hf_module(model)
    params = list(root.parameters())
    flags = [p.requires_grad for p in params]
    originals = {path: root.get_submodule(path) for path in paths}
    had_config = hasattr(root, "peft_config")
    config = peft.LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=list(paths), bias="none")
    try:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(int(seed))
            peft.inject_adapter_in_model(config, root, adapter_name=ADAPTER_NAME)
        layers = {path: root.get_submodule(path) for path in paths}
        missing = [p for p, layer in layers.items() if not isinstance(layer, peft.tuners.lora.LoraLayer)]
        if missing:
            raise RuntimeError(f"peft did not adapt {missing[:3]}")
        yield layers
    finally:
        for path, original in originals.items():
            parent, _, child = path.rpartition(".")
            setattr(root.get_submodule(parent) if parent else root, child, original)
        if not had_config and hasattr(root, "peft_config"):
            del root.peft_config
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def _check_span(span, name: str) -> Span:
    span = Span() if span is None else span
    if not isinstance(span, Span):
        raise TypeError(f"span must be a workbench.core.span.Span, got {type(span).__name__}")
    if span.rows is not None:
        raise ValueError(f"{name} changes the model's weights, for every row of a batch at once; it cannot be "
                         "gated per row (span.rows). Gate a steerer, or run the rows in separate batches")
    return span


class WeightAdapter:
    """Shared interface of :class:`LoRAAdapter` and :class:`FineTuneAdapter` (see the module docstring)."""

    def __init__(self, info: WeightInfo, tensors: dict[str, torch.Tensor]) -> None:
        self.info = info
        self.tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
        if not self.tensors:
            raise ValueError(f"a {info.name} adapter needs tensors")

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def layers(self) -> tuple[int, ...]:
        return self.info.layers

    @property
    def rank(self) -> int:
        return self.info.rank

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name}, {len(self.tensors)} tensors, {self.n_params:,} parameters, "
                f"model={self.info.model_id!r})")

    def params(self) -> dict[str, torch.Tensor]:
        """The trained tensors by name (what is saved, counted and fingerprinted)."""
        return dict(self.tensors)

    def at(self, alpha: float) -> SteererAt:
        """This adapter at strength ``alpha`` (``alpha * B @ A`` added to each adapted weight), a value
        generation and the comparison take like a steerer's ``steerer.at(alpha)``."""
        return SteererAt(self, check_alpha(alpha))

    def __rmul__(self, alpha: float) -> SteererAt:
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
            return NotImplemented
        return self.at(alpha)

    __mul__ = __rmul__

    @property
    def n_params(self) -> int:
        return sum(int(t.numel()) for t in self.tensors.values())

    def check_model(self, model) -> None:
        self.info.check_model(model)

    def lambdas_from_acts(self, layer: int, acts: torch.Tensor) -> torch.Tensor:
        """``[..., 1]`` ones: a weight change acts with the same strength on every token."""
        return torch.ones(*acts.shape[:-1], 1, dtype=acts.dtype, device=acts.device)

    @contextmanager
    def apply(self, model, alpha: float = 1.0, span: Span | None = None) -> Iterator[Span]:
        """The adapted model inside the block, at strength ``alpha``; the base model exactly after."""
        self.check_model(model)
        alpha = check_alpha(alpha)
        span = _check_span(span, self.name)
        if alpha == 0.0:
            yield span
            return
        with self._applied(model, alpha):
            yield span

    def _applied(self, model, alpha: float):
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """One safetensors file (tensors float32, metadata JSON, checksums), written atomically."""
        try:
            return write_tensor_file(path, self.tensors, asdict(self.info), meta_key=META_KEY,
                                     format_version=WEIGHTS_FORMAT_VERSION)
        except ValueError as err:
            raise ValueError(f"the adapter's metadata cannot be saved as JSON ({err})") from err

    @staticmethod
    def load(path: str | Path, model=None) -> "WeightAdapter":
        """Read an adapter file; with ``model``, refuse one trained on another model (ValueError)."""
        with TensorFile(path, meta_key=META_KEY, format_version=WEIGHTS_FORMAT_VERSION, finite=True,
                        what="weight adapter") as fh:
            meta, tensors = dict(fh.meta), fh.read_all()
        meta.pop("format_version", None)
        meta.pop("package_version", None)
        info = WeightInfo(**meta)
        adapter = (LoRAAdapter if info.method == "lora" else FineTuneAdapter)(info, tensors)
        if model is not None:
            adapter.check_model(model)
            adapter.check_shapes(model)
        return adapter

    def check_shapes(self, model) -> None:
        raise NotImplementedError


class LoRAAdapter(WeightAdapter):
    """A LoRA: ``"{path}.lora_A"`` ``[rank, in]`` and ``"{path}.lora_B"`` ``[out, rank]`` per adapted
    linear layer (paths in the Hugging Face model); the update of ``W`` is ``alpha * B @ A``."""

    @property
    def paths(self) -> list[str]:
        return sorted({k.rsplit(".", 1)[0] for k in self.tensors})

    def delta(self, path: str) -> torch.Tensor:
        """``[out, in]``: the weight change ``B @ A`` of one adapted layer at ``alpha = 1``."""
        return self.tensors[f"{path}.lora_B"] @ self.tensors[f"{path}.lora_A"]

    def check_shapes(self, model) -> None:
        root = hf_module(model)
        for path in self.paths:
            try:
                layer = root.get_submodule(path)
            except AttributeError:
                raise ValueError(f"the {self.name} adapter adapts {path!r}, which {model.model_id!r} does not have") from None
            a, b = self.tensors[f"{path}.lora_A"], self.tensors[f"{path}.lora_B"]
            if tuple(a.shape) != (self.rank, layer.in_features) or tuple(b.shape) != (layer.out_features, self.rank):
                raise ValueError(f"the {self.name} adapter's tensors for {path} have shapes {tuple(a.shape)}, "
                                 f"{tuple(b.shape)}; the layer is {layer.in_features} -> {layer.out_features}")

    @contextmanager
    def _applied(self, model, alpha: float):
        self.check_shapes(model)
        with injected_lora(model, self.paths, self.rank, seed=0) as layers:
            with torch.no_grad():
                for path, layer in layers.items():
                    device = layer.lora_A[ADAPTER_NAME].weight.device
                    layer.lora_A[ADAPTER_NAME].weight.copy_(self.tensors[f"{path}.lora_A"].to(device))
                    layer.lora_B[ADAPTER_NAME].weight.copy_(self.tensors[f"{path}.lora_B"].to(device))
                    layer.scaling[ADAPTER_NAME] = float(alpha)
            yield


class FineTuneAdapter(WeightAdapter):
    """A fine-tune as its weight change: ``{parameter path: W_ft - W}`` (float32), applied as
    ``W + alpha * (W_ft - W)``; parameters not listed were frozen."""

    def check_shapes(self, model) -> None:
        named = dict(hf_module(model).named_parameters())
        for path, delta in self.tensors.items():
            if path not in named:
                raise ValueError(f"the {self.name} adapter changes {path!r}, which {model.model_id!r} does not have")
            if tuple(named[path].shape) != tuple(delta.shape):
                raise ValueError(f"the {self.name} adapter's change of {path} has shape {tuple(delta.shape)}, the "
                                 f"parameter {tuple(named[path].shape)}")

    @contextmanager
    def _applied(self, model, alpha: float):
        self.check_shapes(model)
        named = dict(hf_module(model).named_parameters())
        originals = {path: named[path].data for path in self.tensors}
        try:
            with torch.no_grad():
                for path, delta in self.tensors.items():
                    base = originals[path]
                    named[path].data = base + (alpha * delta.to(base.device)).to(base.dtype)
            yield
        finally:  # the original tensors themselves: bit-identical base weights
            for path, base in originals.items():
                named[path].data = base


def load_weights(path: str | Path, model=None) -> WeightAdapter:
    """:meth:`WeightAdapter.load`."""
    return WeightAdapter.load(path, model)
