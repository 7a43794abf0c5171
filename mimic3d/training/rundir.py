"""Run folders: ``<outdir>/<NNNNN>-<name>/`` (numbered like EG3D's), and finding the latest one.

A run folder holds ``config.yaml`` from its start (written atomically before training), and a
``latest`` snapshot pointer from its first snapshot on; a run stopped in between is resumed by
starting it over from its ``config.yaml`` (``restart_run_dir``).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from mimic3d.training.snapshot import LATEST_FILE, SNAPSHOT_DIR, latest_snapshot, remove_incomplete

CONFIG_FILE = "config.yaml"
# What a start-over deletes: the records of the steps that no snapshot kept.
RESTART_FILES = ("stats.jsonl", "events.out.tfevents.*")

_RUN_PATTERN = re.compile(r"^(\d{5})-(.+)$")


def _numbered_runs(outdir: Path) -> list[tuple[int, str, Path]]:
    if not outdir.is_dir():
        return []
    runs = []
    for child in outdir.iterdir():
        match = _RUN_PATTERN.match(child.name)
        if match and child.is_dir():
            runs.append((int(match.group(1)), match.group(2), child))
    return sorted(runs)


def run_name(run_dir: str | os.PathLike) -> str:
    """NAME of a run folder ``NNNNN-NAME`` (the preset or --name it was started with)."""
    folder = Path(run_dir).absolute().name
    match = _RUN_PATTERN.match(folder)
    return match.group(2) if match else folder


def new_run_dir(outdir: str | os.PathLike, name: str) -> Path:
    """Create ``<outdir>/<next number>-<name>`` and return it."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ValueError(f"run name {name!r}: use letters, digits, '.', '_' and '-' only")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    runs = _numbered_runs(outdir)
    number = runs[-1][0] + 1 if runs else 0
    while True:
        path = outdir / f"{number:05d}-{name}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            number += 1


def remove_unused_run_dir(path: str | os.PathLike) -> None:
    """Delete a run folder that a failed start left without any snapshot (keeps ``outdir`` tidy)."""
    path = Path(path)
    if path.is_dir() and not (path / LATEST_FILE).exists() and not (path / SNAPSHOT_DIR).exists():
        shutil.rmtree(path, ignore_errors=True)


def has_no_snapshot_yet(path: str | os.PathLike) -> bool:
    """A run folder that started (it has ``config.yaml``) but was stopped before its first snapshot."""
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and latest_snapshot(path) is None


def restart_run_dir(path: str | os.PathLike) -> None:
    """Clear what an attempt that never reached a snapshot left (statistics, TensorBoard events,
    half-written snapshots) so that the run starts over cleanly; ``config.yaml`` and ``log.txt`` stay."""
    path = Path(path)
    for pattern in RESTART_FILES:
        for leftover in path.glob(pattern):
            leftover.unlink()
    remove_incomplete(path)


def latest_run_dir(outdir: str | os.PathLike, name: str | None = None) -> Path:
    """The highest-numbered run under ``outdir`` (optionally of run ``name``) that has a snapshot or
    at least its ``config.yaml`` (stopped before its first snapshot)."""
    candidates = [
        path
        for _, run_name, path in _numbered_runs(Path(outdir))
        if (name is None or run_name == name)
        and ((path / LATEST_FILE).is_file() or (path / CONFIG_FILE).is_file())
    ]
    if not candidates:
        which = f" named {name!r}" if name else ""
        raise FileNotFoundError(f"resume latest: no run{which} to resume under {outdir}")
    return candidates[-1]
