"""Thread counts on a busy machine: ``idle_cpus`` from the load average, ``busy_machine_threads``
(which leaves a user's ``OMP_NUM_THREADS`` alone), the demo that uses only the idle cores and the
trainer that warns instead of changing its thread count."""

from __future__ import annotations

import os

import pytest
import torch

from mimic3d import runtime
from mimic3d.cli import demo
from mimic3d.cli.main import main
from mimic3d.training.report import Report


@pytest.fixture
def threads():
    """Restore torch's intra-op thread count (the suite's) after a test that changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("load, idle", [(0.0, 4), (1.2, 3), (2.6, 1), (9.0, 1)])
def test_idle_cores_are_the_available_ones_less_the_rounded_load(monkeypatch, load, idle):
    monkeypatch.setattr(runtime, "available_cpus", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, 0.0, 0.0))
    assert runtime.idle_cpus() == idle


def test_without_a_load_average_every_available_core_counts_as_idle(monkeypatch):
    def unsupported():
        raise OSError("no load average here")

    monkeypatch.setattr(runtime, "available_cpus", lambda: 3)
    monkeypatch.setattr(os, "getloadavg", unsupported)
    assert runtime.idle_cpus() == 3


def test_busy_machine_threads_only_when_torch_has_more_threads_than_idle_cores(monkeypatch, threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    monkeypatch.setattr(runtime, "idle_cpus", lambda: 1)
    assert runtime.busy_machine_threads() == 1
    monkeypatch.setattr(runtime, "idle_cpus", lambda: 2)
    assert runtime.busy_machine_threads() is None
    monkeypatch.setattr(runtime, "idle_cpus", lambda: 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's choice stands
    assert runtime.busy_machine_threads() is None


def test_the_demo_uses_the_idle_cores(monkeypatch, tmp_path, capsys, threads):
    torch.set_num_threads(2)
    monkeypatch.setattr(demo, "busy_machine_threads", lambda: 1)
    seen = {}

    def shipped(outdir, video_frames):
        seen["threads"] = torch.get_num_threads()
        (outdir / "heads64").mkdir(parents=True)
        return Report(outdir / "heads64")

    monkeypatch.setattr(demo, "show_shipped_model", shipped)
    assert main(["demo", "--no-training", "--outdir", str(tmp_path)]) == 0
    assert seen["threads"] == 1
    assert "using the 1 idle one(s) instead of torch's 2 threads" in capsys.readouterr().err


def test_the_trainer_warns_and_keeps_its_thread_count(monkeypatch, tmp_path, threads):
    from training_support import tiny_config, write_random_dataset

    from mimic3d.training import loop

    config = tiny_config("eg3d", write_random_dataset(tmp_path / "data"))
    monkeypatch.setattr(runtime, "busy_machine_threads", lambda: 1)
    torch.set_num_threads(2)
    trainer = loop.Trainer(config, tmp_path / "run", progress_bar=False)
    trainer._announce()
    assert torch.get_num_threads() == 2
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "warning: other work holds cores, 1 idle for torch's 2 threads" in log
    assert "set OMP_NUM_THREADS=1" in log
