"""One probe of the max-batch search, run in a fresh process so that its peak memory is its own.

``python -m benchmarks.probe_batch SPEC`` with SPEC a JSON object such as ``{"preset":
"mimic3d-ffhq512-stage2", "branch": "3d", "resolution": 512, "batch": 4, "device": "cpu", "threads": 2}``
(threads optional) builds the generator, runs one no-grad forward and prints one JSON line:
``{"batch", "peak_mib", "forward_seconds", "failed"}``. ``"student": true`` probes the distilled
student of the preset instead (the branch is then its "2d"). ``peak_mib`` is the whole need of the process:
its RSS high-water mark on CPU (interpreter, torch, weights, activations), ``max_memory_allocated``
on CUDA (weights and activations). ``failed`` names an out-of-memory error (then the peak is
meaningless); any other error propagates.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from benchmarks.bench_generator import ForwardCase, build_generator, build_student, forward_call
from benchmarks.common import measure_peak_memory, synchronize
from mimic3d.runtime import tune_cpu_allocator, tuning_requested

OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "not enough memory")


def probe(preset: str, branch: str, resolution: int, batch: int, device: str, student: bool = False) -> dict:
    """Peak memory and seconds of one forward of ``preset`` (or of its ``student``) at ``batch``
    (see the module docstring)."""
    device = torch.device(device)
    failed = None
    forward_seconds = float("nan")
    with measure_peak_memory(device) as memory:
        try:
            G = build_student(preset, device) if student else build_generator(preset, device)
            call = forward_call(G, ForwardCase(preset, branch, resolution, batch, 1, 0), device)
            start = time.perf_counter()
            call()
            synchronize(device)
            forward_seconds = time.perf_counter() - start
        except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
            if not any(text in str(err) for text in OUT_OF_MEMORY):
                raise
            failed = str(err).splitlines()[0][:200]
    return {"batch": batch, "peak_mib": memory.peak_mib, "forward_seconds": forward_seconds, "failed": failed}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit(f"usage: python -m benchmarks.probe_batch JSON  (see the docstring); got {argv}")
    spec = json.loads(argv[0])
    if tuning_requested():  # measured as the mimic3d command runs
        tune_cpu_allocator()
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    print(
        json.dumps(
            probe(
                spec["preset"],
                spec["branch"],
                int(spec["resolution"]),
                int(spec["batch"]),
                spec["device"],
                bool(spec.get("student", False)),
            )
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
