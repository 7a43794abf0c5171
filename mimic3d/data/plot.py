"""A PNG picture of a dataset's camera distribution, drawn with PIL only.

Left: 2-D histogram of camera yaw against elevation with marginal histograms. Right: camera
frustums around the world origin in an oblique orthographic view, with the world axes.
"""

from __future__ import annotations

import math

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont

from mimic3d.data.labels import camera_angles

PANEL = 400
MARGIN = 48
MAX_FRUSTUMS = 150
AXIS_COLOURS = {"x": (220, 60, 60), "y": (40, 160, 60), "z": (50, 90, 220)}


def _heat(value: float) -> tuple[int, int, int]:
    """White -> blue -> dark purple colour ramp for a value in [0, 1]."""
    stops = np.array([[255, 255, 255], [120, 170, 230], [40, 60, 160], [40, 10, 70]], dtype=np.float64)
    position = min(max(value, 0.0), 1.0) * (len(stops) - 1)
    low = int(position)
    high = min(low + 1, len(stops) - 1)
    colour = stops[low] + (stops[high] - stops[low]) * (position - low)
    return tuple(int(c) for c in colour)


def _nice_range(values: np.ndarray, step: float, limit: float) -> tuple[float, float]:
    low = math.floor((values.min() - 1e-9) / step) * step
    high = math.ceil((values.max() + 1e-9) / step) * step
    if high - low < step:
        low, high = low - step, high + step
    return max(low, -limit), min(high, limit)


def _histogram_panel(
    draw: PIL.ImageDraw.ImageDraw, font, yaw: np.ndarray, elevation: np.ndarray, left: int, top: int
) -> None:
    hist_h = 50
    size = PANEL - MARGIN - hist_h - 40
    x0, y0 = left + MARGIN, top + MARGIN + hist_h
    yaw_range = _nice_range(yaw, 10.0, 180.0)
    elevation_range = _nice_range(elevation, 10.0, 90.0)
    bins = 30
    counts, _, _ = np.histogram2d(yaw, elevation, bins=bins, range=[yaw_range, elevation_range])
    peak = max(counts.max(), 1.0)
    cell = size / bins
    for i in range(bins):
        for j in range(bins):
            if counts[i, j] > 0:
                # Elevation grows upwards on the picture.
                box = [x0 + i * cell, y0 + (bins - 1 - j) * cell, x0 + (i + 1) * cell, y0 + (bins - j) * cell]
                draw.rectangle(box, fill=_heat(0.15 + 0.85 * counts[i, j] / peak))
    draw.rectangle([x0, y0, x0 + size, y0 + size], outline=(0, 0, 0))
    yaw_counts = counts.sum(1)
    elevation_counts = counts.sum(0)
    for i, value in enumerate(yaw_counts):
        h = hist_h * value / max(yaw_counts.max(), 1.0)
        draw.rectangle([x0 + i * cell, y0 - 4 - h, x0 + (i + 1) * cell - 1, y0 - 4], fill=(90, 120, 200))
    for j, value in enumerate(elevation_counts):
        w = hist_h * 0.8 * value / max(elevation_counts.max(), 1.0)
        top_j = y0 + (bins - 1 - j) * cell
        draw.rectangle([x0 + size + 4, top_j, x0 + size + 4 + w, top_j + cell - 1], fill=(90, 120, 200))
    for k in range(5):
        frac = k / 4
        yaw_tick = yaw_range[0] + frac * (yaw_range[1] - yaw_range[0])
        draw.text((x0 + frac * size - 10, y0 + size + 4), f"{yaw_tick:.0f}", fill=(0, 0, 0), font=font)
        elevation_tick = elevation_range[0] + frac * (elevation_range[1] - elevation_range[0])
        draw.text((x0 - 30, y0 + size - frac * size - 6), f"{elevation_tick:.0f}", fill=(0, 0, 0), font=font)
    draw.text((x0 + size // 2 - 60, y0 + size + 20), "yaw (deg, 0 = frontal)", fill=(0, 0, 0), font=font)
    draw.text((left + 4, top + 8), "elevation (deg) vs yaw", fill=(0, 0, 0), font=font)


def _frustum_panel(draw: PIL.ImageDraw.ImageDraw, font, labels: np.ndarray, left: int, top: int) -> None:
    # Oblique view: the world turned 35 degrees about +y, then tilted 25 degrees down.
    turn, tilt = math.radians(35.0), math.radians(25.0)
    rot_y = np.array([[math.cos(turn), 0, math.sin(turn)], [0, 1, 0], [-math.sin(turn), 0, math.cos(turn)]])
    rot_x = np.array([[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]])
    view = rot_x @ rot_y
    positions = labels[:, [3, 7, 11]]
    extent = max(float(np.linalg.norm(positions, axis=1).max()), 1e-6)
    step = max(1, math.ceil(len(labels) / MAX_FRUSTUMS))
    shown = range(0, len(labels), step)
    depth = extent * 0.12
    frustums = []
    for k in shown:
        pose = labels[k, :16].reshape(4, 4)
        intrinsics = labels[k, 16:].reshape(3, 3)
        corners = []
        for u, v in ((0, 0), (1, 0), (1, 1), (0, 1)):
            # Image corner -> camera ray (normalised intrinsics) -> world point at ``depth``.
            ray = np.linalg.solve(intrinsics, np.array([u, v, 1.0]))
            corners.append(pose[:3, :3] @ (ray * depth / np.linalg.norm(ray)) + pose[:3, 3])
        frustums.append(np.concatenate([pose[None, :3, 3], np.array(corners)]))
    axes = (
        np.array([[0.0, 0.0, 0.0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
        * np.array([1.0, *[extent * 0.35] * 3])[:, None]
    )
    # Fit everything drawn (frustums and world axes) into the panel.
    flat = np.concatenate([np.concatenate(frustums), axes]) @ view.T
    low, high = flat[:, :2].min(0), flat[:, :2].max(0)
    scale = (PANEL - 2 * MARGIN) / max(float((high - low).max()), 1e-9)
    middle = (low + high) / 2
    cx, cy = left + PANEL / 2, top + PANEL / 2 + 10

    def project(points: np.ndarray) -> list[tuple[float, float]]:
        p = points @ view.T
        return [(cx + scale * (q[0] - middle[0]), cy - scale * (q[1] - middle[1])) for q in p]

    origin = project(axes[:1])[0]
    for name, end in zip("xyz", project(axes[1:])):
        draw.line([origin, end], fill=AXIS_COLOURS[name], width=2)
        draw.text((end[0] + 3, end[1] - 6), name, fill=AXIS_COLOURS[name], font=font)
    yaw = camera_angles(labels)["yaw"][list(shown)]
    span = max(float(yaw.max() - yaw.min()), 1e-9)
    for points, yaw_k in zip(frustums, yaw):
        apex, *corners = project(points)
        shade = int(160 * (yaw_k - yaw.min()) / span)
        colour = (200 - shade, 70, 40 + shade)
        for corner in corners:
            draw.line([apex, corner], fill=colour)
        draw.polygon(corners, outline=colour)
    draw.text(
        (left + 4, top + 8), f"camera frustums ({len(shown)} shown, colour = yaw)", fill=(0, 0, 0), font=font
    )


def plot_cameras(labels: np.ndarray, path: str, title: str = "") -> None:
    """Write the camera-distribution picture of labels ``[N, 25]`` (N >= 1) to ``path`` (PNG)."""
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim != 2 or labels.shape[1] != 25 or labels.shape[0] == 0:
        raise ValueError(f"labels: expected a non-empty [N, 25] array, got shape {list(labels.shape)}")
    image = PIL.Image.new("RGB", (2 * PANEL, PANEL + 30), (255, 255, 255))
    draw = PIL.ImageDraw.Draw(image)
    font = PIL.ImageFont.load_default()
    angles = camera_angles(labels)
    _histogram_panel(draw, font, angles["yaw"], angles["elevation"], 0, 30)
    _frustum_panel(draw, font, labels, PANEL, 30)
    draw.text((8, 8), title or f"{len(labels)} cameras", fill=(0, 0, 0), font=font)
    image.save(path)
