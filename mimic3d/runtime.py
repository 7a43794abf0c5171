"""What this machine offers and how processes use it: devices, CPU cores, and the opt-in allocator tuning.

Devices: ``resolve_device`` turns "auto", "cpu", "cuda", "cuda:1" or "mps" into a ``torch.device``
that exists here, with a one-line error otherwise (a CPU-only torch has no CUDA). Cores:
``available_cpus`` counts the cores this process may use; ``default_workers`` sizes helper pools.

Allocator: keep freed tensor memory for reuse (Linux glibc).

glibc hands blocks above its mmap threshold (128 KiB, adapting up to 32 MiB) straight back to the
kernel when they are freed, and trims the heap top beyond twice that. A generator forward allocates
and frees hundreds of MiB of activations, so every forward faults about a million fresh pages back
in: on a 2-core CPU that is 35-40% of the 2D branch's time and 10-20% of the 3D branch's. Raising
both thresholds keeps freed blocks in the heap. The price is memory: the process keeps its
high-water mark, and heap fragmentation raised the peak of large batches by about 30% (2D branch,
batch 21: 17.4 GiB instead of about 13). So it is off by default: ``MIMIC3D_MALLOC_TUNING=1`` makes
the ``mimic3d`` command and ``make bench`` call ``tune_cpu_allocator()``; in your own scripts call it
yourself, or start Python with ``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=2147483647``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = (1 << 31) - 1
ENV_SWITCH = "MIMIC3D_MALLOC_TUNING"


DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device = "auto", name: str = "device") -> torch.device:
    """ "auto" -> CUDA if available, else MPS if available, else CPU; a named device ("cuda", "cuda:1",
    "mps", "cpu" or a ``torch.device``) must exist here, else ValueError naming ``name``."""
    import torch  # here, so that the console script starts without loading torch

    if isinstance(device, str) and device == "auto":
        cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        resolved = None
    if resolved is None or resolved.type not in DEVICES:
        raise ValueError(f"{name}: expected one of {', '.join(DEVICES)} (or cuda:N), got {device!r}")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name}: {device!r} requested, but this torch build sees no CUDA device; use cpu"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name}: {device!r} requested, but {torch.cuda.device_count()} CUDA devices exist"
            )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}: 'mps' requested, but MPS is not available on this machine; use cpu")
    return resolved


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity masks
        return max(1, os.cpu_count() or 1)


def default_workers(at_most: int) -> int:
    """Helper processes by default: one per available core beside the main process, at most
    ``at_most`` (0 on a single core: the main process does the work itself)."""
    return max(0, min(at_most, available_cpus() - 1))


def tuning_requested() -> bool:
    """Whether ``MIMIC3D_MALLOC_TUNING=1`` asks the command-line tools to tune the allocator."""
    return os.environ.get(ENV_SWITCH, "0") == "1"


def tune_cpu_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds (see the module docstring); True when applied.

    A no-op returning False off Linux or without glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # The mmap threshold first: setting the trim threshold also freezes the (then 128 KiB) mmap one.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
