"""MRC2014 volume files (float32, mode 2), the format EG3D writes its density grids in (ChimeraX opens them).

Layout: a 1024-byte little-endian header of 256 four-byte words, then the data with columns (x)
fastest, then rows (y), then sections (z). Our volumes are indexed [x, y, z], so they are written
transposed to [z, y, x]. The cell size (words 11-13) is the grid's extent in voxel units times the
voxel size, and the origin (words 50-52) is the world position of voxel (0, 0, 0).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HEADER_BYTES = 1024
MODE_FLOAT32 = 2
_HEADER = np.dtype(
    [
        ("shape", "<i4", 3),  # NX, NY, NZ: columns, rows, sections
        ("mode", "<i4"),
        ("start", "<i4", 3),
        ("sampling", "<i4", 3),  # MX, MY, MZ
        ("cell_lengths", "<f4", 3),
        ("cell_angles", "<f4", 3),
        ("axis_order", "<i4", 3),  # MAPC, MAPR, MAPS
        ("dmin", "<f4"),
        ("dmax", "<f4"),
        ("dmean", "<f4"),
        ("space_group", "<i4"),
        ("extended_bytes", "<i4"),
        ("extra1", "V8"),
        ("extended_type", "S4"),
        ("version", "<i4"),
        ("extra2", "V84"),
        ("origin", "<f4", 3),
        ("map", "S4"),
        ("machine_stamp", "u1", 4),
        ("rms", "<f4"),
        ("label_count", "<i4"),
        ("labels", "S80", 10),
    ]
)
assert _HEADER.itemsize == HEADER_BYTES


def write_mrc(
    path: str | os.PathLike,
    volume: np.ndarray,
    voxel_size: float = 1.0,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    label: str = "mimic3d density",
) -> Path:
    """Write a float volume [X, Y, Z] (indexed x, y, z) as an MRC2014 file."""
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume: expected a 3D array [X, Y, Z], got shape {list(volume.shape)}")
    if not voxel_size > 0:
        raise ValueError(f"voxel_size: expected a positive number, got {voxel_size}")
    data = np.ascontiguousarray(volume.astype("<f4").transpose(2, 1, 0))
    header = np.zeros((), _HEADER)
    header["shape"] = volume.shape
    header["mode"] = MODE_FLOAT32
    header["sampling"] = volume.shape
    header["cell_lengths"] = np.array(volume.shape, np.float32) * voxel_size
    header["cell_angles"] = 90.0
    header["axis_order"] = (1, 2, 3)
    header["dmin"], header["dmax"], header["dmean"] = data.min(), data.max(), data.mean()
    header["rms"] = data.std()
    header["space_group"] = 1  # a single volume
    header["extended_type"] = b"MRCO"
    header["version"] = 20140
    header["origin"] = origin
    header["map"] = b"MAP "
    header["machine_stamp"] = (0x44, 0x44, 0, 0)  # little-endian
    header["label_count"] = 1
    header["labels"][0] = label.encode("ascii", "replace")[:80]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(header.tobytes())
        f.write(data.tobytes())
    return path


def read_mrc(path: str | os.PathLike) -> tuple[np.ndarray, float, tuple[float, float, float]]:
    """(volume [X, Y, Z] float32, voxel size, origin) of a float32 MRC file written by ``write_mrc``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MRC file not found: {path}")
    raw = path.read_bytes()
    if len(raw) < HEADER_BYTES:
        raise ValueError(f"{path}: too short for an MRC header ({len(raw)} bytes)")
    header = np.frombuffer(raw[:HEADER_BYTES], _HEADER)[0]
    if header["map"] != b"MAP " or int(header["mode"]) != MODE_FLOAT32:
        raise ValueError(f"{path}: not a float32 MRC2014 file (map {header['map']!r}, mode {header['mode']})")
    nx, ny, nz = (int(v) for v in header["shape"])
    offset = HEADER_BYTES + int(header["extended_bytes"])
    data = np.frombuffer(raw[offset:], "<f4")
    if data.size != nx * ny * nz:
        raise ValueError(f"{path}: holds {data.size} values, header says {nx}x{ny}x{nz}")
    volume = data.reshape(nz, ny, nx).transpose(2, 1, 0).astype(np.float32)
    voxel_size = float(header["cell_lengths"][0]) / nx
    return volume, voxel_size, tuple(float(v) for v in header["origin"])
