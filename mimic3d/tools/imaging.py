"""Turning renders into pictures: uint8 conversion, depth and normal maps, a colour map, grids, PNG files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import Tensor

from mimic3d.metrics.runner import quantize_images

# Matplotlib's "viridis" at 9 evenly spaced stops (sRGB 0..255), linearly interpolated between them.
_VIRIDIS_STOPS = np.array(
    [
        [68, 1, 84],
        [72, 36, 117],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [94, 201, 98],
        [170, 220, 50],
        [253, 231, 37],
    ],
    dtype=np.float64,
)


def to_uint8(images: Tensor) -> np.ndarray:
    """Images [N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C] (StyleGAN's x * 127.5 + 128 rounding)."""
    return quantize_images(images.detach().float()).permute(0, 2, 3, 1).cpu().numpy()


def resize_images(images: Tensor, size: int) -> Tensor:
    """[N, C, h, w] -> [N, C, size, size]: antialiased bilinear down, bilinear up, unchanged if equal."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(
        images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )


def depth_range(depth: Tensor) -> tuple[float, float]:
    """(near, far) of depth maps [..., H, W], the span that ``depth_to_images`` stretches to black..white."""
    values = depth.detach().float()
    near, far = float(values.min()), float(values.max())
    return near, max(far, near + 1e-6)


def depth_to_images(depth: Tensor, value_range: tuple[float, float] | None = None) -> Tensor:
    """Depth [N, 1, H, W] -> grey images [N, 3, H, W] in [-1, 1], near = white (EG3D's -depth display)."""
    near, far = depth_range(depth) if value_range is None else value_range
    scaled = (far - depth.float()) / max(far - near, 1e-6)
    return (scaled.clamp(0, 1) * 2 - 1).expand(-1, 3, -1, -1)


def normals_to_images(normals: Tensor) -> Tensor:
    """Camera-space unit normals [N, 3, H, W] (OpenCV axes) -> images in [-1, 1] in the usual normal-map
    colours: red = right, green = up, blue = towards the viewer."""
    flip = torch.tensor([1.0, -1.0, -1.0], device=normals.device).view(1, 3, 1, 1)
    return (normals.float() * flip).clamp(-1, 1)


def colorize(values: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Scalar map [H, W] -> uint8 [H, W, 3] through the viridis colour map (low = purple, high = yellow)."""
    values = np.asarray(values, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if value_range is None else value_range
    scaled = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0) * (len(_VIRIDIS_STOPS) - 1)
    index = np.minimum(scaled.astype(np.int64), len(_VIRIDIS_STOPS) - 2)
    frac = (scaled - index)[..., None]
    colours = _VIRIDIS_STOPS[index] * (1 - frac) + _VIRIDIS_STOPS[index + 1] * frac
    return np.round(colours).astype(np.uint8)


def tile_grid(rows: Sequence[Sequence[np.ndarray]], gap: int = 0, background: int = 255) -> np.ndarray:
    """Rows of uint8 tiles [h, w, 3] -> one image; tiles of a row share a height, rows are left-aligned."""
    if not rows or not all(rows):
        raise ValueError("tiles: expected at least one tile in every row")
    strips = []
    for row in rows:
        height = row[0].shape[0]
        if any(tile.shape[0] != height for tile in row):
            raise ValueError(f"tiles: a row mixes heights {[tile.shape[0] for tile in row]}")
        pieces: list[np.ndarray] = []
        for tile in row:
            if pieces and gap:
                pieces.append(np.full((height, gap, 3), background, np.uint8))
            pieces.append(tile)
        strips.append(np.concatenate(pieces, axis=1))
    width = max(strip.shape[1] for strip in strips)
    canvas_rows: list[np.ndarray] = []
    for strip in strips:
        if canvas_rows and gap:
            canvas_rows.append(np.full((gap, width, 3), background, np.uint8))
        pad = np.full((strip.shape[0], width - strip.shape[1], 3), background, np.uint8)
        canvas_rows.append(np.concatenate([strip, pad], axis=1))
    return np.concatenate(canvas_rows, axis=0)


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of uint8 [H, W, ...] by an integer ``factor`` (pixels stay sharp)."""
    if factor < 1:
        raise ValueError(f"factor: expected a positive int, got {factor}")
    return image if factor == 1 else image.repeat(factor, axis=0).repeat(factor, axis=1)


def save_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write uint8 [H, W, 3] (or [H, W]) to ``path``, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(np.ascontiguousarray(image)).save(path)
    return path
