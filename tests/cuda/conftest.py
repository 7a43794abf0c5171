"""The CUDA suite: skipped cleanly without a GPU ("needs a CUDA device").

Every test here runs on ``device`` (cuda:0) with EG3D's backend settings applied
(``mimic3d.runtime.apply_backend_policy``: TF32 off, cudnn.benchmark on). ``benchmarks/gpu_check.sh``
runs this folder on a GPU machine. To dry-run the code paths on a CPU (CUDA-only checks then skip
themselves), set ``MIMIC3D_CUDA_SUITE_DEVICE=cpu``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

# The CPU suite's helpers (fixtures' loaders, tiny training configs) live one folder up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEVICE_OVERRIDE = os.environ.get("MIMIC3D_CUDA_SUITE_DEVICE")
SKIP_REASON = "needs a CUDA device"


def suite_device() -> torch.device | None:
    """cuda:0, the override's device, or None (no GPU: every test here is skipped)."""
    if DEVICE_OVERRIDE:
        return torch.device(DEVICE_OVERRIDE)
    return torch.device("cuda", 0) if torch.cuda.is_available() else None


def pytest_collection_modifyitems(config, items) -> None:
    if suite_device() is not None:
        return
    here = Path(__file__).resolve().parent
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device() -> torch.device:
    from mimic3d.runtime import apply_backend_policy

    found = suite_device()
    if found is None:
        pytest.skip(SKIP_REASON)
    apply_backend_policy()  # the official numerics
    return found


@pytest.fixture
def cuda_only(device: torch.device) -> torch.device:
    """For checks that only mean something on a real GPU (sync debug mode, CUDA memory stats)."""
    if device.type != "cuda":
        pytest.skip(SKIP_REASON)
    return device
