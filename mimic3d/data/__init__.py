"""Datasets in EG3D's format: reading, writing, checking, building and synthesising them.

The procedural generator lives in ``mimic3d.data.synth`` (it pulls in the renderer).
"""

from __future__ import annotations

from mimic3d.data.build import build_dataset
from mimic3d.data.check import CheckReport, check_dataset
from mimic3d.data.converters import CONVENTIONS, CameraFile
from mimic3d.data.dataset import DatasetCameraSampler, ImageDataset
from mimic3d.data.plot import plot_cameras
from mimic3d.data.writer import DatasetWriter

__all__ = [
    "CONVENTIONS",
    "CameraFile",
    "CheckReport",
    "DatasetCameraSampler",
    "DatasetWriter",
    "ImageDataset",
    "build_dataset",
    "check_dataset",
    "plot_cameras",
]
