"""A full disk: every file the workbench writes fails naming the path and what to do, and leaves
nothing half-written (a real 3 MB tmpfs where this machine lets the tests mount one)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pandas as pd
import pytest
import torch

from workbench.core.checked_files import write_frame, write_json
from workbench.core.files import DiskFullError, atomic_write_bytes
from workbench.core.tensor_files import write_tensor_file


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip() or 'not root'})")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


WRITERS = {
    "tensor file": lambda path: write_tensor_file(path / "s.safetensors", {"z": torch.zeros(2_000_000)}, {},
                                                  meta_key="test", format_version=1),
    "table": lambda path: write_frame(path / "t.parquet", pd.DataFrame({"x": [uuid.uuid4().hex * 2 for _ in range(200_000)]})),
    "json": lambda path: write_json(path / "r.json", {"rows": ["x" * 100] * 50_000}),
    "bytes": lambda path: atomic_write_bytes(path / "b.csv", b"x" * 5_000_000),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_full_disk_is_named_and_leaves_nothing(small_disk, kind):
    (small_disk / "keep.txt").write_text("already here")
    with pytest.raises(DiskFullError, match=rf"no space left on the disk writing {small_disk}/\S+ .*free some space"):
        WRITERS[kind](small_disk)
    assert sorted(p.name for p in small_disk.iterdir()) == ["keep.txt"]  # no temporary file, no partial file


def test_a_disk_full_error_from_any_library_becomes_one(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    import workbench.core.tensor_files as tensor_files

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No space left on device\" })")

    monkeypatch.setattr(tensor_files, "save_file", full)
    with pytest.raises(DiskFullError, match="s.safetensors"):
        write_tensor_file(tmp_path / "s.safetensors", {"z": torch.zeros(3)}, {}, meta_key="test", format_version=1)
    assert list(Path(tmp_path).iterdir()) == []
