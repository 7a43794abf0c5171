"""Target views from files: images (aligned squares, or centre-cropped with ``crop``) and their cameras.

EG3D-family models only reproduce images aligned the way their training set was (docs/inversion.md
describes EG3D's FFHQ alignment); ``invert`` takes such aligned images as they are. A non-square image
is refused unless ``crop`` is set, which takes its largest centred square (and moves the camera's
principal point with it, as ``mimic3d dataset build`` does). Squares are resized with Lanczos to the
model's resolution; normalised intrinsics are unchanged by resizing.

Cameras come from any camera file the dataset tool reads (``mimic3d.data.converters``): EG3D's
``dataset.json`` (default), OpenGL, Blender/NeRF ``transforms.json`` or EpiGRAF angles; each image's
camera is looked up by path, stem or basename.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from mimic3d.data.converters import CameraFile, crop_label
from mimic3d.data.images import center_crop_box, composite_on_background, open_source_image
from mimic3d.inversion.views import Targets

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Camera file names whose convention is known without --convention.
CONVENTION_BY_NAME = {"dataset.json": "eg3d", "transforms.json": "blender"}


def image_paths(items: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files named by ``items``: files as given, folders expanded to their images (sorted)."""
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"{path}: folder holds no image ({', '.join(IMAGE_SUFFIXES)})")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"image not found: {path}")
    if not paths:
        raise ValueError("images: no target image given")
    return paths


def read_image(
    path: Path, resolution: int, crop: bool = False, background: str = "white"
) -> tuple[torch.Tensor, tuple[int, int, int, int, int]]:
    """Image [3, R, R] in [-1, 1] and (width, height, left, top, size) of the square taken from it."""
    image = open_source_image(str(path), str(path))
    width, height = image.size
    if width != height and not crop:
        raise ValueError(
            f"{path}: image is {width}x{height}, not square; align it as the model's training set "
            "was (docs/inversion.md) or pass --crop to take its centred square"
        )
    left, top, size = center_crop_box(width, height)
    image = image.crop((left, top, left + size, top + size))
    if size != resolution:
        image = image.resize((resolution, resolution), PIL.Image.LANCZOS)
    pixels = composite_on_background(image, background)
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float() / 127.5 - 1
    return tensor, (width, height, left, top, size)


def load_targets(
    images: Sequence[str | os.PathLike],
    resolution: int,
    cameras: str | os.PathLike | None = None,
    convention: str | None = None,
    crop: bool = False,
    background: str = "white",
) -> Targets:
    """Targets from image files (or folders of them), with cameras from ``cameras`` when given."""
    paths = image_paths(images)
    pictures, boxes = zip(*(read_image(p, resolution, crop, background) for p in paths))
    labels = None
    if cameras is not None:
        convention = convention or CONVENTION_BY_NAME.get(Path(cameras).name, "eg3d")
        camera_file = CameraFile(str(cameras), convention)
        rows = []
        for path, (width, height, left, top, size) in zip(paths, boxes):
            label = camera_file.label(str(path), width, height)
            rows.append(crop_label(label, width, height, left, top, size))
        labels = torch.from_numpy(np.stack(rows)).float()
    return Targets(torch.stack(pictures), labels, [p.stem for p in paths])
