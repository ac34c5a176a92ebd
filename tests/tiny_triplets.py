"""Three aligned triplets on the tiny model, for tests that train or apply steerers.

A module of its own (not in conftest.py): ``make test`` also collects ``notebooks/conftest.py``,
and two modules named ``conftest`` cannot both be imported by name.
"""


def make_tiny_pairs(tiny_model):
    from workbench.core.chat import align, encode_response

    tok = tiny_model.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    items = [
        ("What is the capital of France?", "You are a pirate. Speak like a pirate.", "Arr matey, the capital be Paris!"),
        ("How do I boil an egg?", "You are a cat. Meow a lot.", "Meow. Put the egg in boiling water, purr."),
        ("Why is the sky blue?", "WRITE IN CAPITAL LETTERS.", "SUNLIGHT SCATTERS."),
    ]
    return [align(tok, q, i, encode_response(tok, r) + [end]) for q, i, r in items]


def replay_local_deltas(model, pair, acts):
    """Run ``x y'`` adding ``D_loc[l]`` to the span after every block l; returns ``{layer: [span, d]}``
    as each layer then reads (what the prompt-steered run must equal)."""
    import torch

    span = slice(pair.base_start, len(pair.base_ids))
    seen = {}

    def add_local(layer):
        def hook(resid, hook=None):
            resid = resid.clone()
            resid[0, span] += acts.loc[layer]
            seen[layer] = resid[0, span].clone()
            return resid

        return hook

    hooks = [(model.resid_hook(l), add_local(l)) for l in range(acts.loc.shape[0])]
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=hooks):
        model.bridge(torch.tensor([pair.base_ids]), return_type=None)
    return seen
