"""Where a checkpoint path points: the one resolver behind every command and function that takes one.

Accepted, for ``mimic3d.load``, ``load_networks``, every tool command, ``mimic3d metrics`` and
``run.init_from``:

- a run folder (``<run>/latest`` names its newest snapshot): that snapshot;
- a snapshot folder (``<run>/snapshots/snapshot-N``) or any portable checkpoint folder;
- a network folder inside one (``<checkpoint>/G_ema``, ``.../G``, ``.../D``): that network alone,
  and also its ``model.safetensors`` file;
- a portable ``.safetensors`` file, or an official EG3D/Mimic3D network pickle.

``~`` and ``$VARIABLES`` are expanded. Nothing is read beyond the small pointer and index files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mimic3d.checkpoints.portable import CHECKPOINT_FILE, CONFIG_FILE, WEIGHTS_FILE
from mimic3d.paths import expand_path

# The layout of a training run (``mimic3d.training.snapshot`` writes it).
LATEST_FILE = "latest"
SNAPSHOT_DIR = "snapshots"


@dataclass(frozen=True)
class CheckpointLocation:
    """A resolved checkpoint: ``path`` to read; ``network`` names the one network a network folder
    holds (None for a whole checkpoint); ``run_dir`` is the run folder it belongs to, if any."""

    path: Path
    network: str | None = None
    run_dir: Path | None = None

    @property
    def results_dir(self) -> Path:
        """Where results about this checkpoint belong: its run folder, else the folder holding it."""
        return self.run_dir if self.run_dir is not None else self.path.absolute().parent


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / LATEST_FILE).is_file() or (path / SNAPSHOT_DIR).is_dir())


def latest_checkpoint(run_dir: Path) -> Path:
    """The snapshot folder ``<run>/latest`` names; ValueError/FileNotFoundError when there is none."""
    pointer = run_dir / LATEST_FILE
    if not pointer.is_file():
        raise FileNotFoundError(f"{run_dir}: run folder without a snapshot yet (no {LATEST_FILE} file)")
    name = pointer.read_text(encoding="utf-8").strip()
    folder = run_dir / SNAPSHOT_DIR / name
    if not name or not (folder / CHECKPOINT_FILE).is_file():
        raise ValueError(f"{pointer}: names {name!r}, which is not a complete snapshot in {folder.parent}")
    return folder


def _run_of(snapshot: Path) -> Path | None:
    """The run folder of a snapshot folder, if it sits in one."""
    parent = snapshot.absolute().parent
    return parent.parent if parent.name == SNAPSHOT_DIR and is_run_dir(parent.parent) else None


def resolve_checkpoint(path: str | os.PathLike) -> CheckpointLocation:
    """The checkpoint ``path`` names (see the module docstring); FileNotFoundError when it does not exist."""
    path = Path(expand_path(path))
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_file() and path.name == WEIGHTS_FILE and (path.parent / CONFIG_FILE).is_file():
        path = path.parent  # a network folder's weights: the folder has its config
    if not path.is_dir():
        return CheckpointLocation(path)
    if is_run_dir(path):
        return CheckpointLocation(latest_checkpoint(path), run_dir=path)
    if not (path / CHECKPOINT_FILE).is_file() and (path / CONFIG_FILE).is_file():
        return CheckpointLocation(path, network=path.name, run_dir=_run_of(path.absolute().parent))
    return CheckpointLocation(path, run_dir=_run_of(path))
