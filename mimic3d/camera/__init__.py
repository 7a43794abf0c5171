"""Cameras in EG3D's convention: the 25-float label, poses, intrinsics, conversions and samplers.

A label ``c`` is ``[..., 25]``: cam2world 4x4 row-major (OpenCV camera axes: +x right, +y down,
+z forward; world +y up, subject facing +z) followed by the normalised 3x3 intrinsics.
"""

from __future__ import annotations

from mimic3d.camera.camera import Camera
from mimic3d.camera.convert import epigraf_label, from_angles, from_opengl, to_angles, to_opengl
from mimic3d.camera.intrinsics import epigraf_focal, focal_to_fov, fov_to_focal, intrinsics_matrix
from mimic3d.camera.label import LABEL_DIM, make_label, mirror_label, split_label, validate_label
from mimic3d.camera.pose import look_at, orbit_cam2world, orbit_origin
from mimic3d.camera.presets import PRESETS, CameraPreset
from mimic3d.camera.samplers import sample_gaussian, sample_labels, sample_look_at, sample_uniform
from mimic3d.camera.statistics import camera_statistics, look_at_pivot, orbit_angles

__all__ = [
    "LABEL_DIM",
    "PRESETS",
    "Camera",
    "CameraPreset",
    "camera_statistics",
    "epigraf_focal",
    "epigraf_label",
    "focal_to_fov",
    "fov_to_focal",
    "from_angles",
    "from_opengl",
    "intrinsics_matrix",
    "look_at",
    "look_at_pivot",
    "make_label",
    "mirror_label",
    "orbit_cam2world",
    "orbit_origin",
    "orbit_angles",
    "sample_gaussian",
    "sample_labels",
    "sample_look_at",
    "sample_uniform",
    "split_label",
    "to_angles",
    "to_opengl",
    "validate_label",
]
