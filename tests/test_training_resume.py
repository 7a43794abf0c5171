"""Runs that survive: bit-exact resume, crash-safe snapshots, NaN handling."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from training_support import (
    RESUME_OVERRIDES,
    assert_identical_states,
    tiny_config,
    training_state,
    write_random_dataset,
)

import mimic3d.training.snapshot as snapshot_module
from mimic3d.training.loop import Trainer, TrainingDiverged
from mimic3d.training.snapshot import (
    INCOMPLETE_PREFIX,
    LATEST_FILE,
    SNAPSHOT_DIR,
    latest_snapshot,
    load_snapshot,
    resolve_snapshot,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_random_dataset(tmp_path_factory.mktemp("training_resume") / "data")


def test_resumed_run_equals_straight_run_bit_for_bit(dataset, tmp_path):
    config = tiny_config("e2e", dataset, *RESUME_OVERRIDES)
    straight = Trainer(config, tmp_path / "straight", progress_bar=False)
    result = straight.run(max_steps=4)
    assert (result.status, result.step) == ("max_steps", 4)
    expected = training_state(straight)
    assert float(expected["augment_p"]) != 0.5  # ADA moved p: its state matters for the comparison

    first = Trainer(config, tmp_path / "split", progress_bar=False)
    first.run(max_steps=2)
    snapshot, run_dir = resolve_snapshot(tmp_path / "split")
    assert run_dir == tmp_path / "split" and snapshot.name == "snapshot-0000000008"
    second = Trainer(config, run_dir, resume=snapshot, progress_bar=False)
    assert (second.step, second.cur_nimg, second.stream.position) == (2, 8, 8)
    second.run(max_steps=4)
    assert_identical_states(training_state(second), expected)
    assert second.ada.state_dict() == straight.ada.state_dict()
    # Resuming restores the process-wide generators too.
    _, _, state = load_snapshot(latest_snapshot(run_dir))
    assert state.counters == {"step": 4, "cur_nimg": 16, "data_position": 16}


@pytest.mark.parametrize("crash_in", ["save_checkpoint", "save_file", "rename", "write_text_atomic"])
def test_crash_while_writing_keeps_the_previous_latest(dataset, tmp_path, monkeypatch, crash_in):
    config = tiny_config("eg3d", dataset)
    trainer = Trainer(config, tmp_path / "run", progress_bar=False)
    trainer.train_step()
    good = trainer.save()
    good_weights = (good / "G" / "model.safetensors").read_bytes()
    trainer.train_step()

    class Crash(BaseException):
        pass

    def crash(*args, **kwargs):
        raise Crash

    target = {"rename": (snapshot_module.os, "rename")}.get(crash_in, (snapshot_module, crash_in))
    monkeypatch.setattr(*target, crash)
    with pytest.raises(Crash):
        trainer.save()
    monkeypatch.undo()

    assert latest_snapshot(tmp_path / "run") == good
    assert (good / "G" / "model.safetensors").read_bytes() == good_weights
    networks, metadata, state = load_snapshot(good)
    assert metadata["step"] == 1 and state.counters["step"] == 1
    # A resume from 'latest' works, and the next snapshot clears the leftovers.
    resumed = Trainer(config, tmp_path / "run", resume=latest_snapshot(tmp_path / "run"), progress_bar=False)
    assert resumed.step == 1
    resumed.train_step()
    newest = resumed.save()
    assert latest_snapshot(tmp_path / "run") == newest
    assert not [
        p for p in (tmp_path / "run" / SNAPSHOT_DIR).iterdir() if p.name.startswith(INCOMPLETE_PREFIX)
    ]
    trainer.monitor.close()
    resumed.monitor.close()


HARD_KILL = textwrap.dedent(
    """
    import os, sys
    import torch
    from mimic3d.models import TriplaneGenerator, generator_preset
    import mimic3d.training.snapshot as snap

    run_dir = sys.argv[1]
    G = TriplaneGenerator(generator_preset("tiny-eg3d"))
    state = snap.TrainingState({"step": 1}, {}, {"x": torch.zeros(3)}, {})
    snap.save_snapshot(run_dir, "snapshot-0000000001", {"G_ema": G}, state)
    real_save_file = snap.save_file

    def half_written(tensors, path, *args, **kwargs):
        real_save_file(tensors, path, *args, **kwargs)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        os._exit(9)  # killed mid-write: no cleanup, no finally blocks

    snap.save_file = half_written
    with torch.no_grad():
        next(G.parameters()).add_(1)
    second = snap.TrainingState({"step": 2}, {}, {"x": torch.ones(3)}, {})
    snap.save_snapshot(run_dir, "snapshot-0000000002", {"G_ema": G}, second)
    """
)


def test_hard_kill_mid_write_never_corrupts_latest(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", HARD_KILL, str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 9, proc.stderr
    assert (tmp_path / LATEST_FILE).read_text().strip() == "snapshot-0000000001"
    leftovers = [p.name for p in (tmp_path / SNAPSHOT_DIR).iterdir() if p.name.startswith(INCOMPLETE_PREFIX)]
    assert leftovers, "the killed write should have left its staging folder behind"
    networks, _, state = load_snapshot(latest_snapshot(tmp_path))
    assert state.counters == {"step": 1} and torch.equal(state.tensors["x"], torch.zeros(3))
    assert "G_ema" in networks


def test_nan_loss_stops_the_run_and_keeps_the_last_good_snapshot(dataset, tmp_path):
    config = tiny_config("eg3d", dataset)
    trainer = Trainer(config, tmp_path / "run", progress_bar=False)
    trainer.run(max_steps=1)
    good = latest_snapshot(tmp_path / "run")
    listing = sorted(p.name for p in (tmp_path / "run" / SNAPSHOT_DIR).iterdir())

    poisoned = Trainer(config, tmp_path / "run", resume=good, progress_bar=False)
    with torch.no_grad():
        poisoned.nets.G.decoder.net[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"non-finite loss in phase\(s\) Gmain.*last good snapshot"):
        poisoned.run(max_steps=3)
    assert latest_snapshot(tmp_path / "run") == good
    assert sorted(p.name for p in (tmp_path / "run" / SNAPSHOT_DIR).iterdir()) == listing
    _, _, state = load_snapshot(good)
    assert state.counters["step"] == 1
