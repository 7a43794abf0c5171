"""What this machine offers and how processes use it: devices, CPU cores, GPU numerics and kernel
choices, host-device synchronisation, and the opt-in allocator tuning.

Devices: ``resolve_device`` turns "auto", "cpu", "cuda", "cuda:1" or "mps" into a ``torch.device``
that exists here, with a one-line error otherwise (a CPU-only torch has no CUDA). Cores:
``available_cpus`` counts the cores this process may use, ``idle_cpus`` those that other work leaves
free (see ``busy_machine_threads``); ``default_workers`` sizes helper pools.

GPU backends (``apply_backend_policy``): EG3D's training loop and metric script switch TF32 off for
matmuls and cuDNN convolutions and forbid reduced-precision fp16 reductions (and enable cuDNN's
autotuner); on A100/H100-class GPUs PyTorch's defaults would run every convolution in TF32 and move
outputs ~1e-3 away from the official ones. Training, metrics, the tools and the benchmarks all call
``apply_backend_policy``; ``tf32=True`` (``--tf32``, ``run.tf32``) trades that exactness for speed.

Kernel paths (``kernel_paths``): a few formulations were chosen for CPU speed (a clamped softplus,
polyphase transposed convolutions, pixel-major 3D-aware tri-plane convolutions, cache-sized backward
chunks of the tri-plane gather); CUDA devices get the official formulation instead until measured
otherwise. All paths compute the same function (to float rounding); tests force either path.

Host-device synchronisation: the training step is meant to be free of them except where a value
must reach the host; those places are wrapped in ``expected_sync`` so that a step run under
``torch.cuda.set_sync_debug_mode("error")`` fails on any other.

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

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
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


def idle_cpus() -> int:
    """Available cores that other work leaves free, by the 1-minute load average (at least 1; all
    available cores where the OS reports no load average).

    Why it matters: torch's OpenMP threads wait for each other actively at the end of every
    parallel operation, so one thread on a core that another process holds stalls all of them.
    Measured on a 2-core machine with one core busy: a heads64 forward takes 0.13 s on 1 thread and
    3.5 s on 2 (0.08 s on 2 when both cores are idle).
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no load average
        return available_cpus()
    return max(1, available_cpus() - round(load))


def busy_machine_threads() -> int | None:
    """The thread count to use instead of torch's when other work holds some of the cores, or None
    when torch's count fits the idle cores or the user chose it (``OMP_NUM_THREADS``)."""
    import torch

    if "OMP_NUM_THREADS" in os.environ:
        return None
    idle = idle_cpus()
    return idle if idle < torch.get_num_threads() else None


def busy_machine_warning() -> str | None:
    """A one-line warning for a run that keeps its thread count on a busy machine (None if idle)."""
    import torch

    threads = busy_machine_threads()
    if threads is None:
        return None
    return (
        f"warning: other work holds cores, {threads} idle for torch's {torch.get_num_threads()} "
        f"threads; each thread waits for the slowest, so steps can take 10-30x longer: set "
        f"OMP_NUM_THREADS={threads}"
    )


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


# ----------------------------------------------------------------------------- backend policy


@dataclass(frozen=True)
class BackendPolicy:
    """The settings ``apply_backend_policy`` writes into ``torch.backends``."""

    cudnn_benchmark: bool
    matmul_tf32: bool
    cudnn_tf32: bool
    fp16_reduced_precision_reduction: bool


def official_backend_policy(tf32: bool = False) -> BackendPolicy:
    """EG3D's settings (``tf32=False``), or the fast ones: TF32 and reduced fp16 reductions allowed."""
    return BackendPolicy(
        cudnn_benchmark=True,
        matmul_tf32=tf32,
        cudnn_tf32=tf32,
        fp16_reduced_precision_reduction=tf32,
    )


def apply_backend_policy(tf32: bool = False) -> BackendPolicy:
    """Set the GPU numerics of this process (see the module docstring); returns what was applied.

    Harmless without a GPU: the flags are process-wide settings that only CUDA kernels read.
    """
    import torch

    policy = official_backend_policy(tf32)
    torch.backends.cudnn.benchmark = policy.cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = policy.matmul_tf32
    torch.backends.cudnn.allow_tf32 = policy.cudnn_tf32
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = (
        policy.fp16_reduced_precision_reduction
    )
    return policy


def current_backend_policy() -> BackendPolicy:
    """The settings in force now (whoever set them)."""
    import torch

    return BackendPolicy(
        cudnn_benchmark=torch.backends.cudnn.benchmark,
        matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
        cudnn_tf32=torch.backends.cudnn.allow_tf32,
        fp16_reduced_precision_reduction=torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
    )


# ----------------------------------------------------------------------------- mixed precision

PRECISIONS = ("fp32", "bf16", "fp16")


def autocast(device: torch.device | str, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``precision`` ("bf16", "fp16") on ``device``; "fp32" does nothing.

    The generator runs under it as an opt-in mixed-precision mode: convolutions and matmuls in the
    reduced type, the tri-plane lookup, the volume rendering's weights and the outputs in float32.
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(torch.device(device).type, dtype=dtype)


# ----------------------------------------------------------------------------- torch.compile


def compile_unavailable(device: torch.device | str) -> str | None:
    """Why ``torch.compile`` cannot run on ``device`` here (None when it can): its CPU backend needs a
    C++ compiler, its GPU backend Triton."""
    import importlib.util
    import shutil

    import torch

    if not hasattr(torch, "compile") or not torch._dynamo.is_dynamo_supported():
        return f"torch.compile is not supported with this torch {torch.__version__} / Python"
    if torch.device(device).type == "cuda":
        return None if importlib.util.find_spec("triton") is not None else "Triton is not installed"
    compilers = (os.environ.get("CXX"), "c++", "g++", "clang++")
    if not any(c and shutil.which(c) for c in compilers):
        return "no C++ compiler found (set CXX)"
    return None


def compile_modules(modules: list[torch.nn.Module], device: torch.device | str) -> str:
    """Compile each module's ``forward`` in place (``nn.Module.compile``: names, state dicts and
    checkpoints are unchanged); a one-line status. Where compiling is unavailable nothing changes,
    and a graph that fails to compile later runs eagerly (dynamo's ``suppress_errors``)."""
    import torch

    reason = compile_unavailable(device)
    if reason is not None:
        return f"torch.compile unavailable ({reason}): running eagerly"
    torch._dynamo.config.suppress_errors = True
    for module in modules:
        module.compile(dynamic=False)
    return f"torch.compile: {len(modules)} modules compiled (eager fallback on errors)"


# ----------------------------------------------------------------------------- kernel paths


@dataclass(frozen=True)
class KernelPaths:
    """Per-device choice between formulations of the same function (see the module docstring).

    clamped_softplus: softplus(max(x, -20)) (torch's CPU softplus is slow far out), else F.softplus.
    polyphase_transposed_conv: strided transposed convolutions as ``stride^2`` ordinary convolutions
        (faster on CPU), else ``F.conv_transpose2d`` as the official code.
    pixel_major_triplanes: 3D-aware tri-plane convolutions on pixel-major (channels-last) images with
        combined phase kernels for 2x upsampling, else plain NCHW grouped convolutions and EG3D's
        transposed-conv upsampling.
    gather_backward_points: points per chunk of the tri-plane gather's backward (None: sized by
        ``gather_backward_elements``, the number of [points, corners, channels] elements a chunk holds).
    """

    clamped_softplus: bool
    polyphase_transposed_conv: bool
    pixel_major_triplanes: bool
    gather_backward_points: int | None
    gather_backward_elements: int


CPU_PATHS = KernelPaths(
    clamped_softplus=True,
    polyphase_transposed_conv=True,
    pixel_major_triplanes=True,
    gather_backward_points=4096,  # the [4096, K, C] scatter source stays in cache
    gather_backward_elements=0,
)
# Official formulations; the backward chunk holds 2^26 elements (256 MiB in float32): a few dozen
# large kernels per render instead of thousands of tiny ones.
ACCELERATOR_PATHS = KernelPaths(
    clamped_softplus=False,
    polyphase_transposed_conv=False,
    pixel_major_triplanes=False,
    gather_backward_points=None,
    gather_backward_elements=1 << 26,
)
_forced_paths: KernelPaths | None = None


def kernel_paths(device: torch.device | str) -> KernelPaths:
    """The formulations used for tensors on ``device`` (``forced_kernel_paths`` overrides)."""
    if _forced_paths is not None:
        return _forced_paths
    kind = device if isinstance(device, str) else device.type
    return CPU_PATHS if kind.split(":")[0] == "cpu" else ACCELERATOR_PATHS


@contextlib.contextmanager
def forced_kernel_paths(paths: KernelPaths) -> Iterator[None]:
    """Use ``paths`` on every device inside the block (tests, measurements)."""
    global _forced_paths
    previous, _forced_paths = _forced_paths, paths
    try:
        yield
    finally:
        _forced_paths = previous


# ----------------------------------------------------------------------------- synchronisation


@contextlib.contextmanager
def expected_sync(reason: str) -> Iterator[None]:
    """Mark a deliberate host-device synchronisation (``reason`` says why it is needed).

    Inside the block CUDA's sync debug mode is off, so that a step run under
    ``torch.cuda.set_sync_debug_mode("error")`` fails only on unexpected synchronisations.
    ``EXPECTED_SYNCS`` counts the blocks entered, by reason.
    """
    import torch

    global _expected_depth
    EXPECTED_SYNCS[reason] = EXPECTED_SYNCS.get(reason, 0) + 1
    mode = torch.cuda.get_sync_debug_mode() if torch.cuda.is_available() else 0
    if mode:
        torch.cuda.set_sync_debug_mode(0)
    _expected_depth += 1
    try:
        yield
    finally:
        _expected_depth -= 1
        if mode:
            torch.cuda.set_sync_debug_mode(mode)


def in_expected_sync() -> bool:
    """Whether an ``expected_sync`` block is running (sync checkers on the CPU ask this)."""
    return _expected_depth > 0


EXPECTED_SYNCS: dict[str, int] = {}
_expected_depth = 0


def device_constant(values: tuple, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A small constant tensor of nested tuples ``values`` on ``device`` (``dtype``: torch's default
    floating dtype, as ``torch.tensor``), built and copied once per device and dtype.

    Hot paths use it instead of ``torch.tensor(..., device=...)``, whose host-to-device copy makes
    every call wait for the GPU. The tensor is shared: never modify it in place.
    """
    import torch

    return _device_constant(values, torch.device(device), dtype or torch.get_default_dtype())


@functools.lru_cache(maxsize=256)
def _device_constant(values: tuple, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    import torch

    return torch.tensor(values, dtype=dtype).to(device)


def full_precision(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32, or float64 if it is: reduced-precision results (autocast) are upcast."""
    import torch

    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def on_host(*tensors: torch.Tensor) -> bool:
    """Whether every tensor is on the CPU, where checking its values costs no synchronisation.

    Value checks of inputs (index ranges, probabilities) run only then: tensors already on a GPU were
    made there by our own code (e.g. random patch corners), and reading them back would stall it.
    """
    return all(t.device.type == "cpu" for t in tensors)
