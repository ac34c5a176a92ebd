"""Training through the model: joint all-layer PSR (MSE) and PSR-LL (log-likelihood).

Both run the base sequences ``x y'`` with the steerer hooked in at every one of its layers, on
the steered span, at strength ``alpha`` = each triplet's soft label, so the intervention at layer
l changes what layer l+1 sees:

- objective ``"mse"`` (joint A-PSR, also Const-MSE): the mean over steered layers of
  ``sum_t ||A_l^steered(x y')[t] - A_l(x' y')[t]||^2 / sum_t ||A_l(x y')[t] - A_l(x' y')[t]||^2``
  (1 = no better than not steering);
- objective ``"nll"`` (PSR-LL): the mean negative log-likelihood of the response tokens ``y'``
  given ``x`` under the intervention.

Plus the dead-ReLU term. The model's weights are frozen while training (their ``requires_grad``
flags are restored afterwards); only the steerer's parameters move.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from workbench.activations.extraction import extract_batch
from workbench.core.chat import AlignedPair
from workbench.core.checks import is_number
from workbench.core.native_path import forward
from workbench.core.span import aligned_span_mask, right_pad, span_index
from workbench.steering.data import split_sequences
from workbench.steering.hooks import add_steering, frozen
from workbench.steering.steerer import Steerer, SteererInfo
from workbench.steering.train import TrainConfig, Trainer, dead_relu_penalty

OBJECTIVES = ("mse", "nll")
DEFAULT_MODEL_BATCH = 8


def _batched(items: Sequence, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def run_steered(model, steerer: Steerer | None, pairs: Sequence[AlignedPair], labels: torch.Tensor,
                want_acts: bool = False, want_logits: bool = False):
    """One forward pass of ``x y'`` for ``pairs``, steered on the span at ``alpha = labels[row]``.

    Gradients flow to the steerer's parameters when they require grad.

    Returns:
        ``(lams, acts, logits)``: ``lams [n_steered_layers, span_tokens, rank]`` (None without a
        steerer), ``acts [n_steered_layers, span_tokens, d]`` after the intervention (when
        ``want_acts``; at ``layers`` of the steerer), ``logits [batch, width, vocab]`` (when
        ``want_logits``). Span tokens are packed in pair order.
    """
    ids, mask = right_pad([p.base_ids for p in pairs], model.tokenizer.pad_token_id)
    rows, cols = span_index([p.base_start for p in pairs], [p.span_len for p in pairs])
    device = model.device
    rows, cols = rows.to(device), cols.to(device)
    weight = (labels.to(device)[:, None] * aligned_span_mask(pairs).to(device))[..., None]  # [B, S, 1]
    lams: dict[int, torch.Tensor] = {}
    acts: dict[int, torch.Tensor] = {}

    def hook_for(layer: int):
        def hook(resid: torch.Tensor, hook=None) -> torch.Tensor:
            if steerer is not None:
                lams[layer] = steerer.lambdas_from_acts(layer, resid[rows, cols].float())
                resid = add_steering(steerer, layer, resid, weight.to(resid.dtype))
            if want_acts:
                acts[layer] = resid[rows, cols].float()
            return resid

        return hook

    layers = steerer.layers if steerer is not None else ()
    hooks = [(model.resid_hook(l), hook_for(l)) for l in layers]
    with model.bridge.hooks(fwd_hooks=hooks):
        logits = forward(model, ids.to(device), mask.to(device), logits=want_logits)
    lam = torch.stack([lams[l] for l in layers]) if steerer is not None else None
    act = torch.stack([acts[l] for l in layers]) if want_acts and steerer is not None else None
    return lam, act, logits


def response_token_nll(logits: torch.Tensor, pairs: Sequence[AlignedPair]) -> torch.Tensor:
    """``[response tokens]`` NLL of each response token of ``y'`` (after the header), packed."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    out = []
    for row, p in enumerate(pairs):
        first = p.base_start + p.header_len
        targets = torch.as_tensor(p.base_ids[first:], device=logits.device)
        out.append(-logprobs[row, first - 1 : len(p.base_ids) - 1].gather(-1, targets[:, None])[:, 0])
    return torch.cat(out)


@torch.no_grad()
def response_nll(model, pairs: Sequence[AlignedPair], steerer: Steerer | None = None,
                 labels: Sequence[float] | torch.Tensor | float = 1.0, batch_size: int = DEFAULT_MODEL_BATCH) -> float:
    """Mean NLL (nats per token) of the responses ``y'`` given ``x``, optionally steered at
    ``alpha = labels`` (one per pair, or one for all)."""
    if not pairs:
        raise ValueError("no pairs to score")
    if steerer is not None:
        steerer.check_model(model)
    labels = _labels(labels, len(pairs))
    total, count = 0.0, 0
    for idx in _batched(range(len(pairs)), batch_size):
        _, _, logits = run_steered(model, steerer, [pairs[i] for i in idx], labels[idx], want_logits=True)
        nll = response_token_nll(logits, [pairs[i] for i in idx])
        total, count = total + float(nll.sum()), count + nll.numel()
    return total / count


@torch.no_grad()
def prompted_targets(model, pairs: Sequence[AlignedPair], layers: Sequence[int],
                     batch_size: int = DEFAULT_MODEL_BATCH) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per pair, ``A_l(x y')`` and ``A_l(x' y')`` on the span: two lists of ``[layers, span, d]``."""
    base, steered = [], []
    for idx in _batched(range(len(pairs)), batch_size):
        acts = extract_batch(model, [pairs[i] for i in idx], layers, local=False)
        for row in range(len(idx)):
            keep = acts.sample == row
            base.append(acts.base[:, keep])
            steered.append(acts.steered[:, keep])
    return base, steered


@torch.no_grad()
def span_mse(model, steerer: Steerer, pairs: Sequence[AlignedPair], labels: Sequence[float] | torch.Tensor | float = 1.0,
             batch_size: int = DEFAULT_MODEL_BATCH) -> torch.Tensor:
    """Per steered layer, the relative MSE of the steered run to the prompt-steered one.

    ``sum_t ||A_l^steered(x y') - A_l(x' y')||^2 / sum_t ||A_l(x y') - A_l(x' y')||^2`` over the span
    tokens of all pairs, with the steerer applied at all its layers at ``alpha = labels``.
    Returns ``[n_steered_layers]`` (1 = no better than not steering).
    """
    steerer.check_model(model)
    labels = _labels(labels, len(pairs))
    base, target = prompted_targets(model, pairs, steerer.layers, batch_size)
    err = torch.zeros(len(steerer.layers))
    ref = torch.zeros(len(steerer.layers))
    for idx in _batched(range(len(pairs)), batch_size):
        _, acts, _ = run_steered(model, steerer, [pairs[i] for i in idx], labels[idx], want_acts=True)
        tgt = torch.cat([target[i] for i in idx], dim=1)
        err += (acts.cpu() - tgt).pow(2).sum(dim=(1, 2))
        ref += (torch.cat([base[i] for i in idx], dim=1) - tgt).pow(2).sum(dim=(1, 2))
    return err / ref.clamp_min(1e-12)


def _labels(labels, n: int) -> torch.Tensor:
    if is_number(labels):
        return torch.full((n,), float(labels))
    labels = torch.as_tensor(labels, dtype=torch.float32).reshape(-1)
    if labels.numel() != n:
        raise ValueError(f"{labels.numel()} labels for {n} pairs")
    return labels


#: Steps of a training through the model when the config says none: each step is a forward and a
#: backward pass of the model on a batch (about 10-50 s on 2 cores for the embedded 135M model), so the
#: default finishes in minutes; it starts from the layerwise fit, which does most of the work.
THROUGH_MODEL_DEFAULT_STEPS = 10


class ModelTrainer(Trainer):
    """Trains a steerer through the model on aligned pairs (objective ``"mse"`` or ``"nll"``).

    Args:
        init: the starting steerer (usually the layerwise fit of the same form and rank).
        labels: ``[n_pairs]`` soft labels, the strength of the intervention for each pair.
    """

    default_steps = THROUGH_MODEL_DEFAULT_STEPS
    slow = True

    def __init__(self, info: SteererInfo, model, pairs: Sequence[AlignedPair], labels: torch.Tensor,
                 config: TrainConfig, init: Steerer, objective: str) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
        if not pairs:
            raise ValueError("no pairs to train on (empty data)")
        if init.info.form != info.form or init.rank != info.rank or init.layers != info.layers:
            raise ValueError(f"the starting steerer {init.name} on layers {list(init.layers)} does not match "
                             f"{info.name} on layers {list(info.layers)}")
        self.model, self.pairs, self.labels, self.objective = model, list(pairs), _labels(labels, len(pairs)), objective
        self.train_ids, self.val_ids = split_sequences(range(len(pairs)), config.val_fraction, config.seed)
        self.batch_size = config.batch_size or DEFAULT_MODEL_BATCH
        base, steered = prompted_targets(model, self.pairs, info.layers, self.batch_size)
        self.targets = steered if objective == "mse" else None
        train_base = torch.cat([base[i] for i in self.train_ids], dim=1)
        train_acc = torch.cat([steered[i] - base[i] for i in self.train_ids], dim=1)
        self.norm = train_acc.pow(2).sum(-1).mean(-1).clamp_min(1e-12)  # [L], "no steering" per token
        start = {k: v.detach().float().cpu() for k, v in init.params().items()}
        z_rms = start["z"].pow(2).mean(dim=(1, 2)).sqrt()
        scale = {"z": torch.where(z_rms > 0, z_rms, train_acc.pow(2).mean(dim=(1, 2)).sqrt()).clamp_min(1e-6)[:, None, None]}
        center = train_base.mean(1)
        if info.form == "psr":
            std = train_base.std(1, correction=0).clamp_min(1e-6)
            scale.update(w=(1 / (std * info.d_model**0.5))[:, None, :], b=torch.ones(len(info.layers), 1))
        device = model.device
        scale = {k: v.to(device) for k, v in scale.items()}
        super().__init__(info, {k: v.to(device) for k, v in start.items()}, scale, center.to(device), config)

    def _batches(self) -> Iterator[list[int]]:
        while True:
            order = torch.randperm(len(self.train_ids), generator=self.generator).tolist()
            for i in range(0, len(order), self.batch_size):
                yield [self.train_ids[j] for j in order[i : i + self.batch_size]]

    def _loss(self, idx: list[int]) -> tuple[torch.Tensor, int, int]:
        """(batch loss, tokens it averages over, span tokens) for pairs ``idx``."""
        pairs = [self.pairs[i] for i in idx]
        steerer = self.current()
        lam, acts, logits = run_steered(self.model, steerer, pairs, self.labels[idx],
                                        want_acts=self.objective == "mse", want_logits=self.objective == "nll")
        if self.objective == "mse":
            target = torch.cat([self.targets[i] for i in idx], dim=1).to(acts.device)
            loss = ((acts - target).pow(2).sum(-1).mean(-1) / self.norm.to(acts.device)).mean()
            weight = acts.shape[1]
        else:
            nll = response_token_nll(logits, pairs)
            loss, weight = nll.mean(), nll.numel()
        if self.info.form == "psr" and self.config.reg_weight:
            seq_index = torch.cat([torch.full((p.span_len,), r, dtype=torch.long) for r, p in enumerate(pairs)]).to(lam.device)
            loss = loss + self.config.reg_weight * dead_relu_penalty(lam, seq_index, len(pairs)).mean()
        return loss, weight, lam.shape[1]

    def _train_loss(self, batch: list[int]) -> tuple[torch.Tensor, int]:
        loss, _, n_tokens = self._loss(batch)
        return loss, n_tokens

    def _eval_loss(self) -> torch.Tensor:
        ids = self.val_ids or self.train_ids
        total, count = 0.0, 0
        for idx in _batched(ids, self.batch_size):
            loss, weight, _ = self._loss(idx)
            total, count = total + float(loss) * weight, count + weight
        return torch.tensor([total / count])

    def run(self, steps: int | None = None, callback=None, progress: bool = True) -> Steerer:
        with frozen(self.model), torch.enable_grad():
            return super().run(steps, callback, progress)
