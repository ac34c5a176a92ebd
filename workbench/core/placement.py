"""Where a model's weights go: one device, or a Hugging Face device map (accelerate), and in
which dtype; with clear errors before loading for what cannot work.

Used by :func:`workbench.core.models.load_model`. A device map is applied by the Hugging Face
loader (``from_pretrained(device_map=...)``), never by hand: an in-memory model (the tiny families)
is saved and re-loaded through it (:func:`dispatch`), which is exactly the path a downloaded
checkpoint takes.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.utils import logging as hf_logging


def check_dtype(devices: str | torch.device | Iterable, dtype: torch.dtype) -> None:
    """Fail clearly when ``dtype`` is not a float dtype or one of ``devices`` cannot compute in it."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype (torch.float32, torch.bfloat16, ...), got {dtype!r}")
    targets = [devices] if isinstance(devices, (str, torch.device)) else list(devices)
    for target in targets:
        kind = torch.device(target).type if not isinstance(target, int) else "cuda"
        if kind == "cuda" and dtype == torch.bfloat16 and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            raise ValueError(f"this GPU ({torch.cuda.get_device_name()}) cannot compute in bfloat16; "
                             "use dtype=torch.float16 or torch.float32")
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {target!r} asked for, but torch sees no CUDA GPU here; use device='cpu'")


def map_devices(device_map: str | dict) -> list:
    """The devices a device map names (``"auto"`` and friends: whatever accelerate finds)."""
    if isinstance(device_map, str):
        if device_map not in ("auto", "balanced", "balanced_low_0", "sequential", "cpu"):
            return [device_map]  # a single device, e.g. "cuda:0"
        return ["cuda"] if torch.cuda.is_available() and device_map != "cpu" else ["cpu"]
    if not isinstance(device_map, dict) or not device_map:
        raise ValueError(f"device_map must be a string such as 'auto' or a non-empty dict, got {device_map!r}")
    bad = sorted({str(v) for v in device_map.values() if str(v).lower() == "meta"})
    if bad:
        raise ValueError("device_map puts modules on 'meta', which holds no weights; map them to a GPU, 'cpu' or "
                         "'disk' (with offload_folder)")
    return [v for v in device_map.values() if str(v) != "disk"]


def check_device_map(hf_model: Any, device_map: dict) -> None:
    """Fail clearly when a dict device map leaves a parameter (a layer) on no device, or names a
    module the model does not have."""
    params = [n for n, _ in hf_model.named_parameters(remove_duplicate=False)]  # tied weights need a device too
    names = params + [n for n, _ in hf_model.named_buffers()]
    keys = list(device_map)
    unknown = [k for k in keys if k and not any(n == k or n.startswith(k + ".") for n in names)]
    if unknown:
        raise ValueError(f"device_map names {unknown[0]!r}, which is not a module of this model")
    if "" in keys:
        return
    nowhere = [n for n in params if not any(n == k or n.startswith(k + ".") for k in keys)]
    if nowhere:
        modules = sorted({n.rsplit(".", 1)[0] for n in nowhere})
        raise ValueError(f"device_map leaves {len(nowhere)} parameters on no device, in {modules[:4]}"
                         f"{' ...' if len(modules) > 4 else ''}; give every layer a device")


def check_device_map_of(name: str | Path, device_map: dict) -> None:
    """:func:`check_device_map` for a checkpoint by name or directory, on a weightless (meta) copy
    built from its config, before anything is loaded."""
    config = AutoConfig.from_pretrained(name)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    check_device_map(skeleton, device_map)


def dispatch(hf_model: Any, dtype: torch.dtype, device_map: str | dict, offload_folder: str | Path | None) -> Any:
    """Re-load an in-memory model through ``from_pretrained(device_map=...)``, so that accelerate
    places it exactly as it would a downloaded checkpoint (the path real models take)."""
    if isinstance(device_map, dict):
        check_device_map(hf_model, device_map)
        if "disk" in {str(v) for v in device_map.values()} and offload_folder is None:
            raise ValueError("device_map puts modules on 'disk': pass offload_folder= (where they are kept)")
    if offload_folder is not None:
        # Disk-offloaded weights are read back from the checkpoint itself, so it must outlive the load.
        checkpoint = Path(offload_folder) / "checkpoint"
        with quiet_loading():
            hf_model.save_pretrained(checkpoint, safe_serialization=True)
        return from_pretrained(checkpoint, dtype, device_map, offload_folder)
    with tempfile.TemporaryDirectory(prefix="workbench-dispatch-") as tmp, quiet_loading():
        hf_model.save_pretrained(tmp, safe_serialization=True)
        return from_pretrained(tmp, dtype, device_map, None)


def from_pretrained(path: str | Path, dtype: torch.dtype, device_map=None, offload_folder=None, **kwargs) -> Any:
    with quiet_loading():
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=device_map,
                                                    offload_folder=str(offload_folder) if offload_folder else None,
                                                    **kwargs)


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' weight-loading bar for a while, restoring its setting afterwards."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
