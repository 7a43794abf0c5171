"""Crash-safe training snapshots: networks, optimisers, random states and counters.

A snapshot is a folder ``<run>/snapshots/snapshot-<images shown>/`` holding a portable checkpoint
(``checkpoint.json`` + one folder per network, see ``mimic3d.checkpoints.portable``) plus
``training_state.safetensors`` (optimiser moments, random-generator states) and
``training_state.json`` (counters, optimiser hyper-parameters, the resolved config).

Commit protocol, so that killing the process at any instant never loses the last good snapshot:
1. everything is written into ``snapshots/.incomplete-<name>-<pid>/`` (each file fsynced);
2. the folder is renamed to its final name (atomic on one file system);
3. the text file ``<run>/latest`` is replaced atomically (temporary file + ``os.replace``) with
   the new folder's name; only then are snapshots beyond ``keep`` deleted (each renamed to an
   ``.incomplete-`` name first).
A reader follows ``latest``, which only ever names a complete folder; leftovers of an interrupted
write are removed by the next ``save_snapshot``. Re-writing a snapshot that already exists (same
images shown, after resuming from an older one) moves the old folder aside first: a kill between
the two renames leaves ``latest`` naming a missing folder for an instant, so readers and the next
write first move such an aside copy back (``restore_replaced``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mimic3d.checkpoints.atomic import fsync_dir, write_text_atomic
from mimic3d.checkpoints.portable import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from mimic3d.checkpoints.resolve import LATEST_FILE, SNAPSHOT_DIR

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"
INCOMPLETE_PREFIX = ".incomplete-"
REPLACED_INFIX = "-replaced-"
SNAPSHOT_PREFIX = "snapshot-"


@dataclass
class TrainingState:
    """What a snapshot restores besides the network weights."""

    counters: dict[str, Any]
    optimizers: dict[str, dict[str, Any]]
    tensors: dict[str, torch.Tensor]
    extra: dict[str, Any]


def snapshot_name(cur_nimg: int) -> str:
    return f"{SNAPSHOT_PREFIX}{cur_nimg:010d}"


# ----------------------------------------------------------------------------- optimiser state


def optimizer_to_record(name: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimiser's state as named tensors plus JSON (hyper-parameters and non-tensor entries)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{name}.{index}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_record(
    optimizer: torch.optim.Optimizer, name: str, tensors: Mapping[str, torch.Tensor], record: dict
) -> None:
    prefix = f"optim.{name}."
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, entry = key[len(prefix) :].split(".", 1)
            state.setdefault(int(index), {})[entry] = value
    for index, entries in record["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    groups = [
        dict(group, betas=tuple(group["betas"])) if "betas" in group else group
        for group in record["param_groups"]
    ]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ----------------------------------------------------------------------------- writing


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _replaced_name(name: str) -> str:
    return f"{INCOMPLETE_PREFIX}{name}{REPLACED_INFIX}"


def restore_replaced(run_dir: str | os.PathLike) -> None:
    """Move back a snapshot that a re-write moved aside when it was killed before the new folder
    took its name (so that ``latest`` names a complete folder again)."""
    folder = Path(run_dir) / SNAPSHOT_DIR
    if not folder.is_dir():
        return
    for child in sorted(folder.iterdir()):
        if child.name.startswith(INCOMPLETE_PREFIX) and REPLACED_INFIX in child.name and is_complete(child):
            name = child.name[len(INCOMPLETE_PREFIX) :].split(REPLACED_INFIX)[0]
            if not (folder / name).exists():
                os.rename(child, folder / name)
                fsync_dir(folder)


def remove_incomplete(run_dir: Path) -> None:
    """Delete leftovers of interrupted snapshot writes (after restoring a moved-aside snapshot)."""
    restore_replaced(run_dir)
    folder = Path(run_dir) / SNAPSHOT_DIR
    if folder.is_dir():
        for child in folder.iterdir():
            if child.name.startswith(INCOMPLETE_PREFIX):
                shutil.rmtree(child, ignore_errors=True)


def save_snapshot(
    run_dir: str | os.PathLike,
    name: str,
    networks: Mapping[str, nn.Module],
    state: TrainingState,
    metadata: Mapping[str, Any] | None = None,
    keep: int | None = None,
) -> Path:
    """Write a complete snapshot, point ``latest`` at it, then prune older ones (see module doc)."""
    run_dir = Path(run_dir)
    folder = run_dir / SNAPSHOT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    remove_incomplete(run_dir)
    staging = folder / f"{INCOMPLETE_PREFIX}{name}-{os.getpid()}"
    save_checkpoint(staging, networks, metadata)
    save_file(state.tensors, str(staging / STATE_TENSORS))
    _fsync_file(staging / STATE_TENSORS)
    record = {"counters": state.counters, "optimizers": state.optimizers, "extra": state.extra}
    (staging / STATE_JSON).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    _fsync_file(staging / STATE_JSON)
    fsync_dir(staging)
    final = folder / name
    if final.exists():
        # Same name (re-snapshot at the same count after a resume): move the old one aside first;
        # ``latest`` may name it, and the name is valid again once the new folder is in place.
        retired = folder / f"{_replaced_name(name)}{os.getpid()}"
        os.rename(final, retired)
        os.rename(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.rename(staging, final)
    fsync_dir(folder)
    write_text_atomic(run_dir / LATEST_FILE, name + "\n")
    if keep is not None:
        prune_snapshots(run_dir, keep, protect=name)
    return final


def prune_snapshots(run_dir: Path, keep: int, protect: str) -> None:
    """Delete all but the ``keep`` newest complete snapshots (never ``protect``); each is renamed to
    an ``.incomplete-`` name first, so that a kill mid-deletion leaves no half-deleted snapshot."""
    folder = Path(run_dir) / SNAPSHOT_DIR
    names = sorted(p.name for p in folder.iterdir() if p.name.startswith(SNAPSHOT_PREFIX) and p.is_dir())
    for old in names[: max(len(names) - keep, 0)]:
        if old != protect:
            doomed = folder / f"{INCOMPLETE_PREFIX}{old}-pruned-{os.getpid()}"
            os.rename(folder / old, doomed)
            shutil.rmtree(doomed, ignore_errors=True)


# ----------------------------------------------------------------------------- reading


def is_complete(folder: Path) -> bool:
    return all((folder / f).is_file() for f in (CHECKPOINT_FILE, STATE_TENSORS, STATE_JSON))


def latest_snapshot(run_dir: str | os.PathLike) -> Path | None:
    """The complete snapshot ``<run>/latest`` names, or None when the run has none yet. Without a
    ``latest`` file, the newest complete snapshot folder (a kill after the first snapshot was
    renamed into place, before ``latest`` was written)."""
    run_dir = Path(run_dir)
    pointer = run_dir / LATEST_FILE
    restore_replaced(run_dir)
    if not pointer.is_file():
        folder = run_dir / SNAPSHOT_DIR
        found = sorted(folder.glob(f"{SNAPSHOT_PREFIX}*")) if folder.is_dir() else []
        complete = [p for p in found if is_complete(p)]
        return complete[-1] if complete else None
    name = pointer.read_text(encoding="utf-8").strip()
    folder = run_dir / SNAPSHOT_DIR / name
    if not name or not is_complete(folder):
        raise ValueError(f"{pointer}: names {name!r}, which is not a complete snapshot in {folder.parent}")
    return folder


def resolve_snapshot(path: str | os.PathLike) -> tuple[Path, Path]:
    """(snapshot folder, run folder) for a run folder (its ``latest``) or a snapshot folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"resume: {path} does not exist")
    if (path / LATEST_FILE).is_file() or (path / SNAPSHOT_DIR).is_dir():
        snapshot = latest_snapshot(path)
        if snapshot is None:
            raise FileNotFoundError(f"resume: run folder {path} has no snapshot yet (no {LATEST_FILE} file)")
        return snapshot, path
    if is_complete(path):
        return path, path.parent.parent
    raise ValueError(
        f"resume: {path} is neither a run folder (with a '{LATEST_FILE}' file) nor a complete snapshot "
        f"(with {CHECKPOINT_FILE}, {STATE_TENSORS} and {STATE_JSON})"
    )


def load_snapshot(
    folder: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[dict[str, nn.Module], dict[str, Any], TrainingState]:
    """Networks (name -> module), checkpoint metadata and training state of a snapshot folder."""
    folder = Path(folder)
    if not is_complete(folder):
        raise ValueError(
            f"{folder}: incomplete snapshot (needs {CHECKPOINT_FILE}, {STATE_TENSORS}, {STATE_JSON})"
        )
    networks, metadata = load_checkpoint(folder, device)
    try:
        tensors = load_file(str(folder / STATE_TENSORS))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{folder / STATE_TENSORS}: unreadable ({err})") from err
    try:
        record = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{folder / STATE_JSON}: not valid JSON ({err})") from err
    state = TrainingState(record["counters"], record["optimizers"], tensors, record.get("extra", {}))
    return networks, metadata, state
