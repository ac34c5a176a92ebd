"""GGUF files as a model source: read the header, refuse what cannot load, dequantize the rest.

:func:`check_gguf` reads only the header (metadata and tensor table, well under a second even for a
262k-token vocabulary; ``gguf.GGUFReader`` takes tens of seconds there) and fails, naming the file,
for what would fail later or silently: not a GGUF file, a truncated one (its tensors need more bytes
than the file has), an architecture the installed transformers cannot read from GGUF or that
TransformerBridge does not serve, a quantization type gguf-py cannot dequantize. :func:`dequantize_gguf`
then loads it through transformers' GGUF loader (every weight dequantized to float32: Q4_K_M, Q4_1,
Q8_0, F16, ...), ready to be saved as the float32 cache of :mod:`workbench.core.model_cache`.
"""

from __future__ import annotations

import mmap
import struct
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES as BRIDGE_ARCHITECTURES
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

MAGIC = b"GGUF"
#: GGUF architecture names transformers renames when it loads them (modeling_gguf_pytorch_utils).
_RENAMED = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2",
            "t5encoder": "t5"}
#: ... and the Hugging Face model type it then builds (Gemma-3 and -4 GGUFs hold the text model only).
_MODEL_TYPE = {"gemma3": "gemma3_text", "gemma4": "gemma4_text"}
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file's header says.

    Attributes:
        architecture: ``general.architecture`` (``"llama"``, ``"gemma3"``, ...).
        name: ``general.name``, or ``None``.
        tensor_types: quantization type name -> number of tensors (``{"Q4_K": 27, "F32": 109, ...}``).
        has_chat_template: whether the file carries ``tokenizer.chat_template``.
        data_end: the byte offset where the last tensor ends (the file must be at least this long).
    """

    path: Path
    architecture: str
    name: str | None
    tensor_types: dict[str, int]
    has_chat_template: bool
    data_end: int


class _Header:
    """A cursor over the memory-mapped header, reading little-endian values."""

    def __init__(self, buffer) -> None:
        self.buffer, self.at = buffer, 0

    def take(self, fmt: str):
        (value,) = struct.unpack_from("<" + fmt, self.buffer, self.at)
        self.at += struct.calcsize("<" + fmt)
        return value

    def string(self) -> str:
        n = self.take("Q")
        value = bytes(self.buffer[self.at : self.at + n])
        if len(value) != n:
            raise struct.error("string runs past the end of the file")
        self.at += n
        return value.decode("utf-8", errors="replace")

    def value(self, kind: int, keep: bool):
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            inner, n = self.take("I"), self.take("Q")
            if keep:
                return [self.value(inner, keep) for _ in range(n)]
            if inner in _SCALARS:  # a vocabulary's scores: skipped, not read
                self.at += n * struct.calcsize("<" + _SCALARS[inner])
            elif inner == _STRING:  # its tokens: only their lengths are read
                unpack = struct.Struct("<Q").unpack_from
                for _ in range(n):
                    self.at += 8 + unpack(self.buffer, self.at)[0]
            else:
                for _ in range(n):
                    self.value(inner, keep)
            return None
        if kind not in _SCALARS:
            raise ValueError(f"unknown GGUF value type {kind}")
        return self.take(_SCALARS[kind])


def read_gguf_info(path: str | Path) -> GGUFInfo:
    """Parse the header of a GGUF file (see the module docstring); ``ValueError`` naming the file for
    one that is not GGUF or is cut short."""
    path = Path(path)
    with open(path, "rb") as fh:
        if fh.read(4) != MAGIC:
            raise ValueError(f"{path} is not a GGUF file (it does not start with the GGUF magic bytes)")
        size = path.stat().st_size
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            try:
                return _parse(path, _Header(buffer), size)
            except (struct.error, UnicodeDecodeError, ValueError, KeyError, MemoryError) as err:
                raise ValueError(f"{path} is a truncated or corrupt GGUF file ({err}); download or assemble it "
                                 "again") from None


def _parse(path: Path, header: _Header, size: int) -> GGUFInfo:
    header.at = 4
    version, n_tensors, n_fields = header.take("I"), header.take("Q"), header.take("Q")
    if version < 2:
        raise ValueError(f"GGUF version {version} (transformers reads version 2 and later)")
    wanted = {"general.architecture", "general.name", "general.alignment"}
    fields: dict[str, Any] = {}
    for _ in range(n_fields):
        key, kind = header.string(), header.take("I")
        fields[key] = header.value(kind, keep=key in wanted)
    tensors = []
    for _ in range(n_tensors):
        name, n_dims = header.string(), header.take("I")
        shape = [header.take("Q") for _ in range(n_dims)]
        tensors.append((name, shape, header.take("I"), header.take("Q")))
    alignment = int(fields.get("general.alignment") or 32)
    start = -(-header.at // alignment) * alignment
    types: Counter = Counter()
    data_end = start
    for name, shape, kind, offset in tensors:
        qtype = gguf.GGMLQuantizationType(kind)
        block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        data_end = max(data_end, start + offset + int(np.prod(shape, dtype=np.int64)) // block * block_bytes)
        types[qtype.name] += 1
    if data_end > size:
        raise ValueError(f"the file holds {size:,} bytes but its {n_tensors} tensors need {data_end:,}")
    if "general.architecture" not in fields:
        raise ValueError("no general.architecture in the metadata")
    return GGUFInfo(path, str(fields["general.architecture"]), fields.get("general.name"), dict(types),
                    "tokenizer.chat_template" in fields, data_end)


def check_gguf(path: str | Path) -> GGUFInfo:
    """:func:`read_gguf_info`, then refuse what transformers or TransformerBridge cannot load (naming
    the file, the architecture or the type, and what to do)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    info = read_gguf_info(path)
    architecture = _RENAMED.get(info.architecture, info.architecture)
    readable = sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))
    if architecture not in readable:
        raise ValueError(f"{path} holds a {info.architecture!r} model, an architecture the installed transformers cannot "
                         f"read from GGUF (it reads {', '.join(readable)}); convert the original checkpoint to a "
                         "Hugging Face directory instead and load that")
    model_class = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(_MODEL_TYPE.get(architecture, architecture))
    if model_class is None:
        raise ValueError(f"{path} holds a {info.architecture!r} model, for which the installed transformers has no causal "
                         "language model class: the workbench steers decoder-only language models")
    if model_class not in BRIDGE_ARCHITECTURES:
        raise ValueError(f"{path} holds a {info.architecture!r} model ({model_class}), which TransformerBridge does not "
                         "serve (see TransformerBridge.list_supported_models()); the workbench cannot hook it")
    for name in info.tensor_types:
        if not _dequantizable(gguf.GGMLQuantizationType[name]):
            raise ValueError(f"{path} stores tensors as {name}, which the installed gguf package cannot dequantize; "
                             "requantize the model (Q4_K_M, Q8_0, F16, ...) or upgrade gguf")
    return info


def _dequantizable(qtype) -> bool:
    if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        return True
    block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    try:
        gguf.quants.dequantize(np.zeros(block_bytes, dtype=np.uint8), qtype)
    except NotImplementedError:
        return False
    return True


def dequantize_gguf(path: str | Path, seconds: dict | None = None) -> tuple[Any, Any]:
    """The float32 Hugging Face model and the tokenizer of a checked GGUF file (minutes for 270M
    parameters on 2 cores: transformers reads the file twice, once per call; ``seconds`` receives
    the time of each). The GGUF "quantizer" is dropped so that ``save_pretrained`` accepts the plain
    float32 weights."""
    path = Path(path)
    seconds = {} if seconds is None else seconds
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    seconds["tokenizer"] = time.perf_counter() - start
    hf_model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    seconds["model"] = time.perf_counter() - start - seconds["tokenizer"]
    hf_model.hf_quantizer = None
    if hasattr(hf_model.config, "quantization_config"):
        del hf_model.config.quantization_config
    return hf_model, tokenizer
