"""``mimic3d dataset build``: a folder (or zip) of photos plus a camera file -> EG3D-format dataset.

Every image is centre-cropped to a square, resized with Lanczos, alpha-composited on white or
black, and written with its camera (converted to EG3D's convention, intrinsics adjusted to the
crop) through the same writer as the synthetic generator.
"""

from __future__ import annotations

import io
import os

from tqdm import tqdm

from mimic3d.data.archive import Archive
from mimic3d.data.converters import CameraFile, crop_label
from mimic3d.data.images import (
    center_crop_box,
    center_crop_resize,
    composite_on_background,
    open_source_image,
)
from mimic3d.data.writer import DatasetWriter

# Camera files looked for in SRC when --cameras is not given, with their convention.
DEFAULT_CAMERA_FILES = (("dataset.json", "eg3d"), ("transforms.json", "blender"))
MAX_RESOLUTION = 4096  # beyond any 3D-aware GAN's data; a typo otherwise allocates gigabytes per image


def find_camera_file(src: str) -> tuple[str, str]:
    """(path, convention) of the camera file that sits in the source folder."""
    for name, convention in DEFAULT_CAMERA_FILES:
        path = os.path.join(src, name)
        if os.path.isfile(path):
            return path, convention
    raise ValueError(
        f"{src}: no camera file found (looked for dataset.json and transforms.json); "
        "pass --cameras FILE --convention eg3d|blender|opengl|angles"
    )


def build_dataset(
    src: str,
    dest: str,
    resolution: int,
    cameras: str | None = None,
    convention: str | None = None,
    background: str = "white",
    mirror: bool = False,
    preset: str = "ffhq",
    radius: float | None = None,
    pivot: tuple[float, float, float] | None = None,
    focal: float | None = None,
    world_up: str = "y",
    overwrite: bool = False,
    progress: bool = True,
) -> int:
    """Build an EG3D-format dataset; returns the number of source images written.

    Args:
        src: folder (or zip) of images, searched recursively.
        dest: output ``.zip`` or folder.
        resolution: output size (power of two).
        cameras: camera file; default: ``dataset.json`` or ``transforms.json`` in ``src``.
        convention: the camera file's convention (``converters.CONVENTIONS``); default from the file name.
        background: ``white`` or ``black``, under transparent pixels.
        mirror: also write x-flipped copies with mirrored cameras.
        preset, radius, pivot, focal: camera geometry for the ``angles`` convention.
        world_up: ``z`` rotates a z-up (Blender) world to EG3D's y-up world.
    """
    if resolution < 4 or resolution > MAX_RESOLUTION or resolution & (resolution - 1):
        raise ValueError(f"resolution: expected a power of two in [4, {MAX_RESOLUTION}], got {resolution}")
    source = Archive(src)
    problems = source.problems()
    if problems:
        raise ValueError(problems[0])
    names = source.image_names()
    if not names:
        raise ValueError(f"{src}: no images found (expected .png, .jpg, .bmp or .webp files)")
    if cameras is None:
        if source.kind != "dir":
            raise ValueError(f"{src}: pass --cameras FILE for a zip source")
        cameras, found_convention = find_camera_file(src)
        convention = convention or found_convention
    camera_file = CameraFile(
        cameras,
        convention or "eg3d",
        preset=preset,
        radius=radius,
        pivot=pivot,
        focal=focal,
        world_up=world_up,
    )
    with DatasetWriter(
        dest, overwrite=overwrite, extra_metadata={"source": os.path.basename(os.path.abspath(src))}
    ) as writer:
        for name in tqdm(names, desc="build", unit="img", disable=not progress):
            where = source.describe(name)
            image = open_source_image(io.BytesIO(source.read(name)), where)
            width, height = image.size
            label = camera_file.label(name, width, height)
            left, top, size = center_crop_box(width, height)
            label = crop_label(label, width, height, left, top, size)
            pixels = composite_on_background(center_crop_resize(image, resolution), background)
            writer.add(pixels, label, mirror=mirror, source=where)
    source.close()
    return len(names)
