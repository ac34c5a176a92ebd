"""Memory of this process from ``/proc/self/status``, shared by the benchmark scripts.

``VmHWM`` is this process's own peak resident memory; ``getrusage``'s ``ru_maxrss`` would carry the
parent's peak across fork and exec, which is why every benchmark measures a mode in a fresh
process and reads it here.
"""

from __future__ import annotations


def status_mb(field: str) -> float:
    """``field`` of ``/proc/self/status`` (``"VmRSS"``, ``"VmHWM"``) in MB, or NaN where absent."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")
