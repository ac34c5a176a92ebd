"""The per-directory write lock, across real processes: a second writer waits (saying who holds it)
or fails at once, and a killed holder leaves nothing that blocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from workbench.core.locks import DirectoryLocked, directory_lock, holder

ROOT = Path(__file__).resolve().parents[2]


def _holder_process(directory: Path, seconds: float) -> subprocess.Popen:
    """A process that takes the lock, prints 'held', and keeps it ``seconds``."""
    code = textwrap.dedent(f"""
        import time
        from workbench.core.locks import directory_lock
        with directory_lock({str(directory)!r}, purpose="holding for a test"):
            print("held", flush=True)
            time.sleep({seconds})
            open({str(directory / "released")!r}, "w").close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_fails_at_once_naming_the_holder(tmp_path):
    proc = _holder_process(tmp_path, 30)
    try:
        with pytest.raises(DirectoryLocked, match=f"pid {proc.pid} .*holding for a test"):
            with directory_lock(tmp_path, wait=False):
                pass
        with pytest.raises(DirectoryLocked, match="still locked after waiting"):
            with directory_lock(tmp_path, wait=0.5):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_a_second_process_waits_for_the_first(tmp_path, capsys):
    proc = _holder_process(tmp_path, 1.5)
    started = time.monotonic()
    with directory_lock(tmp_path, purpose="second"):
        waited = time.monotonic() - started
        assert (tmp_path / "released").exists(), "the lock was taken while the first process still held it"
        assert holder(tmp_path)["pid"] == os.getpid()
    proc.wait()
    assert waited > 0.5
    assert f"another writer holds it (pid {proc.pid}" in capsys.readouterr().err


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    proc = _holder_process(tmp_path, 600)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / ".workbench.lock").exists()  # the file stays; the lock went with the process
    with directory_lock(tmp_path, wait=False):
        pass


def test_reentrant_in_one_process_and_threads_take_turns(tmp_path):
    with directory_lock(tmp_path):
        with directory_lock(tmp_path / "." , wait=False):  # the same directory by another spelling
            pass
    order = []

    def writer(name):
        with directory_lock(tmp_path):
            order.append(f"{name} in")
            time.sleep(0.2)
            order.append(f"{name} out")

    threads = [threading.Thread(target=writer, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


def test_bad_wait_is_named(tmp_path):
    with pytest.raises(ValueError, match="wait must be"):
        with directory_lock(tmp_path, wait=-1):
            pass
