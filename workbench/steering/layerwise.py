"""Fits on stored deltas, each layer on its own (S- methods on D_acc, A- methods on D_loc).

- Const-DiM (CAA): ``z_l = mean_t D[l, t]``, closed form.
- Const-MSE: ``z_l = argmin sum_t ||alpha_t z - D[l, t]||^2 = sum_t alpha_t D[l, t] / sum_t alpha_t^2``,
  the exact least-squares solution of the MSE objective.
- PSR-MSE (rank r): ``min relMSE_l + reg_weight * max(0, 1 - sum_t lambda_t)``, where
  ``relMSE_l = mean_t ||alpha_t sum_k lambda_k(a_t) z_lk - D[l, t]||^2 / mean_t ||D[l, t]||^2``
  (1 = no better than not steering, 0 = the prompt-steered activations exactly). All layers are
  trained at once on stacked tensors; they are independent problems, and each keeps its own best
  validation parameters.

PSR starts from ``w = 0, b = 1`` (every lambda 1) with ``z_lk`` along the top r principal
directions of the deltas, scaled to their mean projection: a constant steerer, which training
then makes token-dependent.
"""

from __future__ import annotations

from typing import Iterator

import torch

from workbench.steering.data import TokenData, split_sequences
from workbench.steering.steerer import Steerer, SteererInfo, make_steerer
from workbench.steering.train import TrainConfig, Trainer, dead_relu_penalty, regroup


def fit_dim(data: TokenData) -> torch.Tensor:
    """Const-DiM directions: the mean delta over tokens and samples. Returns ``[layers, 1, d]``."""
    return data.delta.float().mean(dim=1)[:, None, :]


def fit_const_mse(data: TokenData) -> torch.Tensor:
    """Const-MSE directions, least squares under the soft labels. Returns ``[layers, 1, d]``."""
    alpha = data.alpha.float()
    denom = float((alpha**2).sum())
    if denom == 0:
        raise ValueError("every soft label is 0: a constant vector scaled by alpha cannot be fitted")
    return (torch.einsum("t,ltd->ld", alpha, data.delta.float()) / denom)[:, None, :]


def psr_init(data: TokenData, rank: int) -> dict[str, torch.Tensor]:
    """Starting PSR parameters: ``w = 0``, ``b = 1``, ``z`` along the top principal directions."""
    n_layers, _, d = data.acts.shape
    if rank > d:
        raise ValueError(f"rank {rank} exceeds d_model {d}")
    z = torch.zeros(n_layers, rank, d)
    mean_alpha = float(data.alpha.mean().clamp_min(1e-3))
    for i in range(n_layers):
        delta = data.delta[i].double()
        _, vecs = torch.linalg.eigh(delta.T @ delta)
        top = vecs[:, -rank:].flip(-1).T  # [rank, d], largest first
        proj = delta @ top.T  # [tokens, rank]
        sign = torch.where(proj.sum(0) < 0, -1.0, 1.0).to(top.dtype)
        top, proj = top * sign[:, None], proj * sign
        z[i] = (top * proj.clamp_min(0).mean(0)[:, None] / mean_alpha).float()
    return {"z": z, "w": torch.zeros(n_layers, rank, d), "b": torch.ones(n_layers, rank)}


def psr_scales(acts: torch.Tensor, delta: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Preconditioning (see :mod:`workbench.steering.train`) from ``acts``, ``delta [layers, tokens, d]``.

    Returns ``(scale, center)``: scales of ``z [L, 1, 1]``, ``w [L, 1, d]``, ``b [L, 1]`` and the
    mean activation ``center [L, d]``.
    """
    acts = acts.float()
    d = acts.shape[-1]
    center = acts.mean(1)
    std = acts.std(1, correction=0).clamp_min(1e-6)  # [L, d]
    delta_rms = delta.float().pow(2).mean(dim=(1, 2)).sqrt().clamp_min(1e-6)  # [L]
    scale = {"z": delta_rms[:, None, None], "w": (1 / (std * d**0.5))[:, None, :], "b": torch.ones(acts.shape[0], 1)}
    return scale, center


def relative_mse(steerer: Steerer, data: TokenData) -> torch.Tensor:
    """Per-layer ``mean_t ||alpha_t delta(a_t) - D_t||^2 / mean_t ||D_t||^2`` of a steerer. ``[layers]``."""
    out = []
    for i, layer in enumerate(data.layers):
        pred = data.alpha[:, None] * steerer.delta(layer, data.acts[i].float())
        err = (pred - data.delta[i].float()).pow(2).sum(-1).mean()
        out.append(err / data.delta[i].float().pow(2).sum(-1).mean().clamp_min(1e-12))
    return torch.stack(out)


class LayerwisePSRTrainer(Trainer):
    """PSR-MSE of rank r on :class:`TokenData`, every layer at once (independent problems)."""

    def __init__(self, info: SteererInfo, data: TokenData, config: TrainConfig,
                 init: Steerer | None = None) -> None:
        train_ids, val_ids = split_sequences(data.sequences, config.val_fraction, config.seed)
        self.train_data = data.select(train_ids)
        self.val_data = data.select(val_ids) if val_ids else self.train_data
        self.train_ids = train_ids
        scale, center = psr_scales(self.train_data.acts, self.train_data.delta)
        start = psr_init(self.train_data, info.rank) if init is None else {k: v.detach().float() for k, v in init.params().items()}
        # what "no steering" costs per token and layer, mean ||D||^2, on each split
        self.sq_train = self.train_data.delta.float().pow(2).sum(-1).mean(-1)
        self.sq_val = self.val_data.delta.float().pow(2).sum(-1).mean(-1)
        super().__init__(info, start, scale, center, config, n_groups=len(data.layers))

    def _batches(self) -> Iterator[TokenData]:
        if self.config.batch_size is None or self.config.batch_size >= len(self.train_ids):
            while True:
                yield self.train_data
        while True:
            order = torch.randperm(len(self.train_ids), generator=self.generator).tolist()
            for i in range(0, len(order), self.config.batch_size):
                yield self.train_data.select([self.train_ids[j] for j in order[i : i + self.config.batch_size]])

    def _losses(self, data: TokenData, sq: torch.Tensor) -> torch.Tensor:
        """``[layers]`` relative MSE plus the weighted dead-ReLU penalty; ``sq [layers]`` = mean ``||D||^2``.

        ``||alpha sum_k lambda_k z_k - D||^2 = alpha^2 lambda.G.lambda - 2 alpha lambda.(D z) + ||D||^2`` with
        ``G = z z^T``: two matmuls over the big tensors instead of a full ``[layers, tokens, d]`` residual.
        """
        p = self.params()
        acts, delta = data.acts.float(), data.delta.float()
        lam = torch.relu(torch.einsum("ltd,lrd->ltr", acts, p["w"]) + p["b"][:, None, :])  # [L, T, r]
        dz = torch.einsum("ltd,lrd->ltr", delta, p["z"])  # [L, T, r]
        gram = torch.einsum("lrd,lsd->lrs", p["z"], p["z"])  # [L, r, r]
        alpha = data.alpha[None, :]
        quad = torch.einsum("ltr,lrs,lts->lt", lam, gram, lam)
        err = alpha**2 * quad - 2 * alpha * (lam * dz).sum(-1)  # [L, T], up to the constant ||D||^2
        mse = (err.mean(-1) + sq) / sq.clamp_min(1e-12)
        seq_index, n_seq = regroup(data.seq)
        return mse + self.config.reg_weight * dead_relu_penalty(lam, seq_index, n_seq)

    def _train_loss(self, batch: TokenData) -> tuple[torch.Tensor, int]:
        sq = self.sq_train if batch is self.train_data else batch.delta.float().pow(2).sum(-1).mean(-1)
        return self._losses(batch, sq).sum(), batch.n_tokens

    def _eval_loss(self) -> torch.Tensor:
        return self._losses(self.val_data, self.sq_val)


class ClosedForm:
    """The trainer interface for closed-form fits (Const-DiM, Const-MSE): ``run()`` just returns."""

    def __init__(self, steerer: Steerer) -> None:
        self.steerer = steerer
        self.step = 0

    def run(self, steps: int | None = None, callback=None, progress: bool = True) -> Steerer:
        return self.steerer

    def result(self) -> Steerer:
        return self.steerer

    def stop(self) -> None:
        pass


def closed_form(info: SteererInfo, data: TokenData) -> Steerer:
    """Const-DiM or Const-MSE from the data."""
    z = fit_dim(data) if info.method == "const-dim" else fit_const_mse(data)
    return make_steerer(info, z)
