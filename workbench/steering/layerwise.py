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

Every fit takes the data in memory (:class:`~workbench.steering.data.TokenData`) or streamed from a
store (:class:`~workbench.steering.data.StoreTokens`). Streamed, the statistics (scales, start,
closed forms) are sums over shards in float64, a full-batch step accumulates the gradient shard by
shard (the same loss: relative MSE over all training tokens, penalty over all training sequences),
and mini-batches (``batch_size``) are drawn epoch by epoch: the shards in a seeded order, the
sequences of each shard in a seeded order, batches filled across shard boundaries. With one shard
that is exactly the in-memory order. Peak memory is one shard plus one batch.
"""

from __future__ import annotations

from typing import Iterator

import torch

from workbench.steering.data import StoreTokens, TokenData, concat_tokens, split_sequences
from workbench.steering.steerer import Steerer, SteererInfo, make_steerer
from workbench.steering.train import TrainConfig, Trainer, dead_relu_penalty, regroup


def fit_dim(data: TokenData | StoreTokens) -> torch.Tensor:
    """Const-DiM directions: the mean delta over tokens and samples. Returns ``[layers, 1, d]``."""
    if isinstance(data, StoreTokens):
        total, n = 0, 0
        for chunk in data.chunks(delta_only=True):
            total, n = total + chunk.delta.double().sum(1), n + chunk.n_tokens
        return (total / n).float()[:, None, :]
    return data.delta.float().mean(dim=1)[:, None, :]


def fit_const_mse(data: TokenData | StoreTokens) -> torch.Tensor:
    """Const-MSE directions, least squares under the soft labels. Returns ``[layers, 1, d]``."""
    if isinstance(data, StoreTokens):
        num, denom = 0, 0.0
        for chunk in data.chunks(delta_only=True):
            num = num + torch.einsum("t,ltd->ld", chunk.alpha.double(), chunk.delta.double())
            denom += float((chunk.alpha.double() ** 2).sum())
    else:
        alpha = data.alpha.float()
        denom = float((alpha**2).sum())
        num = torch.einsum("t,ltd->ld", alpha, data.delta.float())
    if denom == 0:
        raise ValueError("every soft label is 0: a constant vector scaled by alpha cannot be fitted")
    return (num / denom).float()[:, None, :]


def _top_directions(gram: torch.Tensor, rank: int) -> torch.Tensor:
    """``[rank, d]`` eigenvectors of a ``[d, d]`` Gram matrix, largest eigenvalue first."""
    _, vecs = torch.linalg.eigh(gram)
    return vecs[:, -rank:].flip(-1).T


def psr_init(data: TokenData | StoreTokens, rank: int) -> dict[str, torch.Tensor]:
    """Starting PSR parameters: ``w = 0``, ``b = 1``, ``z`` along the top principal directions."""
    n_layers, d = len(data.layers), data.d_model
    if rank > d:
        raise ValueError(f"rank {rank} exceeds d_model {d}")
    z = torch.zeros(n_layers, rank, d)
    if isinstance(data, StoreTokens):
        # two passes per layer over that layer's deltas: the Gram matrix, then the projections
        alpha_sum, n = 0.0, 0
        for i, layer in enumerate(data.layers):
            gram = torch.zeros(d, d, dtype=torch.float64)
            for chunk in data.chunks([layer], delta_only=True):
                delta = chunk.delta[0].double()
                gram += delta.T @ delta
                if i == 0:
                    alpha_sum, n = alpha_sum + float(chunk.alpha.double().sum()), n + chunk.n_tokens
            top = _top_directions(gram, rank)
            total, pos, neg = 0, 0, 0
            for chunk in data.chunks([layer], delta_only=True):
                proj = chunk.delta[0].double() @ top.T
                total, pos, neg = total + proj.sum(0), pos + proj.clamp_min(0).sum(0), neg + (-proj).clamp_min(0).sum(0)
            sign = torch.where(total < 0, -1.0, 1.0).to(top.dtype)
            mean_pos = torch.where(total < 0, neg, pos) / n
            z[i] = ((top * sign[:, None]) * mean_pos[:, None] / max(alpha_sum / n, 1e-3)).float()
        return {"z": z, "w": torch.zeros(n_layers, rank, d), "b": torch.ones(n_layers, rank)}
    mean_alpha = float(data.alpha.mean().clamp_min(1e-3))
    for i in range(n_layers):
        delta = data.delta[i].double()
        top = _top_directions(delta.T @ delta, rank)  # [rank, d], largest first
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


def streamed_scales(data: StoreTokens) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, int]:
    """:func:`psr_scales` of streamed data, from float64 sums over its chunks.

    Returns ``(scale, center, sq, n_tokens)`` with ``sq [layers]`` the mean ``||D||^2`` per token.
    """
    n, s1, s2, dsq = 0, 0, 0, 0
    for chunk in data.chunks():
        acts = chunk.acts.double()
        n += chunk.n_tokens
        s1, s2 = s1 + acts.sum(1), s2 + acts.pow(2).sum(1)
        dsq = dsq + chunk.delta.double().pow(2).sum(dim=(1, 2))
    d = data.d_model
    center = s1 / n
    std = (s2 / n - center**2).clamp_min(0).sqrt().float().clamp_min(1e-6)
    delta_rms = (dsq / (n * d)).sqrt().float().clamp_min(1e-6)
    scale = {"z": delta_rms[:, None, None], "w": (1 / (std * d**0.5))[:, None, :], "b": torch.ones(len(data.layers), 1)}
    return scale, center.float(), (dsq / n).float(), n


def relative_mse(steerer: Steerer, data: TokenData | StoreTokens) -> torch.Tensor:
    """Per-layer ``mean_t ||alpha_t delta(a_t) - D_t||^2 / mean_t ||D_t||^2`` of a steerer. ``[layers]``."""
    if isinstance(data, StoreTokens):
        err, sq = 0, 0
        for chunk in data.chunks():
            parts = [_squared_errors(steerer, chunk, i, layer) for i, layer in enumerate(chunk.layers)]
            err = err + torch.stack([e for e, _ in parts]).double()
            sq = sq + torch.stack([q for _, q in parts]).double()
        return (err / sq.clamp_min(1e-12)).float()
    out = []
    for i, layer in enumerate(data.layers):
        pred = data.alpha[:, None] * steerer.delta(layer, data.acts[i].float())
        err = (pred - data.delta[i].float()).pow(2).sum(-1).mean()
        out.append(err / data.delta[i].float().pow(2).sum(-1).mean().clamp_min(1e-12))
    return torch.stack(out)


def _squared_errors(steerer: Steerer, data: TokenData, i: int, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums over tokens of ``||alpha delta(a) - D||^2`` and ``||D||^2`` at one layer."""
    pred = data.alpha[:, None] * steerer.delta(layer, data.acts[i].float())
    return (pred - data.delta[i].float()).pow(2).sum(), data.delta[i].float().pow(2).sum()


class LayerwisePSRTrainer(Trainer):
    """PSR-MSE of rank r on :class:`TokenData` or streamed :class:`StoreTokens`, every layer at once
    (independent problems)."""

    def __init__(self, info: SteererInfo, data: TokenData | StoreTokens, config: TrainConfig,
                 init: Steerer | None = None) -> None:
        train_ids, val_ids = split_sequences(data.sequences, config.val_fraction, config.seed)
        self.streaming = isinstance(data, StoreTokens)
        self.train_data = data.select(train_ids)
        self.val_data = data.select(val_ids) if val_ids else self.train_data
        self.train_ids = train_ids
        if self.streaming:
            scale, center, self.sq_train, self.n_train_tokens = streamed_scales(self.train_data)
            if self.val_data is self.train_data:
                self.sq_val, self.n_val_tokens = self.sq_train, self.n_train_tokens
            else:
                self.sq_val, self.n_val_tokens = self._mean_sq(self.val_data)
        else:
            scale, center = psr_scales(self.train_data.acts, self.train_data.delta)
            # what "no steering" costs per token and layer, mean ||D||^2, on each split
            self.sq_train = self.train_data.delta.float().pow(2).sum(-1).mean(-1)
            self.sq_val = self.val_data.delta.float().pow(2).sum(-1).mean(-1)
        start = psr_init(self.train_data, info.rank) if init is None else {k: v.detach().float() for k, v in init.params().items()}
        super().__init__(info, start, scale, center, config, n_groups=len(data.layers))

    @staticmethod
    def _mean_sq(data: StoreTokens) -> tuple[torch.Tensor, int]:
        total, n = 0, 0
        for chunk in data.chunks(delta_only=True):
            total, n = total + chunk.delta.double().pow(2).sum(dim=(1, 2)), n + chunk.n_tokens
        return (total / n).float(), n

    def _batches(self) -> Iterator[TokenData | StoreTokens]:
        if self.config.batch_size is None or self.config.batch_size >= len(self.train_ids):
            while True:
                yield self.train_data
        if not self.streaming:
            while True:
                order = torch.randperm(len(self.train_ids), generator=self.generator).tolist()
                for i in range(0, len(order), self.config.batch_size):
                    yield self.train_data.select([self.train_ids[j] for j in order[i : i + self.config.batch_size]])
        size = self.config.batch_size
        while True:  # one epoch: shards in a seeded order, each shard's sequences in a seeded order
            n_chunks = self.train_data.n_chunks
            shards = torch.randperm(n_chunks, generator=self.generator).tolist() if n_chunks > 1 else [0]
            pending_ids: list[int] = []
            pending: list[TokenData] = []
            for c in shards:
                chunk = self.train_data.chunk(c)
                ids = chunk.sequences
                pending_ids += [ids[j] for j in torch.randperm(len(ids), generator=self.generator).tolist()]
                pending.append(chunk)
                while len(pending_ids) >= size:
                    pool = concat_tokens(pending)
                    take, pending_ids = pending_ids[:size], pending_ids[size:]
                    yield pool.select(take)
                    pending = [pool.select(pending_ids)] if pending_ids else []
            if pending_ids:
                yield concat_tokens(pending).select(pending_ids)

    def _terms(self, data: TokenData, sq: torch.Tensor, n_tokens: int | None = None, n_seq: int | None = None) -> torch.Tensor:
        """``[layers]`` relative MSE plus the weighted dead-ReLU penalty; ``sq [layers]`` = mean ``||D||^2``.

        ``||alpha sum_k lambda_k z_k - D||^2 = alpha^2 lambda.G.lambda - 2 alpha lambda.(D z) + ||D||^2`` with
        ``G = z z^T``: two matmuls over the big tensors instead of a full ``[layers, tokens, d]`` residual.

        With ``n_tokens`` and ``n_seq`` (the totals of the data ``data`` is one chunk of), the
        chunk's share of the loss without the constant ``||D||^2`` term: summed over the chunks, plus
        ``sq / sq``, it is the loss of all the data.
        """
        p = self.params()
        acts, delta = data.acts.float(), data.delta.float()
        lam = torch.relu(torch.einsum("ltd,lrd->ltr", acts, p["w"]) + p["b"][:, None, :])  # [L, T, r]
        dz = torch.einsum("ltd,lrd->ltr", delta, p["z"])  # [L, T, r]
        gram = torch.einsum("lrd,lsd->lrs", p["z"], p["z"])  # [L, r, r]
        alpha = data.alpha[None, :]
        quad = torch.einsum("ltr,lrs,lts->lt", lam, gram, lam)
        err = alpha**2 * quad - 2 * alpha * (lam * dz).sum(-1)  # [L, T], up to the constant ||D||^2
        seq_index, n_local = regroup(data.seq)
        if n_tokens is None:
            mse = (err.mean(-1) + sq) / sq.clamp_min(1e-12)
            return mse + self.config.reg_weight * dead_relu_penalty(lam, seq_index, n_local)
        sums = lam.new_zeros(lam.shape[0], n_local, lam.shape[-1]).index_add(1, seq_index, lam)
        penalty = torch.relu(1 - sums).sum(dim=(-1, -2)) / (n_seq * lam.shape[-1])
        return err.sum(-1) / n_tokens / sq.clamp_min(1e-12) + self.config.reg_weight * penalty

    def _losses(self, data: TokenData, sq: torch.Tensor) -> torch.Tensor:
        """``[layers]`` losses of data held in memory (see :meth:`_terms`)."""
        return self._terms(data, sq)

    def _streamed(self, data: StoreTokens, sq: torch.Tensor, n_tokens: int, backward: bool) -> tuple[torch.Tensor, int]:
        """``[layers]`` loss of all streamed ``data``, chunk by chunk (backpropagating each when asked)."""
        total = sq / sq.clamp_min(1e-12)
        n_seq = len(data.sequences)
        for chunk in data.chunks():
            terms = self._terms(chunk, sq, n_tokens, n_seq)
            if backward:
                self._check_finite(terms.sum())
                terms.sum().backward()
            total = total + terms.detach()
        return total, n_tokens

    def _train_loss(self, batch: TokenData) -> tuple[torch.Tensor, int]:
        sq = self.sq_train if batch is self.train_data else batch.delta.float().pow(2).sum(-1).mean(-1)
        return self._losses(batch, sq).sum(), batch.n_tokens

    def _backward(self, batch) -> tuple[torch.Tensor, int]:
        if isinstance(batch, StoreTokens):
            losses, n_tokens = self._streamed(batch, self.sq_train, self.n_train_tokens, backward=True)
            return losses.sum(), n_tokens
        return super()._backward(batch)

    def _eval_loss(self) -> torch.Tensor:
        if self.streaming:
            return self._streamed(self.val_data, self.sq_val, self.n_val_tokens, backward=False)[0]
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


def closed_form(info: SteererInfo, data: TokenData | StoreTokens) -> Steerer:
    """Const-DiM or Const-MSE from the data."""
    z = fit_dim(data) if info.method == "const-dim" else fit_const_mse(data)
    return make_steerer(info, z)
