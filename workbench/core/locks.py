"""One writer per directory: an advisory lock that the operating system releases with its process.

Every stage that writes into a run directory (the triplets, the delta store, evaluations,
steerers, claims rows, the model cache) holds :func:`directory_lock` on the directory it writes
while it writes. A second process that wants the same directory waits for it, saying who holds it
(pid, host, since when, what for), or fails at once when asked not to wait. Readers take no lock:
every file is replaced atomically, so a reader sees either the old or the new one.

The lock is ``fcntl.flock`` on ``<directory>/.workbench.lock`` (filelock's on systems without
``fcntl``); a killed process holds nothing, so a lock can never go stale. Who holds it is written
to ``<directory>/.workbench.lock.json`` for the message only; that file never blocks anyone.
Within one process the lock is re-entrant (a stage that locks its directory may call another
that locks it too), and threads of the process take turns.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with directory_lock(d, purpose="doctest"):
    ...         holder(d)["purpose"]
    'doctest'
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import filelock

try:
    import fcntl
except ImportError:  # Windows: filelock's msvcrt lock instead
    fcntl = None

__all__ = ["DirectoryLocked", "LOCK_NAME", "directory_lock", "holder"]

log = logging.getLogger(__name__)

LOCK_NAME = ".workbench.lock"
_HOLDER_NAME = LOCK_NAME + ".json"
_POLL_S = 0.2

_registry_lock = threading.Lock()
_held: dict[str, list] = {}  # resolved directory -> [thread lock, depth, os lock handle]


class DirectoryLocked(RuntimeError):
    """Another process holds the directory's lock (and the caller chose not to wait, or waited
    past its timeout). ``holder`` is what that process wrote about itself (may be empty)."""

    def __init__(self, directory: Path, who: dict, waited: float | None) -> None:
        self.directory, self.holder = directory, who
        how = "is locked" if waited is None else f"was still locked after waiting {waited:.0f} s"
        super().__init__(f"{directory} {how} by another writer ({describe(who)}); wait for it to finish, "
                         "or write into another directory")


def holder(directory: str | Path) -> dict:
    """What the process holding (or last holding) the lock wrote: pid, host, since, purpose."""
    try:
        who = json.loads((Path(directory) / _HOLDER_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return who if isinstance(who, dict) else {}


def describe(who: dict) -> str:
    if not who:
        return "holder unknown"
    text = f"pid {who.get('pid', '?')} on {who.get('host', '?')} since {who.get('since', '?')}"
    return text + (f", {who['purpose']}" if who.get("purpose") else "")


class _OsLock:
    """The cross-process part: flock on the lock file (or filelock where there is no fcntl)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if fcntl is None:
            self._filelock = filelock.FileLock(str(path))
        else:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)

    def try_acquire(self) -> bool:
        if fcntl is None:
            try:
                self._filelock.acquire(timeout=0)
                return True
            except filelock.Timeout:
                return False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def release(self) -> None:
        if fcntl is None:
            self._filelock.release()
            return
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)

    def close(self) -> None:
        """Give up the handle of a lock that was never acquired."""
        if fcntl is not None:
            os.close(self._fd)


@contextmanager
def directory_lock(directory: str | Path, *, wait: bool | float = True, purpose: str = "") -> Iterator[Path]:
    """Hold the write lock of ``directory`` (created if missing) for the ``with`` block.

    Args:
        wait: ``True`` waits as long as it takes (logging once who holds it), ``False`` raises
            :class:`DirectoryLocked` at once, a number waits that many seconds and then raises.
        purpose: a few words on what the holder does, shown to whoever waits.

    Yields the directory as a ``Path``.
    """
    if not (isinstance(wait, bool) or (isinstance(wait, (int, float)) and wait >= 0)):
        raise ValueError(f"wait must be True, False or a number of seconds >= 0, got {wait!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = str(directory.resolve())
    with _registry_lock:
        entry = _held.setdefault(key, [threading.RLock(), 0, None])
    thread_lock = entry[0]
    if not thread_lock.acquire(blocking=wait is not False, timeout=-1 if isinstance(wait, bool) else float(wait)):
        raise DirectoryLocked(directory, holder(directory), None if wait is False else float(wait))
    try:
        if entry[1] == 0:
            entry[2] = _acquire(directory, wait, purpose)
        entry[1] += 1
        try:
            yield directory
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                entry[2].release()
                entry[2] = None
    finally:
        thread_lock.release()


def _acquire(directory: Path, wait: bool | float, purpose: str) -> _OsLock:
    lock = _OsLock(directory / LOCK_NAME)
    started = time.monotonic()
    told = False
    while not lock.try_acquire():
        waited = time.monotonic() - started
        if wait is False or (not isinstance(wait, bool) and waited >= wait):
            lock.close()
            raise DirectoryLocked(directory, holder(directory), None if wait is False else waited)
        if not told:
            message = f"waiting for {directory}: another writer holds it ({describe(holder(directory))})"
            log.warning(message)
            print(message, file=sys.stderr, flush=True)
            told = True
        time.sleep(_POLL_S)
    who = {"pid": os.getpid(), "host": socket.gethostname(),
           "since": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"), "purpose": purpose}
    try:
        (directory / _HOLDER_NAME).write_text(json.dumps(who))
    except OSError:  # the message is a courtesy; the lock itself is held
        pass
    return lock
