"""Measurement helpers shared by every benchmark: settings, timing, peak memory and the matmul rate.

Peak memory is measured per block of code on either device, as MiB:
- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (tensors only; the CUDA
  context and the caching allocator's spare blocks are not counted), and ``max_memory_reserved`` (what
  the caching allocator held at its peak: what the GPU must really have free);
- CPU: the process's resident-set high-water mark (Linux ``VmHWM``), reset before the block by writing
  5 to ``/proc/self/clear_refs``. Where that reset is not allowed the process-lifetime peak is used,
  and the result says so (an earlier, larger peak would hide the block's own).
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

MIB = 2**20
# Default memory budget of the batch search on CPU (GiB), capped by the machine's RAM.
CPU_BUDGET_GIB = 8.0
# Seconds each batch search may spend on CPU, where a large probe takes minutes.
CPU_SEARCH_SECONDS = 180.0


@dataclass(frozen=True)
class BenchSettings:
    """What every suite's ``run(settings)`` honours.

    Args:
        device: where the models run (timings synchronise on it, memory is measured on it).
        quick: tiny presets and few repeats (seconds, for tests and smoke runs).
        matmul_gflops: the fp32 matmul rate measured at the start of this run (for FLOP floors).
        memory_budget_mib: budget of the max-batch search (None: ``default_memory_budget_mib``).
        search_seconds: wall-clock allowance of each max-batch search (None: unlimited).
    """

    device: torch.device
    quick: bool = False
    matmul_gflops: float = float("nan")
    memory_budget_mib: float | None = None
    search_seconds: float | None = None


def resolve_device(name: str | None) -> torch.device:
    """``cpu``, ``cuda`` or None (CUDA when available, else CPU); ValueError if CUDA is missing."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device on this machine")
    return torch.device(name)


def synchronize(device: torch.device | str) -> None:
    """Wait for queued kernels on ``device`` (no-op on CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(
    fn: Callable[[], object], repeat: int = 3, warmup: int = 1, device: torch.device | str = "cpu"
) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs, each run
    ending when ``device`` has finished its work."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / MIB


def _proc_status_mib(field: str) -> float | None:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``) in MiB; None where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def current_rss_mb() -> float:
    """Current resident set size in MiB (from /proc; falls back to the peak elsewhere)."""
    rss = _proc_status_mib("VmRSS")
    return peak_rss_mb() if rss is None else rss


def reset_rss_high_water_mark() -> bool:
    """Restart the kernel's peak-RSS counter of this process at the current RSS; False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _proc_status_mib("VmHWM") is not None


def release_freed_memory() -> None:
    """Collect garbage and hand glibc's cached free heap back to the OS, so that the next block's
    allocations show in RSS instead of reusing memory an earlier block left behind."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@dataclass
class PeakMemory:
    """Result of ``measure_peak_memory``: MiB resident (CPU) or allocated (CUDA) before the block and
    at the block's peak; ``method`` says how it was measured."""

    baseline_mib: float
    peak_mib: float
    method: str
    reserved_mib: float = float("nan")  # CUDA: peak max_memory_reserved; NaN on CPU

    @property
    def above_baseline_mib(self) -> float:
        return self.peak_mib - self.baseline_mib

    def notes(self) -> str:
        """The method, plus the reserved peak where there is one."""
        if self.reserved_mib != self.reserved_mib:  # NaN
            return self.method
        return f"{self.method}; peak reserved {self.reserved_mib:,.0f} MiB (max_memory_reserved)"


@contextmanager
def measure_peak_memory(device: torch.device | str) -> Iterator[PeakMemory]:
    """Measure the peak memory of the ``with`` block on ``device``; the yielded ``PeakMemory`` is
    filled in when the block exits (``above_baseline_mib`` is the block's own cost)."""
    device = torch.device(device)
    if device.type == "cuda":
        gc.collect()  # tensors of finished work held only by reference cycles would count as baseline
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = PeakMemory(
            torch.cuda.memory_allocated(device) / MIB, float("nan"), "CUDA max_memory_allocated"
        )
        yield result
        synchronize(device)
        result.peak_mib = torch.cuda.max_memory_allocated(device) / MIB
        result.reserved_mib = torch.cuda.max_memory_reserved(device) / MIB
        return
    release_freed_memory()
    per_block = reset_rss_high_water_mark()
    method = "RSS high-water mark" if per_block else "process peak RSS (high-water mark not resettable)"
    result = PeakMemory(current_rss_mb(), float("nan"), method)
    yield result
    hwm = _proc_status_mib("VmHWM") if per_block else None
    result.peak_mib = peak_rss_mb() if hwm is None else hwm


def default_memory_budget_mib(device: torch.device | str) -> float:
    """The device's total memory on CUDA; on CPU ``CPU_BUDGET_GIB``, at most 3/4 of the machine's RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory / MIB
    budget = CPU_BUDGET_GIB * 1024
    try:
        budget = min(budget, 0.75 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / MIB)
    except (ValueError, OSError):
        pass
    return budget


def matmul_size(device: torch.device | str) -> int:
    """Matrix size at which the device's fp32 GEMM runs near its peak (1024 on CPU, 4096 on a GPU)."""
    return 4096 if torch.device(device).type == "cuda" else 1024


def matmul_gflops(size: int | None = None, repeat: int = 10, device: torch.device | str = "cpu") -> float:
    """Measured float32 GEMM rate of ``device``, the compute ceiling other numbers are compared to.

    The fastest of ``repeat`` products after half a second of warm-up: a fresh process's first
    products (thread-pool start, clock ramp-up) can run at half the rate.
    """
    size = size or matmul_size(device)
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    start = time.perf_counter()
    while time.perf_counter() - start < 0.5:
        a @ b
    synchronize(device)
    seconds = min(timeit(lambda: a @ b, repeat=1, warmup=0, device=device) for _ in range(repeat))
    return 2 * size**3 / seconds / 1e9


def machine_description(device: torch.device | str = "cpu") -> str:
    """One line naming the CPU, core count, RAM, GPU (when used), torch version and threads."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        ram = f", {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        ram = ""
    device = torch.device(device)
    gpu = ""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        gpu = f", GPU {props.name} ({props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda})"
    return (
        f"{cpu}, {os.cpu_count()} cores{ram}{gpu}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}, device {device.type}"
    )
