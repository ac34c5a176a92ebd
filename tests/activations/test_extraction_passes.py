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
    # on the Hugging Face modules themselves, which run whether or not the bridge's wrapping does
    handles = [_count_calls(hf.lm_head.original_component, calls, "lm_head")] + [
        _count_calls(block.original_component, calls, i) for i, block in enumerate(hf.model.layers)]
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


def test_the_patched_pass_reuses_the_base_pass_on_the_prompt(tiny_model, tiny_pairs, monkeypatch):
    widths = []
    block = tiny_model.bridge.original_model.model.layers[0].original_component
    handle = block.register_forward_pre_hook(lambda module, args, kwargs: widths.append(
        (args[0] if args else kwargs["hidden_states"]).shape[1]), with_kwargs=True)
    try:
        reused = extract_batch(tiny_model, tiny_pairs)
    finally:
        handle.remove()
    base_width = max(len(p.base_ids) for p in tiny_pairs)
    past = min(p.base_start for p in tiny_pairs)
    assert past > 0
    assert widths == [max(len(p.steered_ids) for p in tiny_pairs), base_width, base_width - past]
    monkeypatch.setattr(extraction, "cached_prefix_ok", lambda model: False)  # the patched pass from position 0
    again = extract_batch(tiny_model, tiny_pairs)
    torch.testing.assert_close(reused.loc, again.loc, rtol=1e-5, atol=1e-5)
    assert torch.equal(reused.base, again.base) and torch.equal(reused.acc, again.acc)
