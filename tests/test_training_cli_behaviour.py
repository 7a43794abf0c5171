"""``mimic3d train`` does what its flags say: exact step counts, resuming finished or foreign runs,
paths that survive a move, batch combinations checked before anything starts, every fatal error in
log.txt, and ``run.init_from`` saying what it used."""

from __future__ import annotations

import math
import os
import shutil

import pytest
import torch
from training_support import TINY, tiny_config, write_random_dataset

import mimic3d
from mimic3d.cli.main import main
from mimic3d.training.loop import Trainer, TrainingDiverged
from mimic3d.training.snapshot import latest_snapshot, load_snapshot

# 4 images per step: 0.004 kimg.
BASE = ["tiny-eg3d-heads", *TINY, "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_random_dataset(tmp_path_factory.mktemp("data") / "data")


def _train(outdir, *argv: str) -> int:
    return main(["train", *argv, "--outdir", str(outdir)])


def _step(run_dir) -> int:
    return load_snapshot(latest_snapshot(run_dir))[2].counters["step"]


def test_max_steps_counts_every_step_and_a_finished_run_trains_no_more(data, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert _train(runs, *BASE, f"data.path={data}", "--max-steps", "2", "run.total_kimg=0.012") == 0
    run_dir = runs / "00000-tiny-eg3d-heads"
    assert _step(run_dir) == 2
    first = latest_snapshot(run_dir)
    # Resuming at (or past) --max-steps trains nothing and says so.
    assert _train(runs, "--resume", str(run_dir), "--max-steps", "2", "--no-progress") == 0
    assert "nothing to train" in capsys.readouterr().out and latest_snapshot(run_dir) == first
    assert _train(runs, "--resume", str(run_dir), "--no-progress") == 0  # to total_kimg: 3 steps
    assert _step(run_dir) == 3
    capsys.readouterr()
    # A finished run stays finished, without a step past total_kimg ...
    assert _train(runs, "--resume", str(run_dir), "--no-progress") == 0
    out = capsys.readouterr().out
    assert out.startswith("finished:") and "nothing to train" in out and _step(run_dir) == 3
    assert "finished already at step 3" in (run_dir / "log.txt").read_text()
    # ... until run.total_kimg grows.
    assert _train(runs, "--resume", str(run_dir), "run.total_kimg=0.016", "--no-progress") == 0
    assert _step(run_dir) == 4


def test_resume_refuses_another_presets_run_and_keeps_the_dataset_path(data, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(data, work / "data")
    monkeypatch.chdir(work)
    assert _train("runs", *BASE, "data.path=data", "--max-steps", "1") == 0  # a relative path
    run_dir = work / "runs" / "00000-tiny-eg3d-heads"
    monkeypatch.chdir(tmp_path)  # resumed from elsewhere: the saved path is absolute
    assert main(["train", "--resume", str(run_dir), "--max-steps", "2", "--no-progress"]) == 0
    assert _step(run_dir) == 2
    # The preset a run was started with may be repeated; another one is a mistake, named.
    assert (
        main(["train", "tiny-eg3d-heads", "--resume", str(run_dir), "--max-steps", "3", "--no-progress"]) == 0
    )
    capsys.readouterr()
    assert main(["train", "tiny-mimic3d-heads", "--resume", str(run_dir), "--max-steps", "4"]) == 2
    err = capsys.readouterr().err
    assert "--resume: " in err and "'tiny-eg3d-heads', not 'tiny-mimic3d-heads'" in err
    # A moved dataset: an override replaces the saved path.
    shutil.move(str(work / "data"), str(tmp_path / "moved"))
    assert main(["train", "--resume", str(run_dir), "--max-steps", "4", "--no-progress"]) == 2
    assert "data" in capsys.readouterr().err and "could not resume" in (run_dir / "log.txt").read_text()
    argv = ["train", "--resume", str(run_dir), f"data.path={tmp_path / 'moved'}", "--max-steps", "4"]
    assert main([*argv, "--no-progress"]) == 0 and _step(run_dir) == 4


def test_batch_and_minibatch_groups_are_checked_before_anything_starts(data, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert _train(runs, *BASE, f"data.path={data}", "run.batch_size=7", "--max-steps", "1") == 2
    err = capsys.readouterr().err
    assert "run.batch_size=7: chunks of 7 images" in err and "discriminator.mbstd_group_size=4" in err
    assert not runs.exists() or not any(runs.iterdir())


def test_every_fatal_error_reaches_log_txt(data, tmp_path, monkeypatch):
    def broken_step(self):
        raise RuntimeError("out of memory in the middle of a step")

    monkeypatch.setattr(Trainer, "train_step", broken_step)
    with pytest.raises(RuntimeError):
        _train(tmp_path / "runs", *BASE, f"data.path={data}", "--max-steps", "1")
    log = (tmp_path / "runs" / "00000-tiny-eg3d-heads" / "log.txt").read_text()
    assert "stopped by RuntimeError: out of memory in the middle of a step" in log


def test_a_nan_before_the_first_snapshot_says_there_is_none(data, tmp_path):
    trainer = Trainer(tiny_config("eg3d", data), tmp_path / "run", progress_bar=False)
    accumulate = trainer.loss.accumulate

    def diverging(*args):
        result = accumulate(*args)
        result.objective = result.objective * math.nan
        return result

    trainer.loss.accumulate = diverging
    with pytest.raises(TrainingDiverged, match="No snapshot was written before it") as caught:
        trainer.run()
    assert "latest" not in str(caught.value) and "optim.g_lr" in str(caught.value)
    assert "stopped by TrainingDiverged" in (tmp_path / "run" / "log.txt").read_text()


def test_init_from_logs_its_source_and_what_stays_random(data, tmp_path):
    runs = tmp_path / "runs"
    assert _train(runs, *BASE, f"data.path={data}", "--max-steps", "1") == 0
    first = runs / "00000-tiny-eg3d-heads"
    ema_only = mimic3d.save(tmp_path / "ema.safetensors", mimic3d.load(first))
    assert _train(runs, *BASE, f"data.path={data}", f"run.init_from={ema_only}", "--max-steps", "1") == 0
    log = (runs / "00001-tiny-eg3d-heads" / "log.txt").read_text()
    assert f"init_from: starting from {ema_only} (it holds G_ema)" in log
    assert "init_from: G copied" in log and "init_from: D stays randomly initialised" in log
    # A run folder resolves to its latest snapshot, and the log names that snapshot.
    assert _train(runs, *BASE, f"data.path={data}", f"run.init_from={first}", "--max-steps", "1") == 0
    log = (runs / "00002-tiny-eg3d-heads" / "log.txt").read_text()
    assert f"starting from {latest_snapshot(first)} (it holds D, G, G_ema)" in log and "D copied" in log


def test_checkpoint_files_follow_the_umask(data, tmp_path):
    previous = os.umask(0o022)
    try:
        assert _train(tmp_path / "runs", *BASE, f"data.path={data}", "--max-steps", "1") == 0
        run_dir = tmp_path / "runs" / "00000-tiny-eg3d-heads"
        snapshot = latest_snapshot(run_dir)
        for path in (
            run_dir / "latest",
            snapshot / "checkpoint.json",
            snapshot / "G_ema" / "model.safetensors",
        ):
            assert path.stat().st_mode & 0o777 == 0o644, path
        os.umask(0o077)
        saved = mimic3d.save(tmp_path / "private.safetensors", mimic3d.load(snapshot))
        assert saved.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(previous)
    assert torch.equal(
        mimic3d.load(saved).backbone.mapping.w_avg, mimic3d.load(snapshot).backbone.mapping.w_avg
    )
