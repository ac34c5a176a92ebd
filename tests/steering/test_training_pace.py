"""Default training lengths that finish in minutes, and a pace report that says how long is left."""

from __future__ import annotations

import pytest
import torch
from tiny_triplets import make_tiny_pairs

from workbench.steering import TrainConfig, TrainProgress, make_trainer
from workbench.steering.joint import THROUGH_MODEL_DEFAULT_STEPS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_progress_reports_pace_and_time_left():
    report = TrainProgress(step=4, train_loss=1.0, val_loss=None, elapsed=8.0, best_val_loss=None, tokens_seen=10,
                           planned_steps=10)
    assert report.seconds_per_step == 2.0 and report.eta_s == 12.0
    assert TrainProgress(1, 1.0, None, 3.0, None, 1).eta_s is None  # no plan, no estimate


def test_default_steps_depend_on_where_training_runs(tiny_model, capsys):
    pairs = make_tiny_pairs(tiny_model)
    layerwise = make_trainer("psr-mse", tiny_model, 1.0, layers=1, pairs=pairs, progress=False)
    assert layerwise.config.steps == 1000
    joint = make_trainer("psr-mse", tiny_model, 1.0, layers=1, pairs=pairs, training="joint",
                         config=TrainConfig(val_fraction=0.0, patience=0), progress=False)
    assert joint.config.steps == THROUGH_MODEL_DEFAULT_STEPS <= 20
    seen: list[TrainProgress] = []
    joint.run(progress=True, callback=lambda p: seen.append(p))
    assert [p.step for p in seen] == list(range(1, THROUGH_MODEL_DEFAULT_STEPS + 1))
    assert all(p.planned_steps == THROUGH_MODEL_DEFAULT_STEPS for p in seen)
    assert seen[-1].eta_s == 0 and seen[0].eta_s > 0
    assert "through the model" in capsys.readouterr().out  # the pace is announced after the first step
    assert not any(p.grad is not None for p in tiny_model.bridge.parameters())
    assert torch.is_grad_enabled()
