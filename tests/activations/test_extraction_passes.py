"""What the extraction passes do not compute: no unembedding, no blocks above the last recorded layer."""

import pytest
import torch

from workbench.activations import extraction
from workbench.activations.extraction import extract_batch

pytestmark = pytest.mark.usefixtures("one_thread")


def _count_calls(module, counter, key):
    """Count how often ``module`` starts a forward."""
    return module.register_forward_pre_hook(lambda *a: counter.__setitem__(key, counter.get(key, 0) + 1))


def test_no_pass_runs_the_unembedding_or_the_blocks_above_the_last_layer(tiny_model, tiny_pairs):
    hf = tiny_model.bridge.original_model
    calls: dict = {}
    handles = [_count_calls(hf.lm_head, calls, "lm_head")] + [
        _count_calls(block, calls, i) for i, block in enumerate(hf.model.layers)]
    try:
        extract_batch(tiny_model, tiny_pairs, layers=[0, 1])
        assert calls == {0: 3, 1: 3}  # three passes; neither block 2 nor the head ran
        calls.clear()
        extract_batch(tiny_model, tiny_pairs, local=False)
        assert calls == {0: 2, 1: 2, 2: 2}
    finally:
        for h in handles:
            h.remove()


def test_the_short_passes_give_what_full_passes_give(tiny_model, tiny_pairs, monkeypatch):
    short = extract_batch(tiny_model, tiny_pairs, layers=[0, 1])
    monkeypatch.setattr(extraction, "_decoder", lambda model: None)  # the whole bridge forward, head included
    full = extract_batch(tiny_model, tiny_pairs, layers=[0, 1])
    for field in ("base", "acc", "loc"):
        assert torch.equal(getattr(short, field), getattr(full, field))
