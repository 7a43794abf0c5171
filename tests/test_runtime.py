"""``tune_cpu_allocator`` keeps freed tensor memory for reuse (glibc malloc thresholds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mimic3d.runtime import tuning_requested

# Allocates, touches and frees a 64 MiB tensor a few times, then reports the page faults of one more
# round (the first rounds may still be growing the heap).
PROBE = """
import json, resource, sys, torch
from mimic3d.runtime import tune_cpu_allocator
tuned = tune_cpu_allocator() if sys.argv[1] == "tune" else False
def round_trip():
    x = torch.empty(16 * 2**20)
    x.fill_(1.0)
    del x
for _ in range(3):
    round_trip()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_trip()
print(json.dumps({"tuned": tuned,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MIMIC3D_MALLOC_TUNING"}
    command = [sys.executable, "-c", PROBE, mode]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_freed_tensors_are_reused_instead_of_faulted_back_in():
    tuned, untouched = _probe("tune"), _probe("plain")
    assert tuned["tuned"] is True
    pages = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    # Tuned, the last 64 MiB come from the heap, already mapped; untouched, glibc returned it to the
    # kernel and every page faults again.
    assert tuned["faults"] < pages // 10, (tuned, untouched, pages)
    assert untouched["faults"] > pages // 2, (tuned, untouched, pages)


def test_only_an_explicit_switch_asks_for_the_tuning(monkeypatch):
    monkeypatch.delenv("MIMIC3D_MALLOC_TUNING", raising=False)
    assert not tuning_requested()
    monkeypatch.setenv("MIMIC3D_MALLOC_TUNING", "1")
    assert tuning_requested()
