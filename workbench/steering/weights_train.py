"""Training weight-space adapters on prompt-steered triplets: the prompt distilled into weights.

The data are the kept triplets of a run as aligned pairs: the input is ``x y'`` (the question and
the prompt-steered response, *without* the instruction) and the loss is the mean negative
log-likelihood of the response tokens of ``y'`` (after the assistant header), so whatever the
instruction did must now come from the weights. The train / validation split is the steerers'
(:func:`workbench.steering.data.split_sequences` on the pair indices with the same fraction and
seed); the loss on the validation side is measured every ``eval_every`` steps, training stops after
``patience`` validations without improvement, and the best validation point is kept.

- ``"lora"``: ``peft`` LoRA layers (rank ``r``, ``lora_alpha = r``, no dropout) on the projections
  of every block (:data:`~workbench.steering.weights.DEFAULT_TARGETS`); only A and B train.
- ``"finetune"``: every parameter of every block (attention, MLP and norms) trains, in plain torch;
  the token embedding (tied to the unembedding in SmolLM2) stays frozen. The result is stored as the
  weight change ``W_ft - W``.

The model is left exactly as it was (the original tensors and modules are put back). Batches are
drawn from ``(seed, step)``, so a run is reproducible and an interrupted one resumes bit-identically
from its checkpoint (``checkpoint=``: parameters, the best point and Adam's state as safetensors,
written at every validation and removed at the end); resuming with other settings, other data or
another model is refused. Training time and peak memory are measured: on CUDA the peak of
``torch.cuda.max_memory_allocated`` above the start, on a CPU the peak resident set size above the
start, sampled every 10 ms by a thread (psutil), after handing freed memory back to the OS
(glibc ``malloc_trim``) so that an earlier job's free pages do not hide this one's allocations.
"""

from __future__ import annotations

import ctypes
import gc
import json
import warnings
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import psutil
import torch
from tqdm.auto import tqdm

from workbench.activations.deltas import pairs_fingerprint
from workbench.core.chat import AlignedPair
from workbench.core.fingerprint import fingerprint
from workbench.core.native_path import forward
from workbench.core.span import right_pad
from workbench.core.tensor_files import CorruptFileError, TensorFile, write_tensor_file
from workbench.steering.data import split_sequences
from workbench.steering.joint import response_token_nll
from workbench.steering.weights import (
    ADAPTER_NAME,
    DEFAULT_TARGETS,
    FineTuneAdapter,
    LoRAAdapter,
    WeightAdapter,
    WeightInfo,
    check_lora_rank,
    hf_module,
    injected_lora,
    layer_of,
    lora_target_paths,
)

TRAIN_VERSION = 1
CHECKPOINT_KEY = "workbench_weights_checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
DEFAULT_LR = {"lora": 1e-3, "finetune": 2e-5}


@dataclass(frozen=True)
class WeightTrainConfig:
    """How to train a weight-space adapter.

    Attributes:
        steps: optimizer steps at most (each runs the model forward and backward).
        lr: Adam learning rate; ``None``: 1e-3 for LoRA, 2e-5 for a fine-tune.
        batch_size: training sequences per step.
        val_fraction, seed: the train / validation split (the steerers') and the batch order.
        eval_every: steps between validation losses (and checkpoints).
        patience: validations without improvement before stopping (0: never stop early).
        targets: the linear layers a LoRA adapts (short names, in every block).
    """

    steps: int = 40
    lr: float | None = None
    batch_size: int = 8
    val_fraction: float = 0.2
    eval_every: int = 5
    patience: int = 3
    seed: int = 0
    targets: tuple[str, ...] = DEFAULT_TARGETS

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {self.steps!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0 or None, got {self.lr}")
        if self.batch_size < 1 or self.eval_every < 1 or self.patience < 0:
            raise ValueError(f"need batch_size >= 1, eval_every >= 1, patience >= 0; got {self.batch_size}, "
                             f"{self.eval_every}, {self.patience}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be within [0, 1), got {self.val_fraction}")


def _nll(model, pairs: Sequence[AlignedPair]) -> torch.Tensor:
    """Mean NLL (nats per response token) of ``y'`` given ``x`` for a batch."""
    ids, mask = right_pad([p.base_ids for p in pairs], model.tokenizer.pad_token_id)
    logits = forward(model, ids.to(model.device), mask.to(model.device))
    return response_token_nll(logits, pairs).mean()


@torch.no_grad()
def _val_loss(model, pairs: Sequence[AlignedPair], ids: Sequence[int], batch_size: int) -> float:
    total, count = 0.0, 0
    for i in range(0, len(ids), batch_size):
        batch = [pairs[j] for j in ids[i : i + batch_size]]
        n = sum(len(p.base_ids) - p.base_start - p.header_len for p in batch)
        total, count = total + float(_nll(model, batch)) * n, count + n
    return total / count


def _batch_ids(train: Sequence[int], batch_size: int, seed: int, step: int) -> list[int]:
    """The training sequences of one step, drawn from ``(seed, step)`` alone (resumes bit-identically)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))
    order = torch.randperm(len(train), generator=g).tolist()
    return [train[i] for i in order[: min(batch_size, len(train))]]


def _release_freed_memory() -> None:
    """Hand memory freed earlier back to the OS (glibc ``malloc_trim``), so that the RSS measured
    above the start counts this block's allocations, not reuse of an earlier block's free pages."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the measure is then an underestimate after earlier peaks
        pass


class PeakMemory:
    """Peak memory above the start of the block: CUDA allocator peak, or sampled RSS on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            _release_freed_memory()
            self._proc = psutil.Process()
            self._start = self._proc.memory_info().rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss - self._start)
            self._stop.wait(0.01)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak = int(torch.cuda.max_memory_allocated(self.device) - self._start)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._proc.memory_info().rss - self._start)

    @property
    def how(self) -> str:
        return "cuda max_memory_allocated" if self.device.type == "cuda" else "cpu rss sampled every 10 ms"


@contextmanager
def _trainable(model, method: str, rank: int, config: WeightTrainConfig):
    """``{name: parameter}`` that train, inside the block; the model is exactly restored after.

    Every other parameter is frozen for the block (flags restored). LoRA: peft layers injected
    (A seeded by ``config.seed``, B zero). Fine-tune: each block parameter trains on a copy of
    its tensor; the original tensor object is put back on leaving.
    """
    root = hf_module(model)
    params = list(model.bridge.parameters()) + list(root.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    try:
        # The ExitStack closes (peft layers out, original tensors back) before the flags and
        # gradients are restored below: injected_lora restores the flags it saw on entry, which
        # are the frozen ones set here.
        with ExitStack() as stack:
            for p in params:
                p.requires_grad_(False)
            if method == "lora":
                paths = lora_target_paths(model, config.targets)
                check_lora_rank(model, rank, paths)
                layers = stack.enter_context(injected_lora(model, paths, rank, seed=config.seed))
                out = {}
                for path, layer in layers.items():
                    out[f"{path}.lora_A"] = layer.lora_A[ADAPTER_NAME].weight
                    out[f"{path}.lora_B"] = layer.lora_B[ADAPTER_NAME].weight
            else:
                named = {path: p for path, p in root.named_parameters() if layer_of(path) is not None}
                originals = {path: p.data for path, p in named.items()}

                def restore():
                    for path, data in originals.items():
                        named[path].data = data

                stack.callback(restore)
                for path, p in named.items():
                    p.data = p.data.clone()
                out = named
            for p in out.values():
                p.requires_grad_(True)
            yield out, (originals if method == "finetune" else None)
    finally:
        for p, flag, grad in zip(params, flags, grads):
            p.requires_grad_(flag)
            p.grad = grad


def _read_checkpoint(path: Path, key: str, settings: dict) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """The checkpoint at ``path`` (None when there is none, or when it is corrupt: then it is removed
    with a warning and the training starts again); ValueError when it is another training's."""
    if not path.is_file():
        return None
    try:
        with TensorFile(path, meta_key=CHECKPOINT_KEY, format_version=CHECKPOINT_FORMAT_VERSION, finite=True,
                        what="training checkpoint") as fh:
            meta = fh.meta
            tensors = fh.read_all() if meta.get("key") == key else {}
    except CorruptFileError as err:
        warnings.warn(f"{err}; starting the training again", RuntimeWarning, stacklevel=3)
        path.unlink(missing_ok=True)
        return None
    if meta.get("key") != key:
        theirs = meta.get("settings", {})
        differ = {k: (theirs.get(k), v) for k, v in settings.items() if theirs.get(k) != v}
        raise ValueError(
            f"{path} holds an interrupted training made with other settings, data or model "
            f"(checkpoint vs now: {differ or 'same settings, other training data'}); resume it with the same "
            "settings, or delete the file to start again")
    return meta, tensors


def _write_checkpoint(path: Path, meta: dict, params: dict, best: dict, optimizer: torch.optim.Optimizer) -> None:
    tensors = {}
    for name, p in params.items():
        tensors[f"param/{name}"] = p.detach().cpu().contiguous()
        tensors[f"best/{name}"] = best[name].cpu().contiguous()
        state = optimizer.state.get(p, {})
        for k in ("exp_avg", "exp_avg_sq"):
            if k in state:
                tensors[f"{k}/{name}"] = state[k].cpu().contiguous()
    write_tensor_file(path, tensors, meta, meta_key=CHECKPOINT_KEY, format_version=CHECKPOINT_FORMAT_VERSION)


def train_weights(model, pairs: Sequence[AlignedPair], method: str, *, rank: int = 8,
                  config: WeightTrainConfig = WeightTrainConfig(), attribute: str | None = None,
                  checkpoint: str | Path | None = None, progress: bool = True) -> WeightAdapter:
    """Train a LoRA (``method="lora"``, ``rank``) or a fine-tune (``"finetune"``) on ``pairs``.

    Args:
        pairs: the kept triplets, aligned (``x y'`` is what the model reads; the loss is on ``y'``).
        checkpoint: a file to checkpoint to and resume from (see the module docstring).
    Returns:
        A :class:`~workbench.steering.weights.LoRAAdapter` or
        :class:`~workbench.steering.weights.FineTuneAdapter`; ``info.history`` holds the losses,
        steps, why it stopped, training seconds and peak memory.
    Raises:
        ValueError: no pairs, an unknown method, a LoRA rank < 1 or larger than a targeted layer,
            or a checkpoint of a training with other settings.
    """
    if method not in DEFAULT_LR:
        raise ValueError(f"unknown weight-space method {method!r}; expected 'lora' or 'finetune'")
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no kept triplets to train on: the adapter has nothing to distil (did every "
                         "prompt-steered sample fail the judges?)")
    rank = rank if method == "lora" else 0
    if method == "lora":
        check_lora_rank(model, rank, lora_target_paths(model, config.targets))
    lr = config.lr if config.lr is not None else DEFAULT_LR[method]
    train_ids, val_ids = split_sequences(range(len(pairs)), config.val_fraction, config.seed)
    measure_ids = val_ids or train_ids
    settings = json.loads(json.dumps({"method": method, "rank": rank, **asdict(config), "lr": lr, "model": model.model_id}))
    data_hash = pairs_fingerprint(pairs)
    key = fingerprint(TRAIN_VERSION, settings, data_hash)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    saved = _read_checkpoint(checkpoint, key, settings) if checkpoint is not None else None
    with _trainable(model, method, rank, config) as (params, originals), PeakMemory(model.device) as memory:
        optimizer = torch.optim.Adam(list(params.values()), lr=lr)
        if saved is None:
            state = {"step": 0, "seconds": 0.0, "since_best": 0, "val_losses": [],
                     "best_loss": None, "best_step": 0, "stopped": ""}
            best = {name: p.detach().clone() for name, p in params.items()}
        else:
            state, tensors = saved[0]["state"], saved[1]
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(tensors[f"param/{name}"].to(p.device))
                    if f"exp_avg/{name}" in tensors:
                        optimizer.state[p] = {"step": torch.tensor(float(state["step"])),
                                              "exp_avg": tensors[f"exp_avg/{name}"].to(p.device),
                                              "exp_avg_sq": tensors[f"exp_avg_sq/{name}"].to(p.device)}
            best = {name: tensors[f"best/{name}"].to(p.device) for name, p in params.items()}
        start = time.perf_counter() - state["seconds"]
        if state["best_loss"] is None:  # step 0: the base model's validation loss
            state["best_loss"] = _val_loss(model, pairs, measure_ids, config.batch_size)
            state["val_losses"].append([0, state["best_loss"]])
        bar = tqdm(total=config.steps, initial=state["step"], desc=f"training {method}", disable=not progress,
                   leave=False)
        while state["step"] < config.steps and not state["stopped"]:
            batch = [pairs[i] for i in _batch_ids(train_ids, config.batch_size, config.seed, state["step"])]
            optimizer.zero_grad(set_to_none=True)
            loss = _nll(model, batch)
            loss.backward()
            optimizer.step()
            state["step"] += 1
            bar.update()
            if state["step"] % config.eval_every == 0 or state["step"] == config.steps:
                val = _val_loss(model, pairs, measure_ids, config.batch_size)
                state["val_losses"].append([state["step"], val])
                bar.set_postfix(train=f"{loss.item():.3f}", val=f"{val:.3f}")
                if val < state["best_loss"]:
                    state.update(best_loss=val, best_step=state["step"], since_best=0)
                    best = {name: p.detach().clone() for name, p in params.items()}
                else:
                    state["since_best"] += 1
                    if config.patience and state["since_best"] >= config.patience:
                        state["stopped"] = f"early stopping: no better validation loss in {config.patience} checks"
                state["seconds"] = time.perf_counter() - start
                if checkpoint is not None:
                    _write_checkpoint(checkpoint, {"key": key, "settings": settings, "state": state}, params, best,
                                      optimizer)
        bar.close()
        state["seconds"] = time.perf_counter() - start
        if method == "lora":
            tensors = {name: t.detach().cpu() for name, t in best.items()}
        else:
            tensors = {name: (best[name] - originals[name]).detach().cpu() for name in params}
    history = {"steps": state["step"], "best_step": state["best_step"], "best_val_loss": state["best_loss"],
               "val_losses": state["val_losses"], "stopped": state["stopped"] or "steps",
               "seconds": round(state["seconds"], 2), "peak_memory_bytes": int(memory.peak),
               "peak_memory": memory.how, "n_train_sequences": len(train_ids), "n_val_sequences": len(val_ids),
               "base_val_loss": state["val_losses"][0][1]}
    layers = sorted({layer_of(name) for name in tensors})
    info = WeightInfo(method, rank, config.targets if method == "lora" else ("blocks",), tuple(layers),
                      model.model_id, model.d_model, model.n_layers, n_train=len(pairs), attribute=attribute,
                      config=settings, data_hash=data_hash, history=history)
    if checkpoint is not None and checkpoint.is_file():
        checkpoint.unlink()
    return (LoRAAdapter if method == "lora" else FineTuneAdapter)(info, tensors)
