"""The training loop shared by every iterative steerer fit: Adam, validation, early stopping,
progress (callback or tqdm.auto), stop and resume.

A :class:`Trainer` owns raw parameters and an optimizer. Steerer parameters are ``raw * scale``
with fixed scales taken from the data: the probe reads centred activations standardised per
dimension (``w = w_raw / (std_i sqrt(d))``, ``b = b_raw - mean . w``) and the directions are in
units of the target delta's RMS. With Adam every raw parameter moves by about ``lr`` per step, so
one learning rate suits any model, whatever the size of (or outlier dimensions in) its residual
stream. Subclasses provide the
batches and the loss; :meth:`Trainer.run` can be called again to continue from the current
parameters and optimizer state, and ``run(a) + run(b)`` gives bit-identically what ``run(a + b)``
gives.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from workbench.core.checks import check_field, check_int, check_number
from workbench.steering.steerer import Steerer, SteererInfo, make_steerer


@dataclass(frozen=True)
class TrainConfig:
    """How to train a steerer.

    Attributes:
        steps: optimizer steps in all (a later ``run()`` continues up to this; ``run(n)`` adds n);
            ``None``: 1000 for fits on stored deltas (well under a second each on a CPU), and
            a few for training through the model (each step runs the
            model forward and backward: tens of seconds on 2 cores for the embedded model).
        lr: Adam learning rate, in natural units per step (see the module docstring).
        batch_size: sequences per step; ``None``: every training sequence for layerwise fits,
            8 for training through the model.
        val_fraction: share of sequences held out for validation (split by sequence, seeded).
        eval_every: steps between validation losses.
        patience: validations without improvement before stopping early (0: never stop early).
        reg_weight: weight of the anti-dead-ReLU term ``max(0, 1 - sum_t lambda_t)`` per sequence
            and rank component.
        seed: seeds the split and the batch order; same data and seed give the same steerer.
    """

    steps: int | None = None
    lr: float = 1e-2
    batch_size: int | None = None
    val_fraction: float = 0.2
    eval_every: int = 10
    patience: int = 20
    reg_weight: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        check_field(self, "steps", check_int, minimum=0, optional=True)
        check_field(self, "lr", check_number, above=0)
        check_field(self, "batch_size", check_int, minimum=1, optional=True)
        check_field(self, "val_fraction", check_number, minimum=0, below=1)
        check_field(self, "eval_every", check_int, minimum=1)
        check_field(self, "patience", check_int, minimum=0)
        check_field(self, "reg_weight", check_number, minimum=0)
        check_field(self, "seed", check_int)


@dataclass(frozen=True)
class TrainProgress:
    """One step's report to the callback (and the tqdm bar).

    ``val_loss`` is set on validation steps and ``None`` otherwise; with no validation sequences
    it is the loss over all training sequences. ``elapsed`` counts seconds spent training, over
    every ``run()`` call.
    """

    step: int
    train_loss: float
    val_loss: float | None
    elapsed: float
    best_val_loss: float | None
    tokens_seen: int
    planned_steps: int | None = None

    @property
    def seconds_per_step(self) -> float:
        """Mean training time per step so far."""
        return self.elapsed / self.step if self.step else float("nan")

    @property
    def eta_s(self) -> float | None:
        """Seconds left to ``planned_steps`` at the mean pace so far (None when no plan is known)."""
        if self.planned_steps is None or not self.step:
            return None
        return max(0, self.planned_steps - self.step) * self.seconds_per_step


Callback = Callable[[TrainProgress], "bool | None"]


def dead_relu_penalty(lam: torch.Tensor, seq_index: torch.Tensor, n_seq: int) -> torch.Tensor:
    """Mean over sequences and components of ``max(0, 1 - sum_t lambda_t)``.

    Args:
        lam: ``[..., tokens, rank]`` per-token lambdas.
        seq_index: ``[tokens]`` long, each token's sequence as an index in ``0..n_seq-1``.
    Returns:
        ``[...]`` penalty per leading index (e.g. per layer).
    """
    sums = lam.new_zeros(lam.shape[:-2] + (n_seq, lam.shape[-1]))
    sums = sums.index_add(lam.ndim - 2, seq_index, lam)
    return torch.relu(1 - sums).mean(dim=(-1, -2))


def regroup(seq: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Map arbitrary sequence ids ``[tokens]`` to indices ``0..n-1``; returns ``(index, n)``."""
    ids, index = torch.unique(seq, return_inverse=True)
    return index, len(ids)


class Trainer:
    """The loop: subclasses set ``self.info`` and define :meth:`_batches`, :meth:`_train_loss`,
    :meth:`_eval_loss` and the parameters (``raw`` and ``scale`` dicts, stacked over layers)."""

    #: Steps when ``config.steps`` is None.
    default_steps: int = 1000

    def __init__(self, info: SteererInfo, start: dict[str, torch.Tensor], scale: dict[str, torch.Tensor],
                 center: torch.Tensor, config: TrainConfig, n_groups: int = 1) -> None:
        self.info = info
        self.config = config if config.steps is not None else replace(config, steps=self.default_steps)
        self.scale = scale
        self.center = center  # [layers, d_model], the mean activation
        self.raw = {k: v.detach().clone().requires_grad_(True) for k, v in self.to_raw(start).items()}
        self.optimizer = torch.optim.Adam(list(self.raw.values()), lr=config.lr)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.elapsed = 0.0
        self.tokens_seen = 0
        self.history: list[dict] = []
        self.n_groups = n_groups  # validation losses tracked separately (layers of a layerwise fit)
        self.best_loss: torch.Tensor | None = None
        self.best_raw = {k: v.detach().clone() for k, v in self.raw.items()}
        self.best_step = 0
        self._bad_evals = 0
        self._stop = False
        self.stopped_because = "not started"
        self._batch_iter: Iterator | None = None

    # -- to be provided ------------------------------------------------------------------------

    #: Whether a step is slow enough to announce its pace after the first one (training through the model).
    slow: bool = False

    def _batches(self) -> Iterator:
        raise NotImplementedError

    def _train_loss(self, batch) -> tuple[torch.Tensor, int]:
        """(scalar loss to minimise, tokens in the batch)."""
        raise NotImplementedError

    def _eval_loss(self) -> torch.Tensor:
        """``[n_groups]`` validation losses (no grad)."""
        raise NotImplementedError

    def _backward(self, batch) -> tuple[torch.Tensor, int]:
        """Gradients of one step's loss into the raw parameters; returns (detached loss, tokens).

        The default backpropagates :meth:`_train_loss`; a subclass whose batch is too large for
        one graph (data streamed from disk) accumulates gradients chunk by chunk instead.
        """
        loss, n_tokens = self._train_loss(batch)
        self._check_finite(loss)
        loss.backward()
        return loss.detach(), n_tokens

    def _check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {float(loss)} at step {self.step + 1}; lower lr")

    # -- parameters ----------------------------------------------------------------------------

    def params(self, raw: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Steerer parameters from raw ones: ``raw * scale``, and for PSR ``b = b_raw - center . w``
        (the probe sees centred, per-dimension standardised activations)."""
        raw = self.raw if raw is None else raw
        out = {k: v * self.scale[k] for k, v in raw.items()}
        if "b" in out:
            out["b"] = out["b"] - torch.einsum("lrd,ld->lr", out["w"], self.center)
        return out

    def to_raw(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The inverse of :meth:`params`."""
        raw = {k: v.detach().float() / self.scale[k] for k, v in params.items()}
        if "b" in raw:
            raw["b"] = (params["b"].detach().float() + torch.einsum("lrd,ld->lr", params["w"].detach().float(), self.center))
        return raw

    def current(self) -> Steerer:
        """The steerer with the live (differentiable) parameters."""
        return make_steerer(self.info, **self.params())

    def result(self) -> Steerer:
        """The steerer with the best parameters seen at validation (detached, CPU, float32)."""
        history = {
            "steps": self.step, "best_step": self.best_step, "stopped": self.stopped_because,
            "best_val_loss": None if self.best_loss is None else float(self.best_loss.sum()),
            "seconds": round(self.elapsed, 3), "tokens_seen": self.tokens_seen,
        }
        info = SteererInfo(**{**asdict(self.info), "history": {**self.info.history, **history}})
        return make_steerer(info, **self.params(self.best_raw)).detached()

    def stop(self) -> None:
        """Ask a running :meth:`run` to stop after the current step (e.g. from a widget button)."""
        self._stop = True

    # -- the loop ------------------------------------------------------------------------------

    def _next_batch(self):
        if self._batch_iter is None:
            self._batch_iter = self._batches()
        return next(self._batch_iter)

    def _validate(self) -> float:
        with torch.no_grad():
            loss = self._eval_loss().detach().float().cpu().reshape(-1)
        if self.best_loss is None:
            improved = torch.ones_like(loss, dtype=torch.bool)
        else:
            improved = loss < self.best_loss
        if bool(improved.any()):
            self._bad_evals = 0
            self.best_step = self.step
            if self.best_loss is None:
                self.best_loss = loss.clone()
            self.best_loss = torch.where(improved, loss, self.best_loss)
            for k, v in self.raw.items():
                if self.n_groups == 1:
                    self.best_raw[k] = v.detach().clone()
                else:  # separate problems stacked along dim 0: keep each one's best
                    keep = improved.to(v.device).view((-1,) + (1,) * (v.ndim - 1))
                    self.best_raw[k] = torch.where(keep, v.detach(), self.best_raw[k])
        else:
            self._bad_evals += 1
        return float(loss.sum())

    def run(self, steps: int | None = None, callback: Callback | None = None, progress: bool = True) -> Steerer:
        """Train for ``steps`` more steps (default: up to ``config.steps``); returns :meth:`result`.

        Stops early when validation stops improving (``config.patience``), when ``callback``
        returns True, or when :meth:`stop` is called; a stopped run validates its last step (when
        that step was not a validation step), so that what was trained before the stop can be
        the result. Calling ``run`` again continues.
        """
        budget = max(0, self.config.steps - self.step) if steps is None else int(steps)
        if budget < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self._stop = False
        if self.best_loss is None and self.step == 0:
            self._validate()  # the starting point is a candidate too
        bar = tqdm(total=budget, desc=f"training {self.info.name}", disable=not progress or callback is not None, leave=False)
        done = self.step
        self.stopped_because = "steps done"
        try:
            for _ in range(budget):
                t0 = time.perf_counter()
                self.optimizer.zero_grad(set_to_none=True)
                loss, n_tokens = self._backward(self._next_batch())
                self.optimizer.step()
                self.step += 1
                self.tokens_seen += n_tokens
                val = None
                if self.step % self.config.eval_every == 0:
                    val = self._validate()
                self.elapsed += time.perf_counter() - t0
                report = TrainProgress(self.step, float(loss), val, self.elapsed,
                                       None if self.best_loss is None else float(self.best_loss.sum()), self.tokens_seen,
                                       planned_steps=done + budget)
                if done == self.step - 1 and progress and self.slow:
                    tqdm.write(f"training {self.info.name} through the model: {report.seconds_per_step:.1f} s per step, "
                               f"about {report.eta_s / 60:.1f} min for the {budget - 1} steps left")
                self.history.append({"step": report.step, "train_loss": report.train_loss, "val_loss": val,
                                     "elapsed": report.elapsed})
                bar.update(1)
                if val is not None:
                    bar.set_postfix(train=f"{report.train_loss:.4g}", val=f"{val:.4g}")
                if callback is not None and callback(report) or self._stop:
                    self.stopped_because = "stop flag" if self._stop else "callback"
                    if val is None:
                        # the steps since the last validation are a candidate too: without this, a
                        # run stopped between validations returns parameters from before them
                        # (after 2 steps of a joint fit, its starting point)
                        bad = self._bad_evals
                        self._validate()
                        self._bad_evals = min(self._bad_evals, bad)  # a stop is not a failed evaluation
                    break
                if self.config.patience and val is not None and self._bad_evals >= self.config.patience:
                    self.stopped_because = "early stopping"
                    break
        finally:
            bar.close()
        return self.result()
