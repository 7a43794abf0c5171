"""Random streams of a training run, keyed by position so that runs are reproducible and resumable.

Every chunk of every phase of every step reseeds the global torch generators from
(seed, step, phase, global chunk index) before drawing anything (latents, cameras, pose swaps,
renderer jitter, backbone noise, augmentation, patch positions). Consequences:

- a run depends only on its seed and counters, so resuming at step k continues exactly;
- chunk k of the global batch draws the same numbers whichever process computes it, so a run
  on several processes equals a single-process run with the same ``batch_gpu``.

The process-wide generator states (torch CPU and CUDA, numpy, python) are still captured in
snapshots and restored, for code outside the loop that draws from them.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

SEED_BITS = 63


def stream_seed(*keys: int) -> int:
    """A well-mixed non-negative 63-bit seed from integer keys (numpy's SeedSequence hashing)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0]
    return int(state) >> (64 - SEED_BITS)


def seed_chunk(seed: int, step: int, phase: int, chunk: int) -> None:
    """Reseed the global torch generators (CPU and every CUDA device) for one chunk of one phase."""
    torch.manual_seed(stream_seed(seed, step, phase, chunk))


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Process-wide generator states: tensors (torch) and JSON data (numpy, python)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda{index}"] = state
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64))
    version, internal, gauss_next = random.getstate()
    data = {
        "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }
    return tensors, data


def restore_rng_state(tensors: dict[str, torch.Tensor], data: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state`` (CUDA states only where the devices exist)."""
    torch.set_rng_state(tensors["torch_cpu"].to(torch.uint8))
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda")]
        for index, state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state.to(torch.uint8), index)
    numpy_state = data["numpy"]
    keys = tensors["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (numpy_state["kind"], keys, numpy_state["pos"], numpy_state["has_gauss"], numpy_state["gauss"])
    )
    python_state = data["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss_next"]))
