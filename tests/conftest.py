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


@pytest.fixture(scope="session")
def gemma_model():
    """Gemma-3-270M, the base model, with the ``gemma3`` template (offline: the hub is switched off
    while it loads; the first use on a machine builds its float32 cache, ~2-4 minutes on 2 cores)."""
    import os

    import huggingface_hub.constants

    from workbench.core.models import load_model

    before = os.environ.get("HF_HUB_OFFLINE"), huggingface_hub.constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"], huggingface_hub.constants.HF_HUB_OFFLINE = "1", True
    try:
        return load_model("gemma-3-270m")
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = before[1]
        if before[0] is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = before[0]


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
