"""Files: nothing half-written (every file goes to a temporary name in its directory, then is
renamed), and the user cache directory every stage stores under."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class DiskFullError(OSError):
    """A write ran out of disk space (or quota); nothing was left half-written."""


def _is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "no space left" in str(err).lower() or "disk quota" in str(err).lower()  # safetensors' own errors


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    The file gets the usual permissions (mkstemp makes 0600). A write that runs out of space raises
    :class:`DiskFullError` naming the file and the free space, whatever library wrote it.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as err:
        if _is_disk_full(err):
            raise _disk_full(path, err) from err
        raise
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if _is_disk_full(err) and not isinstance(err, DiskFullError):
            raise _disk_full(path, err) from err
        raise


def _disk_full(path: Path, err: BaseException) -> DiskFullError:
    try:
        free = f"{shutil.disk_usage(path.parent).free / 1e6:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return DiskFullError(errno.ENOSPC, f"no space left on the disk writing {path} ({free}; {err}); nothing was left "
                                       "half-written: free some space, or write the run elsewhere, then run again")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())

def cache_root() -> Path:
    """The user cache directory: ``$WORKBENCH_CACHE_DIR`` or ``~/.cache/workbench``."""
    env = os.environ.get("WORKBENCH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "workbench"


def package_version() -> str:
    """The installed workbench version, written into every file the workbench saves."""
    try:
        return version("workbench")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
