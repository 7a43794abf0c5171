"""A two-GPU ``torchrun`` training step (NCCL, one process per GPU), when two GPUs exist."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from training_support import write_random_dataset


def test_two_gpu_torchrun_step(cuda_only, tmp_path) -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    data = write_random_dataset(tmp_path / "data")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "mimic3d.cli.main", "train", "tiny-eg3d-heads", f"data.path={data}", "run.device=cuda",
        "run.batch_size=4", "run.batch_gpu=2", "discriminator.mbstd_group_size=2", "run.grid_size=0",
        "run.video_frames=0", "data.workers=0", "--max-steps", "2", "--outdir", str(tmp_path / "runs"),
        "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "max_steps" in done.stdout
    assert list((tmp_path / "runs").glob("*/snapshots/*"))
