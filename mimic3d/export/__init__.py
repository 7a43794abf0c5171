"""Writers for what the tools produce: meshes, density volumes (npy, MRC) and MP4 videos."""

from __future__ import annotations

from mimic3d.export.mesh import FORMATS, MESH_FORMATS, VOLUME_FORMATS, check_format, save_mesh, save_volume
from mimic3d.export.mrc import read_mrc, write_mrc
from mimic3d.export.video import VideoWriter, read_video

__all__ = [
    "FORMATS",
    "MESH_FORMATS",
    "VOLUME_FORMATS",
    "VideoWriter",
    "check_format",
    "read_mrc",
    "read_video",
    "save_mesh",
    "save_volume",
    "write_mrc",
]
