"""Writes EG3D-format datasets (zip or folder), streaming one sample at a time.

Used by both ``mimic3d dataset build`` and ``mimic3d dataset synth``. A zip is written to
``<dest>.partial`` and renamed on success, so an interrupted run never leaves a valid-looking
but incomplete dataset.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import torch

from mimic3d.camera import mirror_label
from mimic3d.data.dataset import DEPTH_SUFFIX, check_image_shape
from mimic3d.data.images import encode_png
from mimic3d.data.labels import METADATA_NAME, label_problem

# Depth is stored as uint16 codes: depth = code * DEPTH_SCALE world units, code 0 = background.
DEPTH_SCALE = 1e-4
DEPTH_BACKGROUND = 0


class DatasetWriter:
    """Streams images, camera labels and optional depth maps into an EG3D-format dataset.

    Names follow EG3D's tool: ``00000/img00000000.png`` (1000 per folder); mirrored copies get
    EG3D's ``_mirror`` suffix. Use as a context manager; ``dataset.json`` is written on exit.

    Args:
        dest: ``*.zip`` path or a folder (created; must be empty if it exists).
        overwrite: replace an existing zip file (folders are never deleted).
        compress_level: PNG zlib level (0..9); low levels keep training-time decoding fast.
        extra_metadata: additional JSON-serialisable keys for ``dataset.json``.
    """

    def __init__(
        self,
        dest: str | os.PathLike,
        overwrite: bool = False,
        compress_level: int = 1,
        extra_metadata: dict | None = None,
    ) -> None:
        self.dest = os.fspath(dest)
        self.is_zip = self.dest.lower().endswith(".zip")
        if os.path.isdir(self.dest):
            if os.listdir(self.dest):
                raise ValueError(f"{self.dest}: folder is not empty; choose a new folder")
        elif os.path.exists(self.dest):
            if not overwrite:
                raise ValueError(f"{self.dest}: already exists (pass --overwrite to replace it)")
            os.remove(self.dest)
        self.compress_level = compress_level
        self.metadata = dict(extra_metadata or {})
        self.labels: list[list] = []
        self.shape: tuple[int, int, int] | None = None
        self.count = 0
        self.has_depth: bool | None = None
        if self.is_zip:
            parent = os.path.dirname(os.path.abspath(self.dest))
            os.makedirs(parent, exist_ok=True)
            self._partial = self.dest + ".partial"
            self._zip: zipfile.ZipFile | None = zipfile.ZipFile(self._partial, "w", zipfile.ZIP_STORED)
        else:
            os.makedirs(self.dest, exist_ok=True)
            self._zip = None

    def _save(self, name: str, data: bytes) -> None:
        if self._zip is not None:
            self._zip.writestr(name, data)
            return
        path = os.path.join(self.dest, *name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def add(
        self,
        image: np.ndarray,
        label: np.ndarray | torch.Tensor,
        depth: np.ndarray | None = None,
        mirror: bool = False,
        source: str | None = None,
    ) -> str:
        """Append one sample (and its mirrored copy when ``mirror``); returns the image name.

        Args:
            image: uint8 [R, R, C], C in {1, 3, 4}, R a power of two, same for every sample.
            label: [25] EG3D camera (validated).
            depth: optional float32 [R, R] Euclidean ray depth in world units, inf/0 on background;
                either every sample has depth or none.
            mirror: also write the x-flipped copy with ``mirror_label(label)``.
            source: what the sample came from (e.g. the source image path), for error messages.
        """
        index = self.count
        name = f"{index // 1000:05d}/img{index:08d}.png"
        where = source or f"{self.dest}: sample {index}"
        check_image_shape(image, where, self.shape)
        self.shape = image.shape
        label = torch.as_tensor(label, dtype=torch.float64).reshape(-1)
        problem = label_problem(label.tolist(), where)
        if problem is not None:
            raise ValueError(problem)
        if self.has_depth is None:
            self.has_depth = depth is not None
        if self.has_depth != (depth is not None):
            raise ValueError(f"{where}: depth must be given for every sample or for none")
        codes = None if depth is None else depth_codes(depth, where, image.shape[:2])
        self._save(name, encode_png(image, self.compress_level))
        if codes is not None:
            self._save(name[:-4] + DEPTH_SUFFIX, npy_bytes(codes))
        self.labels.append([name, label.tolist()])
        if mirror:
            mirror_name = name[:-4] + "_mirror.png"
            self._save(mirror_name, encode_png(np.ascontiguousarray(image[:, ::-1]), self.compress_level))
            if codes is not None:
                self._save(mirror_name[:-4] + DEPTH_SUFFIX, npy_bytes(np.ascontiguousarray(codes[:, ::-1])))
            self.labels.append([mirror_name, mirror_label(label).tolist()])
        self.count += 1
        return name

    def close(self) -> None:
        """Write ``dataset.json`` and finish the archive; ValueError if nothing was added."""
        if self.count == 0:
            self.abort()
            raise ValueError(f"{self.dest}: no samples were written (empty dataset)")
        metadata = {"labels": self.labels, **self.metadata}
        if self.has_depth:
            metadata["depth"] = {
                "suffix": DEPTH_SUFFIX,
                "dtype": "uint16",
                "scale": DEPTH_SCALE,
                "background": DEPTH_BACKGROUND,
                "meaning": "Euclidean distance from the camera origin along each pixel-centre ray",
            }
        self._save(METADATA_NAME, json.dumps(metadata).encode("utf-8"))
        if self._zip is not None:
            self._zip.close()
            self._zip = None
            os.replace(self._partial, self.dest)

    def abort(self) -> None:
        """Drop a partially written zip (folders are left for inspection)."""
        if self._zip is not None:
            self._zip.close()
            self._zip = None
            os.remove(self._partial)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def depth_codes(depth: np.ndarray, where: str, shape: tuple[int, int]) -> np.ndarray:
    """uint16 [H, W] codes of a depth map (non-finite or non-positive depth = background)."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth.shape != tuple(shape):
        raise ValueError(f"{where}: depth map is {list(depth.shape)}, expected {list(shape)}")
    hit = np.isfinite(depth) & (depth > 0)
    codes = np.zeros(depth.shape, dtype=np.uint16)
    scaled = np.rint(depth[hit] / DEPTH_SCALE)
    if scaled.size and scaled.max() > np.iinfo(np.uint16).max:
        raise ValueError(
            f"{where}: depth {depth[hit].max():.3f} exceeds the storable maximum "
            f"{np.iinfo(np.uint16).max * DEPTH_SCALE:.3f} world units"
        )
    codes[hit] = np.maximum(scaled, 1).astype(np.uint16)
    return codes


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
