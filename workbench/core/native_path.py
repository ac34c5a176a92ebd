"""Forwards through the wrapped Hugging Face modules, with the residual hook points still firing.

TransformerBridge wraps every module of the Hugging Face model (embedding, norms, attention, MLP,
each linear layer) in a Python component with hook points of its own. At a decode step of one
token per row that wrapping is most of the cost: unsteered generation through the bridge ran at
0.83x of bare Hugging Face ``generate`` (``benchmarks/bench_generation_vs_hf.py``). Generation and
Delta_PS extraction only hook the residual stream at block boundaries (steerers, lambda read-out,
recorders, the patched pass's overwrites), so for them :func:`native_model` builds a second module
tree that shares every parameter and buffer with the bridge's model but holds the original Hugging
Face modules, and calls each block's ``hook_in`` / ``hook_out`` HookPoint from native torch hooks on
its decoder layer. Every hook registered with
``bridge.hooks(...)`` on those points fires as it does through the bridge, and the logits are
bit-identical (``tests/core/test_native_path.py``, every offline model family).

The tree is built per call (a few milliseconds) rather than cached, so that adapters
injected after loading (peft's LoRA layers) are part of it. :func:`native_model` returns ``None``,
and the caller keeps the bridge, whenever the shortcut could differ: a hook on any other hook point
(e.g. an attention pattern a user hooked) or a torch hook on a bridge component, a model
dispatched with a device map (accelerate patches ``forward`` on the modules themselves), or
``WORKBENCH_THROUGH_BRIDGE=1`` (to compare).
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict

import torch
from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

from workbench.core.models import LoadedModel

_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks")


def native_model(model: LoadedModel) -> torch.nn.Module | None:
    """The bridge's Hugging Face model with the bridge components taken out, or ``None`` when the
    bridge must be used (see the module docstring). Call it after the generation's hooks are
    registered: it checks which hook points carry hooks."""
    if os.environ.get("WORKBENCH_THROUGH_BRIDGE", "") not in ("", "0"):
        return None
    bridge = model.bridge
    wrapped = bridge.original_model
    if getattr(wrapped, "hf_device_map", None) or not len(getattr(bridge, "blocks", ())):
        return None
    routed = {id(b.hook_in) for b in bridge.blocks} | {id(b.hook_out) for b in bridge.blocks}
    for point in bridge.hook_dict.values():
        if id(point) not in routed and (point._forward_hooks or point._backward_hooks):
            return None
    blocks = {id(b.original_component): b for b in bridge.blocks}
    clones: dict[int, torch.nn.Module] = {}
    try:
        tree = _unwrapped(wrapped, clones, set(blocks))
    except _Patched:
        return None
    for key, block in blocks.items():
        _route_block_hooks(clones[key], block)
    return tree


class _Patched(Exception):
    """The unwrapped tree would skip something: a module whose ``forward`` is an instance attribute
    (accelerate's hooks; a shallow copy would call the original), or torch hooks on a bridge component."""


def _unwrapped(module: torch.nn.Module, clones: dict[int, torch.nn.Module], always_clone: set[int]) -> torch.nn.Module:
    """``module`` with every bridge component below it replaced by its original module.

    Modules with nothing wrapped below them are shared as they are; the others are shallow copies
    (same parameters, buffers and torch hooks; their own child and hook dicts), so the bridge itself is
    not touched.
    """
    if isinstance(module, GeneralizedComponent) and getattr(module, "original_component", None) is not None:
        if _foreign_hooks(module):
            raise _Patched(f"torch hooks on the bridge's {type(module).__name__}")  # they would not fire
        return _unwrapped(module.original_component, clones, always_clone)
    if id(module) in clones:
        return clones[id(module)]
    if "forward" in module.__dict__:
        raise _Patched(type(module).__name__)
    children = OrderedDict((name, None if child is None else _unwrapped(child, clones, always_clone))
                           for name, child in module._modules.items())
    if id(module) not in always_clone and all(children[n] is module._modules[n] for n in children):
        clones[id(module)] = module
        return module
    clone = copy.copy(module)
    clone._modules = children
    for name in _HOOK_DICTS:  # the clone's own dicts: hooks added to it stay off the original
        if hasattr(module, name):
            setattr(clone, name, OrderedDict(getattr(module, name)))
    clones[id(module)] = clone
    return clone


def _foreign_hooks(component: torch.nn.Module) -> bool:
    """Whether a bridge component carries torch hooks other than the bridge's own (its blocks wire
    capture hooks for ``hook_mlp_in`` and split q/k/v on first use; those only serve hook points,
    which :func:`native_model` checks)."""
    for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):  # id -> function
        for hook in (getattr(component, name, None) or {}).values():
            if not getattr(hook, "__module__", "").startswith("transformer_lens"):
                return True
    return False


def _route_block_hooks(layer: torch.nn.Module, block) -> None:
    """Fire ``block.hook_in`` on the decoder layer's input and ``block.hook_out`` on its output (the
    first element of a tuple output), as the bridge's block does; a hook point without hooks is
    skipped."""

    def before(module, args, kwargs):
        point = block.hook_in
        if not point._forward_hooks:
            return None
        if args and isinstance(args[0], torch.Tensor):
            return (point(args[0]),) + tuple(args[1:]), kwargs
        if isinstance(kwargs.get("hidden_states"), torch.Tensor):
            kwargs["hidden_states"] = point(kwargs["hidden_states"])
        return args, kwargs

    def after(module, args, output):
        point = block.hook_out
        if not point._forward_hooks:
            return output
        if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
            return (point(output[0]),) + tuple(output[1:])
        if isinstance(output, torch.Tensor):
            return point(output)
        return output

    # prepend: as in the bridge, hook_in fires before the layer's own pre-hooks
    layer.register_forward_pre_hook(before, with_kwargs=True, prepend=True)
    layer.register_forward_hook(after)


def forward(model: LoadedModel, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
            logits: bool = True) -> torch.Tensor | None:
    """One forward of ``ids [batch, seq]`` with the hooks now registered on the bridge, through the
    unwrapped modules where :func:`native_model` allows it (same numbers, less Python).

    Returns ``logits [batch, seq, vocab]``, or ``None`` with ``logits=False`` (then the
    unembedding is skipped where the model has a separate decoder stack).
    """
    tree = native_model(model)
    if tree is None:
        return model.bridge(ids, attention_mask=attention_mask, return_type="logits" if logits else None)
    body = None if logits else decoder_stack(tree)
    if body is not None:
        body(input_ids=ids, attention_mask=attention_mask, use_cache=False)
        return None
    out = tree(input_ids=ids, attention_mask=attention_mask, use_cache=False).logits
    return out if logits else None


def decoder_stack(causal_lm: torch.nn.Module) -> torch.nn.Module | None:
    """A causal LM's decoder stack without the unembedding (``get_decoder()``), or ``None``.

    Only where it is the whole path from tokens to the last block, i.e. the causal LM is that
    decoder plus a head (Llama, Qwen2, Gemma, Mistral, Phi-3, SmolLM2, ...)."""
    getter = getattr(causal_lm, "get_decoder", None)
    try:
        body = getter() if callable(getter) else None
    except (AttributeError, NotImplementedError):
        return None
    if body is None or body is causal_lm or not any(m is body for m in causal_lm.children()):
        return None
    return body
