"""Peak memory of generating a batch stays within a small multiple of the model's weights.

Measured in fresh processes (peak RSS over the RSS after a warm-up), once as the library runs and
once with autograd left on in the same decode loop, as it was before: the second must break the
bound, so the bound would catch the graph coming back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

PROBE = Path(__file__).resolve().parents[2] / "benchmarks" / "generation_memory_probe.py"
MODEL, BATCH, NEW_TOKENS = "tiny:256:4", 16, 48


def _measure(*flags: str) -> dict:
    out = subprocess.run([sys.executable, str(PROBE), MODEL, str(BATCH), str(NEW_TOKENS), *flags],
                         capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bound_mb(weights_mb: float) -> float:
    """What a batch may add: activations, logits and the KV cache of one batch, not a graph per step."""
    return 25 * weights_mb + 48


def test_generating_a_batch_adds_little_memory_and_a_kept_graph_would_show():
    # A large parent (as pytest is after loading the embedded model) must not leak into the child's
    # peak: Linux carries getrusage's maxrss across fork and exec, the probe reads its own VmHWM.
    ballast = torch.ones(400 * 2**20 // 4)
    plain = _measure()
    del ballast
    assert plain["added_mb"] < bound_mb(plain["weights_mb"]), plain
    graph = _measure("--with-grad")
    assert graph["added_mb"] > bound_mb(graph["weights_mb"]), graph  # the bound catches the old behaviour
