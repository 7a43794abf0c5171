"""Training killed with SIGKILL at random instants and resumed with ``--resume latest``, again and
again, loses nothing: it ends at the same step count and parameters as a run never interrupted, every
snapshot folder loads at any time, and ``latest`` always names a complete snapshot.

Each attempt is ``mimic3d train`` in a child process (forked where the platform allows, so that it
does not pay for importing torch again) that snapshots after every step. Kills land at uniformly
random instants of the attempt and, on purpose, in the middle of a snapshot write; the first one
is early enough to stop the run before its first snapshot, which a resume then starts over.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
from training_support import TINY, adam_moves, assert_same_training, write_random_dataset

import mimic3d.training.snapshot as snapshot_module
from mimic3d.cli.main import main
from mimic3d.models import TriplaneGenerator, generator_preset
from mimic3d.training.loop import Trainer
from mimic3d.training.presets import config_to_yaml, load_config
from mimic3d.training.rundir import CONFIG_FILE, has_no_snapshot_yet
from mimic3d.training.snapshot import (
    INCOMPLETE_PREFIX,
    LATEST_FILE,
    SNAPSHOT_DIR,
    SNAPSHOT_PREFIX,
    TrainingState,
    latest_snapshot,
    load_snapshot,
    save_snapshot,
)

PRESET = "tiny-eg3d-heads"
STEPS = 8
BATCH = 4  # TINY's run.batch_size
# A snapshot after every step, the 3 newest kept: pruning runs under the kills as well.
OVERRIDES = [*TINY, "run.snapshot_kimg=0.004", "run.keep_snapshots=3"]
# How each attempt but the last ends: "early" once the run folder exists, before its first snapshot
# (a resume then starts the run over); "write" in the middle of its 1st to 3rd snapshot write;
# "random" at a uniform instant of its next 1.5 s once it has written a snapshot.
KILLS = ["early", "write", "random", "write", "random"]
ATTEMPT_SECONDS = 60.0  # a generous bound on one uninterrupted attempt


def _train(argv: list[str], log: str) -> None:
    """Child process: ``mimic3d train ARGV`` with its output in ``log``."""
    with open(log, "a", encoding="utf-8") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        sys.stdout = sys.stderr = out
        code = main(["train", *argv])
        out.flush()
    os._exit(code)  # no pytest teardown in a forked child


def _observe(outdir: Path) -> tuple[bool, set[str], str | None]:
    """(whether the run folder has its config, the names of the snapshot writes in progress, what
    ``latest`` says) for the run under ``outdir``."""
    started, writes, latest = False, set(), None
    for run in outdir.glob("0*"):
        started |= (run / CONFIG_FILE).is_file()
        if (run / SNAPSHOT_DIR).is_dir():
            writes |= {c.name for c in (run / SNAPSHOT_DIR).iterdir() if c.name.startswith(INCOMPLETE_PREFIX)}
        if (run / LATEST_FILE).is_file():
            latest = (run / LATEST_FILE).read_text()
    return started, writes, latest


def _kill_when(process, how: str, rng: random.Random, outdir: Path) -> str:
    """SIGKILL ``process`` as ``how`` says; returns what happened, for the failure message."""
    start = time.monotonic()
    deadline = start + ATTEMPT_SECONDS
    writes_seen: set[str] = set()
    wanted_write = rng.randint(1, 3)
    _, _, first_latest = _observe(outdir)
    while process.is_alive() and time.monotonic() < deadline:
        started, writes, latest = _observe(outdir)
        writes_seen |= writes
        if how == "early" and started:
            time.sleep(rng.uniform(0.0, 0.05))
            break
        if how == "write" and len(writes_seen) >= wanted_write:
            time.sleep(rng.uniform(0.0, 0.005))
            break
        if how == "random" and latest != first_latest:
            deadline = min(deadline, time.monotonic() + rng.uniform(0.0, 1.5))
        time.sleep(0.001)
    if not process.is_alive():
        return f"{how}: finished before the kill"
    process.kill()
    process.join()
    return f"{how}: killed after {time.monotonic() - start:.2f} s"


def _check_run_folder(run_dir: Path) -> int:
    """Every snapshot folder loads and is consistent, and ``latest`` names a complete one; returns
    the step ``latest`` names (0 without a snapshot yet)."""
    for folder in sorted((run_dir / SNAPSHOT_DIR).glob(f"{SNAPSHOT_PREFIX}*")):
        _, metadata, state = load_snapshot(folder)
        cur_nimg = int(folder.name.removeprefix(SNAPSHOT_PREFIX))
        assert state.counters == {"step": cur_nimg // BATCH, "cur_nimg": cur_nimg, "data_position": cur_nimg}
        assert metadata["step"] == cur_nimg // BATCH
    if not (run_dir / LATEST_FILE).exists():
        return 0
    _, _, state = load_snapshot(latest_snapshot(run_dir))
    return state.counters["step"]


def _state(networks) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{key}": value.detach().clone()
        for name, module in networks.items()
        for key, value in module.state_dict().items()
    }


def test_sigkill_at_random_instants_and_resume_latest_loses_nothing(tmp_path):
    data = write_random_dataset(tmp_path / "data")
    # The run never interrupted (first: it also imports what the forked attempts need).
    config, _ = load_config(PRESET, [f"data.path={data}", *OVERRIDES])
    straight = Trainer(config, tmp_path / "straight", progress_bar=False)
    result = straight.run(max_steps=STEPS)
    assert (result.step, result.cur_nimg) == (STEPS, STEPS * BATCH)
    outdir = tmp_path / "runs"
    common = [
        f"data.path={data}",
        *OVERRIDES,
        "--outdir",
        str(outdir),
        "--max-steps",
        str(STEPS),
        "--no-progress",
    ]
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    log = tmp_path / "attempts.log"
    history: list[str] = []
    for attempt in range(len(KILLS) + 3):
        runs = sorted(outdir.glob("0*"))
        assert len(runs) <= 1, f"a resume started another run folder: {runs} (seed {seed}, {history})"
        step = _check_run_folder(runs[0]) if runs else 0
        if step == STEPS:
            break
        argv = ["--resume", "latest", *common] if runs else [PRESET, *common]
        process = context.Process(target=_train, args=(argv, str(log)))
        process.start()
        if attempt < len(KILLS):
            history.append(f"from step {step}: " + _kill_when(process, KILLS[attempt], rng, outdir))
        else:
            process.join(timeout=120)
            history.append(f"from step {step}: ran to the end, exit code {process.exitcode}")
            assert process.exitcode == 0, f"seed {seed}, {history}:\n{log.read_text()}"
    context_message = f"seed {seed}, attempts {history}:\n{log.read_text()}"
    (run_dir,) = sorted(outdir.glob("0*"))
    assert _check_run_folder(run_dir) == STEPS, context_message
    networks, _, state = load_snapshot(latest_snapshot(run_dir))
    assert state.counters == {"step": STEPS, "cur_nimg": STEPS * BATCH, "data_position": STEPS * BATCH}
    kept = sorted(p.name for p in (run_dir / SNAPSHOT_DIR).iterdir() if p.name.startswith(SNAPSHOT_PREFIX))
    assert len(kept) <= 3, kept
    if history[0].startswith("from step 0: early: killed") and history[1].startswith("from step 0"):
        assert "has no snapshot yet (stopped before its first one); starting it over" in log.read_text()

    # The same steps as the run never interrupted: counters exactly, parameters to rounding.
    assert_same_training(_state(networks), _state(straight.nets.named()), adam_moves(straight, STEPS))


def test_resume_of_a_run_without_snapshot_starts_it_over(tmp_path, capsys):
    """A run folder stopped before its first snapshot (config.yaml, a log, statistics of lost
    steps) resumes by starting over in the same folder, with a message, by path and as latest."""
    data = write_random_dataset(tmp_path / "data")
    outdir = tmp_path / "runs"
    config, _ = load_config(PRESET, [f"data.path={data}", *OVERRIDES])
    run_dir = outdir / f"00000-{PRESET}"
    run_dir.mkdir(parents=True)
    (run_dir / CONFIG_FILE).write_text(config_to_yaml(config))
    (run_dir / "stats.jsonl").write_text('{"Progress/kimg": 0.004}\n')
    (run_dir / SNAPSHOT_DIR / f"{INCOMPLETE_PREFIX}snapshot-0000000004-1").mkdir(parents=True)
    args = ["--outdir", str(outdir), "--max-steps", "1", "--no-progress"]
    assert main(["train", "--resume", str(run_dir), *args]) == 0
    assert "has no snapshot yet (stopped before its first one); starting it over" in capsys.readouterr().out
    assert _check_run_folder(run_dir) == 1
    assert len((run_dir / "stats.jsonl").read_text().splitlines()) == 1  # the lost step's line is gone
    assert not list((run_dir / SNAPSHOT_DIR).glob(f"{INCOMPLETE_PREFIX}*"))
    (run_dir / LATEST_FILE).unlink()
    shutil.rmtree(run_dir / SNAPSHOT_DIR)
    assert main(["train", "--resume", "latest", *args]) == 0
    assert "starting it over" in capsys.readouterr().out
    assert sorted(p.name for p in outdir.iterdir()) == [run_dir.name]


def test_a_kill_between_replacing_renames_keeps_latest_complete(tmp_path, monkeypatch):
    """Re-writing an existing snapshot moves the old folder aside, then renames the new one into
    place; killed in between, ``latest`` names a missing folder until the old one is moved back."""
    G = TriplaneGenerator(generator_preset("tiny-eg3d"))
    name = "snapshot-0000000004"
    state = TrainingState({"step": 1}, {}, {"x": torch.zeros(3)}, {})
    save_snapshot(tmp_path, name, {"G_ema": G}, state)
    renames, rename = [], os.rename

    def rename_then_die(source, target):
        renames.append(target)
        if len(renames) == 2:  # the new folder's rename: the old one is already aside
            raise KeyboardInterrupt
        rename(source, target)

    monkeypatch.setattr(snapshot_module.os, "rename", rename_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_snapshot(tmp_path, name, {"G_ema": G}, TrainingState({"step": 2}, {}, {"x": torch.ones(3)}, {}))
    monkeypatch.undo()
    assert not (tmp_path / SNAPSHOT_DIR / name).exists()
    _, _, restored = load_snapshot(latest_snapshot(tmp_path))  # moved back into place
    assert restored.counters == {"step": 1}
    save_snapshot(tmp_path, name, {"G_ema": G}, TrainingState({"step": 2}, {}, {"x": torch.ones(3)}, {}))
    _, _, replaced = load_snapshot(latest_snapshot(tmp_path))
    assert replaced.counters == {"step": 2}
    assert sorted(p.name for p in (tmp_path / SNAPSHOT_DIR).iterdir()) == [name]


def test_a_kill_while_pruning_leaves_no_half_deleted_snapshot(tmp_path, monkeypatch):
    """Old snapshots are renamed out of the ``snapshot-*`` names before they are deleted: a kill
    in the middle of the deletion leaves only loadable snapshot folders."""
    G = TriplaneGenerator(generator_preset("tiny-eg3d"))
    for step in (1, 2):
        save_snapshot(
            tmp_path, f"snapshot-{step:010d}", {"G_ema": G}, TrainingState({"step": step}, {}, {}, {})
        )

    def delete_one_file_then_die(path, ignore_errors=False):
        next(p for p in Path(path).rglob("*") if p.is_file()).unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(snapshot_module.shutil, "rmtree", delete_one_file_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_snapshot(
            tmp_path, "snapshot-0000000003", {"G_ema": G}, TrainingState({"step": 3}, {}, {}, {}), keep=2
        )
    monkeypatch.undo()
    names = sorted(p.name for p in (tmp_path / SNAPSHOT_DIR).glob(f"{SNAPSHOT_PREFIX}*"))
    assert names == ["snapshot-0000000002", "snapshot-0000000003"]
    for name in names:
        load_snapshot(tmp_path / SNAPSHOT_DIR / name)
    assert latest_snapshot(tmp_path).name == "snapshot-0000000003"


def test_a_first_snapshot_without_latest_is_still_found(tmp_path, monkeypatch):
    """Killed after the first snapshot was renamed into place but before ``latest`` was written:
    the snapshot is complete, and readers (and ``--resume``) use it rather than start over."""
    G = TriplaneGenerator(generator_preset("tiny-eg3d"))

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(snapshot_module, "write_text_atomic", die)
    with pytest.raises(KeyboardInterrupt):
        save_snapshot(tmp_path, "snapshot-0000000004", {"G_ema": G}, TrainingState({"step": 1}, {}, {}, {}))
    monkeypatch.undo()
    assert not (tmp_path / LATEST_FILE).exists()
    assert latest_snapshot(tmp_path) == tmp_path / SNAPSHOT_DIR / "snapshot-0000000004"
    (tmp_path / CONFIG_FILE).write_text("{}")
    assert not has_no_snapshot_yet(tmp_path)
