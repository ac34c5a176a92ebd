"""Sharded on-disk storage of span activations and Delta_PS, read back lazily.

A store is a directory::

    index.json            format version, model id, layers, d_model, dtype, provenance, shard list,
                          and its checksum
    shard-00000.safetensors   base.{l}, acc.{l}, loc.{l} as [tokens, d_model]; token_ids, sample,
                              position as [tokens]; header_len as [samples]; a checksum per tensor

Every file is written to a temporary name and renamed, shard first and index last, so an
interrupted run leaves only whole shards that the index names; a re-run resumes after them.
Reading memory-maps a shard and reads a tensor only when asked for it, so a large run never needs
all activations in memory; each tensor is checked against its checksum as it is read
(:class:`workbench.core.tensor_files.TensorFile`), and a writer opening a store to resume checks
every tensor of every shard, so a corrupt shard is extracted again. One writer at a time: a writer
holds the directory's lock (:func:`workbench.core.locks.directory_lock`) while it writes, and
refuses to go on when another changed the store meanwhile; ``extract_deltas`` holds it for a
whole extraction, so a second one waits and then finds the work done.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from workbench.activations.extraction import SpanActivations
from workbench.core.checked_files import read_json, write_json
from workbench.core.locks import directory_lock
from workbench.core.tensor_files import CorruptFileError, TensorFile, write_tensor_file

log = logging.getLogger(__name__)

STORE_FORMAT_VERSION = 2  # 2: checksums on the index and on every shard tensor
_LEGACY_FORMATS = (1,)
INDEX_NAME = "index.json"
SHARD_META_KEY = "workbench_store_shard"
KINDS = ("base", "steered", "acc", "loc")
STORED_KINDS = ("base", "acc", "loc")  # what a shard can hold; "steered" is read as base + acc
_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
_TOKEN_FIELD_BYTES = 3 * 8  # token_ids, sample, position: int64 per token


def default_kinds(local: bool) -> tuple[str, ...]:
    return ("base", "acc", "loc") if local else ("base", "acc")


def check_kinds(kinds) -> tuple[str, ...]:
    """Validate stored kinds (a non-empty subset of ``base, acc, loc``), returned in canonical order."""
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in STORED_KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {STORED_KINDS}, got {list(kinds)}")
    return tuple(k for k in STORED_KINDS if k in kinds)


def store_bytes(n_tokens: int, n_layers: int, d_model: int, kinds=("base", "acc", "loc"), dtype: str = "float16") -> int:
    """Bytes a store of ``n_tokens`` span tokens takes on disk (tensor data; headers are small)."""
    if dtype not in _DTYPES:
        raise ValueError(f"unknown storage dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
    itemsize = torch.tensor([], dtype=_DTYPES[dtype]).element_size()
    return int(n_tokens) * (n_layers * len(check_kinds(kinds)) * d_model * itemsize + _TOKEN_FIELD_BYTES)


def check_disk_space(directory: str | Path, needed: int, margin: float = 1.05) -> None:
    """Fail before writing when ``needed`` bytes (plus 5 %) do not fit on the disk holding ``directory``."""
    place = Path(directory).absolute()
    while not place.exists():
        place = place.parent
    free = shutil.disk_usage(place).free
    if needed * margin > free:
        raise ValueError(f"the store needs {format_bytes(needed)} but {place} has {format_bytes(free)} free; extract "
                         "fewer layers (layers=) or kinds (kinds=), store float16, or write elsewhere")


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


class LegacyStoreError(ValueError):
    """A store written before checksums (format 1): a writer extracts it again, a reader says so."""


def _read_index(directory: Path) -> dict:
    path = directory / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not an activation store (no {INDEX_NAME})")
    try:
        index = read_json(path, legacy_ok=True)
    except CorruptFileError as err:
        raise CorruptFileError(f"corrupt store index: {err}; extract again (resume rebuilds it)") from err
    version = index.get("format_version")
    if version in _LEGACY_FORMATS:
        raise LegacyStoreError(f"{directory} is a store of format {version}, written before stores had checksums; "
                               "run the extraction again (it rebuilds the store in place)")
    if version != STORE_FORMAT_VERSION:
        raise ValueError(
            f"{path} is store format {version!r}, this workbench reads format {STORE_FORMAT_VERSION}; "
            "re-run the extraction into a new directory"
        )
    try:
        return read_json(path)
    except CorruptFileError as err:
        raise CorruptFileError(f"corrupt store index: {err}; extract again (resume rebuilds it)") from err


def _open_shard(directory: Path, name: str) -> TensorFile:
    return TensorFile(directory / name, meta_key=SHARD_META_KEY, format_version=STORE_FORMAT_VERSION, what="store shard")


class DeltaWriter:
    """Appends shards of :class:`SpanActivations` to a store directory; resumable.

    Args:
        directory: the store directory (created if missing).
        header: what identifies the run (model id, layers, d_model, dtype, provenance). Opening an
            existing store with a different header raises, naming the field that differs.
        dtype: storage dtype name, ``"float16"`` (default) or ``"float32"``.

    Opening an existing store checks every shard in full (sizes, then every tensor against its
    checksum) and drops those that fail, so they are extracted again; a store of an older format
    is extracted again from the start. Hold :func:`workbench.core.locks.directory_lock` on the
    directory for the whole of a writer's life when several processes may write it (each write
    takes it, and raises if another writer changed the store in between).
    """

    def __init__(self, directory: str | Path, *, model_id: str, layers: Sequence[int], d_model: int,
                 dtype: str = "float16", local: bool = True, provenance: dict | None = None,
                 kinds: Sequence[str] | None = None) -> None:
        kinds = default_kinds(local) if kinds is None else check_kinds(kinds)
        local = "loc" in kinds
        if dtype not in _DTYPES:
            raise ValueError(f"unknown storage dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
        self.directory = Path(directory)
        self.header = {
            "format_version": STORE_FORMAT_VERSION,
            "model_id": model_id,
            "layers": [int(l) for l in layers],
            "d_model": int(d_model),
            "dtype": dtype,
            "local": bool(local),
            "kinds": list(kinds),
            "provenance": provenance or {},
        }
        with directory_lock(self.directory, purpose="opening an activation store"):
            self.shards = self._resumable_shards()
            self._write_index()

    def _resumable_shards(self) -> list[dict]:
        """The shards of the store already here that hold what they should; the rest are removed."""
        if not (self.directory / INDEX_NAME).exists():
            return []
        try:
            index = _read_index(self.directory)
        except LegacyStoreError as err:
            log.warning("%s", err)
            self._remove_shards()
            return []
        except CorruptFileError as err:
            log.warning("%s; extracting every shard again", err)
            self._remove_shards()
            return []
        for key, value in self.header.items():
            if index.get(key) != value:
                raise ValueError(
                    f"{self.directory} already holds a different extraction: {key} is "
                    f"{index.get(key)!r} there, {value!r} here; use another directory"
                )
        kept = []
        for shard in index["shards"]:
            problem = _shard_problem(self.directory, shard, full=True)
            if problem is None:
                kept.append(shard)
            else:
                log.warning("store shard %s is unusable (%s); extracting it again", self.directory / shard["file"], problem)
                (self.directory / shard["file"]).unlink(missing_ok=True)
        return kept

    def _remove_shards(self) -> None:
        for path in self.directory.glob("shard-*.safetensors"):
            path.unlink()

    @property
    def done_samples(self) -> set[int]:
        """Ids of the samples already stored in whole shards."""
        return {int(s) for shard in self.shards for s in shard["samples"]}

    def write(self, acts: SpanActivations, sample_ids: Sequence[int]) -> None:
        """Store one batch as a new shard; ``sample_ids[i]`` is the global id of batch sample i."""
        if list(acts.layers) != self.header["layers"]:
            raise ValueError(f"batch layers {list(acts.layers)} differ from the store's {self.header['layers']}")
        if len(sample_ids) != len(acts.header_len):
            raise ValueError(f"{len(sample_ids)} sample ids for a batch of {len(acts.header_len)} samples")
        if self.header["local"] and acts.loc is None:
            raise ValueError("this store keeps local deltas but the batch has none")
        dtype = _DTYPES[self.header["dtype"]]
        tensors = {
            "token_ids": acts.token_ids.contiguous(),
            "sample": torch.as_tensor(sample_ids, dtype=torch.long)[acts.sample].contiguous(),
            "position": acts.position.contiguous(),
            "header_len": acts.header_len.contiguous(),
            "sample_ids": torch.as_tensor(sample_ids, dtype=torch.long),
        }
        for i, layer in enumerate(acts.layers):
            for kind in self.header["kinds"]:
                tensors[f"{kind}.{layer}"] = getattr(acts, kind)[i].to(dtype).contiguous()
        with directory_lock(self.directory, purpose="writing an activation store"):
            self._check_unchanged()
            taken = {p.name for p in self.directory.glob("shard-*.safetensors")} | {s["file"] for s in self.shards}
            number = len(self.shards)
            while f"shard-{number:05d}.safetensors" in taken:
                number += 1
            name = f"shard-{number:05d}.safetensors"
            write_tensor_file(self.directory / name, tensors, {"samples": [int(s) for s in sample_ids]},
                              meta_key=SHARD_META_KEY, format_version=STORE_FORMAT_VERSION)
            self.shards.append({
                "file": name,
                "samples": [int(s) for s in sample_ids],
                "n_tokens": int(acts.token_ids.numel()),
                "size": (self.directory / name).stat().st_size,
            })
            self._write_index()

    def _check_unchanged(self) -> None:
        """Raise when another writer changed the index since this one last wrote it."""
        try:
            on_disk = _read_index(self.directory)["shards"]
        except (FileNotFoundError, ValueError):
            on_disk = None
        if on_disk != self.shards:
            raise RuntimeError(
                f"another writer changed the store {self.directory} while this one was writing it; hold "
                "workbench.core.locks.directory_lock on the directory for the whole extraction (extract_deltas "
                "does), then resume")

    def _write_index(self) -> None:
        write_json(self.directory / INDEX_NAME, {**self.header, "shards": self.shards})


def _shard_problem(directory: Path, shard: dict, full: bool = False) -> str | None:
    """Why a shard the index lists is unusable (``None``: it is fine). ``full`` reads and checks
    every tensor; otherwise only the size, the header and the metadata checksum."""
    path = directory / shard["file"]
    if not path.is_file():
        return "missing"
    if path.stat().st_size != shard["size"]:
        return f"{path.stat().st_size} bytes, the index says {shard['size']}"
    try:
        with _open_shard(directory, shard["file"]) as fh:
            if fh.meta.get("samples") != shard["samples"]:
                return "it holds other samples than the index says"
            if full:
                fh.read_all()
    except (CorruptFileError, FileNotFoundError) as err:
        return str(err)
    return None


@dataclass(frozen=True)
class ShardInfo:
    file: str
    samples: tuple[int, ...]
    n_tokens: int


class DeltaStore:
    """Read-only, lazy view of a store written by :class:`DeltaWriter`.

    ``get("acc", layer)`` returns the ``[tokens, d_model]`` float32 tensor of one layer over all
    shards (or over chosen samples); ``iter_shards`` streams one shard at a time.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.index = _read_index(self.directory)
        self.shards = [ShardInfo(s["file"], tuple(s["samples"]), s["n_tokens"]) for s in self.index["shards"]]
        for shard in self.index["shards"]:
            problem = _shard_problem(self.directory, shard)
            if problem is not None:
                raise CorruptFileError(
                    f"corrupt or truncated shard {self.directory / shard['file']} ({problem}); re-run the "
                    "extraction to rebuild it (it resumes, extracting only that shard again)"
                )

    @property
    def model_id(self) -> str:
        return self.index["model_id"]

    @property
    def layers(self) -> list[int]:
        return list(self.index["layers"])

    @property
    def d_model(self) -> int:
        return int(self.index["d_model"])

    @property
    def has_local(self) -> bool:
        return bool(self.index["local"])

    @property
    def kinds(self) -> tuple[str, ...]:
        """The stored kinds (``base``, ``acc``, ``loc``); ``steered`` reads need ``base`` and ``acc``."""
        return tuple(self.index.get("kinds", default_kinds(self.has_local)))

    @property
    def provenance(self) -> dict:
        return dict(self.index.get("provenance", {}))

    @property
    def sample_ids(self) -> list[int]:
        """The stored samples' ids in store order (``sorted()`` them for pair order)."""
        return [s for shard in self.shards for s in shard.samples]

    @property
    def n_tokens(self) -> int:
        return sum(s.n_tokens for s in self.shards)

    def _check(self, kind: str, layer: int) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown activation kind {kind!r}; expected one of {KINDS}")
        if kind == "loc" and not self.has_local:
            raise ValueError(f"{self.directory} was extracted without local deltas")
        missing = [k for k in (("base", "acc") if kind == "steered" else (kind,)) if k not in self.kinds]
        if missing:
            raise ValueError(f"{self.directory} was extracted without {missing[0]!r} (kinds {list(self.kinds)}), "
                             f"so it cannot give {kind!r}; extract again with that kind")
        if layer not in self.layers:
            raise IndexError(f"layer {layer} is not in this store, which holds layers {self.layers}")

    @staticmethod
    def _read(fh: TensorFile, kind: str, layer: int) -> torch.Tensor:
        if kind == "steered":
            return fh.get(f"base.{layer}").float() + fh.get(f"acc.{layer}").float()
        return fh.get(f"{kind}.{layer}").float()

    def _open(self, shard: ShardInfo) -> TensorFile:
        return _open_shard(self.directory, shard.file)

    def iter_shards(self, kinds: Sequence[str] = ("base", "acc"), layers: Sequence[int] | None = None) -> Iterator[dict]:
        """Yield one dict per shard: ``{(kind, layer): [tokens, d_model]}`` plus the token fields."""
        layers = self.layers if layers is None else list(layers)
        for kind in kinds:
            for layer in layers:
                self._check(kind, layer)
        for shard in self.shards:
            with self._open(shard) as fh:
                out = {key: fh.get(key) for key in ("token_ids", "sample", "position", "header_len", "sample_ids")}
                for kind in kinds:
                    for layer in layers:
                        out[(kind, layer)] = self._read(fh, kind, layer)
            yield out

    def read_shard(self, shard: int, kinds: Sequence[str], layers: Sequence[int],
                   samples: Sequence[int] | None = None) -> dict:
        """One shard's tokens, in the order they were written: ``{(kind, layer): [tokens, d_model]}``
        float32 plus ``sample`` and ``position`` ``[tokens]``; only the tokens of ``samples`` when given.

        Reads only the named tensors (safetensors memory-maps the file), so streaming a store shard by
        shard keeps one shard's chosen layers in memory at a time.
        """
        if not 0 <= int(shard) < len(self.shards):
            raise IndexError(f"shard {shard} out of range: {self.directory} holds {len(self.shards)} shards")
        layers = [int(l) for l in layers]
        for kind in kinds:
            for layer in layers:
                self._check(kind, layer)
        with self._open(self.shards[int(shard)]) as fh:
            sample = fh.get("sample")
            keep = None if samples is None else torch.isin(sample, torch.as_tensor([int(s) for s in samples], dtype=sample.dtype))
            out = {"sample": sample, "position": fh.get("position")}
            for kind in kinds:
                for layer in layers:
                    out[(kind, layer)] = self._read(fh, kind, layer)
        if keep is not None and not bool(keep.all()):
            out = {k: v[keep] for k, v in out.items()}
        return out

    def get(self, kind: str, layer: int, samples: Sequence[int] | None = None, order: str = "pair") -> torch.Tensor:
        """``[tokens, d_model]`` float32 activations of one kind and layer.

        Args:
            kind: ``"base"`` (``A_l(x y')``), ``"acc"`` (``D_acc``), ``"loc"`` (``D_loc``) or
                ``"steered"`` (``A_l(x' y')``).
            samples: which triplets (their ids, by default ``0..n-1`` in pair order); all when None.
            order: ``"pair"`` (default): rows sample by sample, in increasing sample id (or in the
                order ``samples`` lists them), each sample's span tokens by position, the rows of
                :meth:`tokens` with the same arguments. ``"store"``: the order they were written
                in (extraction batches sorted by length), cheaper for whole-store statistics.
        """
        self._check(kind, layer)
        if order not in ("pair", "store"):
            raise ValueError(f"order must be 'pair' or 'store', got {order!r}")
        wanted = None if samples is None else [int(s) for s in samples]
        wanted_set = set(wanted or ())
        wanted_ids = torch.tensor(sorted(wanted_set), dtype=torch.long)
        missing = sorted(wanted_set - set(self.sample_ids))
        if missing:
            raise KeyError(f"samples {missing} are not in this store, which holds samples {sorted(self.sample_ids)}")
        parts, ids = [], []
        for shard in self.shards:
            if wanted is not None and not wanted_set.intersection(shard.samples):
                continue
            with self._open(shard) as fh:
                values = self._read(fh, kind, layer)
                sample = fh.get("sample")
                position = fh.get("position")
            if wanted is not None:
                keep = torch.isin(sample, wanted_ids)
                values, sample, position = values[keep], sample[keep], position[keep]
            parts.append(values)
            ids.append((sample, position))
        if not parts:
            return torch.zeros((0, self.d_model))
        values = torch.cat(parts)
        if order == "store":
            return values
        return values[self._pair_order(torch.cat([s for s, _ in ids]), torch.cat([p for _, p in ids]), wanted)]

    @staticmethod
    def _pair_order(sample: torch.Tensor, position: torch.Tensor, wanted: Sequence[int] | None) -> torch.Tensor:
        """Row permutation putting tokens sample by sample (by ``wanted``'s order, else by id), then by position."""
        rank = {s: i for i, s in enumerate(wanted)} if wanted is not None else None
        keys = [(rank[s] if rank is not None else s, p) for s, p in zip(sample.tolist(), position.tolist())]
        return torch.tensor(sorted(range(len(keys)), key=keys.__getitem__), dtype=torch.long)

    def tokens(self, samples: Sequence[int] | None = None, order: str = "pair") -> dict[str, torch.Tensor]:
        """Per-token fields, ``token_ids``, ``sample``, ``position`` and ``is_header``, each ``[tokens]``,
        row for row as :meth:`get` returns activations with the same ``samples`` and ``order``."""
        if order not in ("pair", "store"):
            raise ValueError(f"order must be 'pair' or 'store', got {order!r}")
        wanted = None if samples is None else [int(s) for s in samples]
        wanted_ids = torch.tensor(sorted(set(wanted or ())), dtype=torch.long)
        fields = {"token_ids": [], "sample": [], "position": [], "is_header": []}
        for shard in self.shards:
            with self._open(shard) as fh:
                sample = fh.get("sample")
                position = fh.get("position")
                header = dict(zip(fh.get("sample_ids").tolist(), fh.get("header_len").tolist()))
                token_ids = fh.get("token_ids")
            keep = torch.ones(len(sample), dtype=torch.bool) if wanted is None else torch.isin(sample, wanted_ids)
            fields["token_ids"].append(token_ids[keep])
            fields["sample"].append(sample[keep])
            fields["position"].append(position[keep])
            fields["is_header"].append(torch.tensor([p < header[s] for s, p in zip(sample[keep].tolist(), position[keep].tolist())],
                                                    dtype=torch.bool))
        out = {k: torch.cat(v) if v else torch.zeros(0, dtype=torch.long) for k, v in fields.items()}
        if order == "pair" and len(out["sample"]):
            perm = self._pair_order(out["sample"], out["position"], wanted)
            out = {k: v[perm] for k, v in out.items()}
        return out
