"""Shared fixtures: every test starts from seeded RNGs; models are loaded once per session."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_model():
    """A 3-layer random-init Llama with a ChatML tokenizer, through the same bridge path."""
    from workbench.core.models import load_model

    return load_model("tiny-random-llama", n_layers=3, seed=0)


@pytest.fixture(scope="session")
def embedded_model():
    """The embedded SmolLM2-135M-Instruct (offline; builds the float32 cache on first use)."""
    from workbench.core.models import load_model

    return load_model()


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors run faster on one thread, and on a shared 2-core box two OpenMP threads spin
    against other jobs (100x slower); the previous setting is restored after the module. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_pairs(tiny_model):
    """Three aligned triplets of different lengths on the tiny model."""
    from tiny_triplets import make_tiny_pairs

    return make_tiny_pairs(tiny_model)
