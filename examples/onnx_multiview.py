"""Render a multi-view strip of an exported generator with onnxruntime and numpy only (no PyTorch).

    mimic3d export student.safetensors --format onnx --out exported/student
    python examples/onnx_multiview.py exported/student.onnx --seeds 0,1 --views 7 --out strip.png

Reads ``<model>.json`` (written by ``mimic3d export``) for the latent size and the camera preset,
builds EG3D camera labels for a yaw sweep around the frontal view (the same numbers as
``mimic3d.camera.orbit_cam2world`` and ``make_label``), draws z from integer seeds as EG3D's scripts
do, and writes one row per seed. Prints the time per image.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import onnxruntime

PITCH_EPS = 1e-5  # EG3D keeps the pitch off the poles


def orbit_label(yaw: float, pitch: float, radius: float, pivot: list[float], focal: float) -> np.ndarray:
    """Camera label [25] (cam2world row-major, then normalised intrinsics) of EG3D's orbit camera at
    yaw, pitch (pi/2, pi/2 = frontal) looking at ``pivot``."""
    v = min(max(pitch, PITCH_EPS), math.pi - PITCH_EPS) / math.pi
    phi = math.acos(1 - 2 * v)
    origin = radius * np.array(
        [math.sin(phi) * math.cos(math.pi - yaw), math.cos(phi), math.sin(phi) * math.sin(math.pi - yaw)]
    )
    forward = np.asarray(pivot, dtype=np.float64) - origin
    forward /= np.linalg.norm(forward)
    right = -np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    down /= np.linalg.norm(down)
    cam2world = np.eye(4)
    cam2world[:3, :3] = np.stack([right, down, forward], axis=-1)
    cam2world[:3, 3] = origin
    intrinsics = np.array([[focal, 0, 0.5], [0, focal, 0.5], [0, 0, 1]])
    return np.concatenate([cam2world.reshape(-1), intrinsics.reshape(-1)]).astype(np.float32)


def seed_latent(seed: int, z_dim: int) -> np.ndarray:
    """z [1, z_dim] as EG3D's gen_samples.py draws it (and mimic3d's tools)."""
    return np.random.RandomState(seed).randn(1, z_dim).astype(np.float32)


def write_png(path: Path, image: np.ndarray) -> None:
    """uint8 RGB [H, W, 3] as a PNG file (zlib, no imaging library)."""
    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[3, H, W] in [-1, 1] -> uint8 [H, W, 3] (StyleGAN's x * 127.5 + 128)."""
    return np.clip(image * 127.5 + 128, 0, 255).astype(np.uint8).transpose(1, 2, 0)


def render_strip(
    model: Path, seeds: list[int], views: int, yaw_range: float, truncation: float
) -> tuple[np.ndarray, float]:
    """uint8 strip [len(seeds) * R, views * R, 3] and the mean seconds per image."""
    meta = json.loads(model.with_suffix(".json").read_text())
    camera = meta["camera"]
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    yaws = [math.pi / 2 + x for x in np.linspace(-yaw_range, yaw_range, views)]
    psi = np.array([truncation], dtype=np.float32)
    rows, seconds = [], 0.0
    for seed in seeds:
        z = seed_latent(seed, meta["z_dim"])
        tiles = []
        for yaw in yaws:
            c = orbit_label(yaw, math.pi / 2, camera["radius"], camera["pivot"], camera["focal"])[None]
            start = time.perf_counter()
            image = session.run(["image"], {"z": z, "c": c, "truncation_psi": psi})[0][0]
            seconds += time.perf_counter() - start
            tiles.append(to_uint8(image))
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0), seconds / (len(seeds) * views)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "model", type=Path, help="the (z, c, truncation_psi) graph: <out>.onnx of mimic3d export"
    )
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds, one row each (default: 0,1)")
    parser.add_argument("--views", type=int, default=7, help="views of the yaw sweep (default: 7)")
    parser.add_argument("--yaw-range", type=float, default=0.5, help="half-range of the sweep, radians")
    parser.add_argument("--trunc", type=float, default=0.7, help="truncation psi (default: 0.7)")
    parser.add_argument("--out", type=Path, default=Path("strip.png"), help="output PNG (default: strip.png)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    strip, seconds = render_strip(args.model, seeds, args.views, args.yaw_range, args.trunc)
    write_png(args.out, strip)
    line = f"{args.out}: {len(seeds)} x {args.views} views, {seconds * 1000:.1f} ms per image (onnxruntime)"
    graphs = json.loads(args.model.with_suffix(".json").read_text()).get("graphs", [])
    measured = [g for g in graphs if g["variant"] == "z" and g.get("torch_seconds")]
    if measured:  # timed by mimic3d export on the same machine, at the traced batch size
        g = measured[0]
        line += f"; at export, batch {g['batch']}: PyTorch {g['torch_seconds'] * 1000:.1f} ms per call"
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
