"""Writing meshes (PLY, OBJ, GLB through trimesh) and density volumes (.npy, .mrc)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import trimesh

from mimic3d.export.mrc import write_mrc

MESH_FORMATS = ("ply", "obj", "glb")
VOLUME_FORMATS = ("npy", "mrc")
FORMATS = MESH_FORMATS + VOLUME_FORMATS


def check_format(name: str) -> str:
    if name not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {name!r}")
    return name


def save_mesh(mesh: trimesh.Trimesh, path: str | os.PathLike) -> Path:
    """Write ``mesh`` (with its vertex colours) in the format of the file extension: .ply, .obj or .glb."""
    path = Path(path)
    kind = path.suffix.lstrip(".").lower()
    if kind not in MESH_FORMATS:
        raise ValueError(f"{path}: expected a mesh file ending in {', '.join('.' + f for f in MESH_FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(path, file_type=kind)
    return path


def save_volume(
    volume: np.ndarray,
    path: str | os.PathLike,
    voxel_size: float = 1.0,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
) -> Path:
    """Write a volume [X, Y, Z] as .npy (the raw float32 array) or .mrc (``write_mrc``, with its geometry)."""
    path = Path(path)
    kind = path.suffix.lstrip(".").lower()
    if kind == "mrc":
        return write_mrc(path, volume, voxel_size, origin)
    if kind != "npy":
        raise ValueError(f"{path}: expected a volume file ending in .npy or .mrc")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(volume, dtype=np.float32))
    return path
