"""Camera files in other conventions, converted to EG3D labels for the dataset tool.

Supported conventions (``--convention``):

- ``eg3d``: EG3D's ``dataset.json``, ``{"labels": [[name, [25 floats]], ...]}``.
- ``opengl``: the same layout with cam2world in OpenGL axes (camera +y up, looking down -z).
- ``blender``: NeRF/Blender ``transforms.json``: ``frames[].file_path`` and ``transform_matrix``
  (OpenGL axes), with ``camera_angle_x`` (horizontal FOV, radians; optional ``camera_angle_y``)
  or instant-ngp pixel intrinsics ``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h``. Keys on a
  frame override the file's.
- ``angles``: EpiGRAF/GRAM ``{"camera_angles": {name: [yaw, pitch, roll]}}`` (or the bare
  mapping); radius, pivot and focal are not in the file and come from a preset or options.

Labels are first expressed for the source image (intrinsics normalised by its width and height)
and then moved to the centred square crop by ``crop_label``.
"""

from __future__ import annotations

import json
import math
import os
import posixpath

import numpy as np
import torch

from mimic3d.camera import PRESETS, from_angles, from_opengl, intrinsics_matrix, make_label

CONVENTIONS = ("eg3d", "opengl", "blender", "angles")
# Rotation taking a z-up world (Blender scenes) to EG3D's y-up world: (x, y, z) -> (x, z, -y).
Z_UP_TO_Y_UP = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def _keys(name: str) -> list[str]:
    """Lookup keys of an image path, most specific first: path, path without extension, basename, stem."""
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    stem = os.path.splitext(name)[0]
    base = posixpath.basename(name)
    return [name, stem, base, os.path.splitext(base)[0]]


class CameraFile:
    """Cameras of a file in one convention, looked up by image path.

    Args:
        path: the camera file.
        convention: one of ``CONVENTIONS``.
        preset: dataset preset for ``angles`` (radius, pivot, focal); ``radius``, ``pivot`` and
            ``focal`` override it.
        world_up: ``"y"`` (EG3D) or ``"z"`` (Blender scenes): z-up worlds are rotated to y-up.
    """

    def __init__(
        self,
        path: str,
        convention: str,
        preset: str = "ffhq",
        radius: float | None = None,
        pivot: tuple[float, float, float] | None = None,
        focal: float | None = None,
        world_up: str = "y",
    ) -> None:
        if convention not in CONVENTIONS:
            raise ValueError(f"convention: expected one of {', '.join(CONVENTIONS)}, got '{convention}'")
        if world_up not in ("y", "z"):
            raise ValueError(f"world_up: expected 'y' or 'z', got '{world_up}'")
        if preset not in PRESETS:
            raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got '{preset}'")
        self.path = path
        self.convention = convention
        self.world_up = world_up
        chosen = PRESETS[preset]
        self.radius = chosen.radius if radius is None else radius
        self.pivot = chosen.pivot if pivot is None else tuple(pivot)
        self.focal = chosen.focal if focal is None else focal
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: camera file not found") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: invalid JSON ({err})") from None
        self.entries = self._read_entries(data)
        self._index: dict[str, str | None] = {}
        for name in self.entries:
            for key in _keys(name):
                # A key shared by two entries (same basename in two folders) is ambiguous: drop it.
                self._index[key] = name if self._index.get(key, name) == name else None

    def _read_entries(self, data: object) -> dict[str, dict]:
        where = self.path
        if self.convention in ("eg3d", "opengl"):
            if not isinstance(data, dict) or not isinstance(data.get("labels"), list):
                raise ValueError(f'{where}: expected {{"labels": [[relative_path, [25 floats]], ...]}}')
            entries = {}
            for i, entry in enumerate(data["labels"]):
                if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
                    raise ValueError(f"{where}: labels[{i}] must be [relative_path, [25 floats]]")
                entries[entry[0]] = {"label": self._numbers(entry[1], 25, f"{where}: '{entry[0]}'")}
            return entries
        if self.convention == "blender":
            if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
                raise ValueError(f"{where}: expected a transforms.json object with a 'frames' list")
            shared = {k: v for k, v in data.items() if k != "frames"}
            entries = {}
            for i, frame in enumerate(data["frames"]):
                if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
                    raise ValueError(f"{where}: frames[{i}] needs a 'file_path' string")
                name = frame["file_path"]
                matrix = self._numbers(
                    frame.get("transform_matrix"), 16, f"{where}: frame '{name}' transform_matrix"
                )
                entries[name] = {**shared, **frame, "matrix": matrix}
            return entries
        table = data.get("camera_angles", data) if isinstance(data, dict) else None
        if not isinstance(table, dict):
            raise ValueError(f'{where}: expected {{"camera_angles": {{name: [yaw, pitch, roll]}}}}')
        return {name: {"angles": self._numbers(v, 3, f"{where}: '{name}'")} for name, v in table.items()}

    @staticmethod
    def _numbers(values: object, count: int, where: str) -> np.ndarray:
        array = np.asarray(values if values is not None else [], dtype=object).reshape(-1)
        if array.size != count or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in array
        ):
            raise ValueError(f"{where}: expected {count} numbers, got {str(values)[:80]}")
        array = array.astype(np.float64)
        if not np.isfinite(array).all():
            raise ValueError(f"{where}: non-finite value in {array.tolist()}")
        return array

    def find(self, image_name: str) -> str | None:
        """The camera entry matching an image path (by path, stem, basename or basename stem)."""
        for key in _keys(image_name):
            name = self._index.get(key)
            if name is not None:
                return name
        return None

    def label(self, image_name: str, width: int, height: int) -> np.ndarray:
        """EG3D label [25] (float64) of the source image; intrinsics normalised by its width and height."""
        name = self.find(image_name)
        if name is None:
            raise ValueError(
                f"{self.path}: no camera for image '{image_name}' (looked up by path, stem and basename)"
            )
        entry = self.entries[name]
        where = f"{self.path}: '{name}'"
        if self.convention in ("eg3d", "opengl"):
            pose = entry["label"][:16].reshape(4, 4)
            intrinsics = entry["label"][16:].reshape(3, 3)
            if self.convention == "opengl":
                pose = from_opengl(torch.from_numpy(pose)).numpy()
        elif self.convention == "blender":
            pose = from_opengl(torch.from_numpy(entry["matrix"].reshape(4, 4))).numpy()
            intrinsics = self._blender_intrinsics(entry, width, height, where)
        else:
            yaw, pitch, roll = (torch.tensor(v, dtype=torch.float64) for v in entry["angles"])
            pose = from_angles(
                yaw, pitch, roll, radius=self.radius, pivot=torch.tensor(self.pivot, dtype=torch.float64)
            ).numpy()
            intrinsics = intrinsics_matrix(torch.tensor(self.focal, dtype=torch.float64)).numpy()
        if self.world_up == "z":
            pose = Z_UP_TO_Y_UP @ pose
        return make_label(
            torch.from_numpy(np.ascontiguousarray(pose)),
            torch.from_numpy(np.ascontiguousarray(intrinsics, dtype=np.float64)),
        ).numpy()

    @staticmethod
    def _blender_intrinsics(entry: dict, width: int, height: int, where: str) -> np.ndarray:
        if "fl_x" in entry:
            # instant-ngp pixel intrinsics, rescaled if the image was resized since.
            sx = width / float(entry.get("w", width))
            sy = height / float(entry.get("h", height))
            fx = float(entry["fl_x"]) * sx
            fy = float(entry.get("fl_y", entry["fl_x"])) * sy
            cx = float(entry.get("cx", entry.get("w", width) / 2)) * sx
            cy = float(entry.get("cy", entry.get("h", height) / 2)) * sy
        elif "camera_angle_x" in entry:
            fx = 0.5 * width / math.tan(float(entry["camera_angle_x"]) / 2)
            fy = (
                0.5 * height / math.tan(float(entry["camera_angle_y"]) / 2)
                if "camera_angle_y" in entry
                else fx
            )
            cx, cy = width / 2, height / 2
        else:
            raise ValueError(f"{where}: no intrinsics (expected camera_angle_x or fl_x)")
        if not (fx > 0 and fy > 0):
            raise ValueError(f"{where}: focal length must be positive, got fx={fx}, fy={fy} pixels")
        return np.array([[fx / width, 0.0, cx / width], [0.0, fy / height, cy / height], [0.0, 0.0, 1.0]])


def crop_label(label: np.ndarray, width: int, height: int, left: int, top: int, size: int) -> np.ndarray:
    """Label [25] of a ``size`` x ``size`` crop at (left, top) of a ``width`` x ``height`` image.

    Intrinsics go to pixels of the source, shift by the crop offset and are normalised by the crop
    size; resizing the crop afterwards leaves normalised intrinsics unchanged.
    """
    label = np.asarray(label, dtype=np.float64).copy()
    k = label[16:].reshape(3, 3).copy()
    pixels = np.diag([width, height, 1.0]) @ k
    pixels[0, 2] -= left
    pixels[1, 2] -= top
    label[16:] = (np.diag([1.0 / size, 1.0 / size, 1.0]) @ pixels).reshape(-1)
    return label
