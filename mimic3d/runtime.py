"""Opt-in process set-up for CPU work: keep freed tensor memory for reuse (Linux glibc).

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

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = (1 << 31) - 1
ENV_SWITCH = "MIMIC3D_MALLOC_TUNING"


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
