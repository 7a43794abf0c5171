"""What an inversion writes: the latent, the generator that renders it, pictures, a video and a mesh.

Files in ``outdir``:

- ``latent.npz``: ``ws`` [1, num_ws, w_dim], ``cameras`` [V, 25], ``w_avg``, ``names``, the PSNRs;
- ``generator.safetensors``: a normal portable checkpoint (``mimic3d.load`` and every tool read it)
  of the model that renders the subject: the tuned weights for PTI, the original weights with the
  fitted noise maps otherwise; its metadata keeps the source's and adds the camera statistics and
  an ``inversion`` record;
- ``before_after.png``: a row per view (target, w_avg, latent, PTI result) and a row of novel views;
- ``<trajectory>.mp4`` (front-circle for front-facing models, turntable for 360 ones) and ``mesh.ply``
  (tri-plane generators);
- ``inversion.json``: settings, PSNRs, losses, time per step, estimated cameras, file list.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mimic3d.camera import CameraPreset
from mimic3d.checkpoints.load import save
from mimic3d.export import save_mesh
from mimic3d.inversion.cameras import CAMERA_METADATA_KEY
from mimic3d.inversion.multiview import InversionResult
from mimic3d.inversion.views import Targets, render_views
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.tools.imaging import save_png, tile_grid, to_uint8
from mimic3d.tools.mesh import EG3D_BORDER_FRACTION, EG3D_LEVEL, MESH_RESOLUTIONS, seed_mesh, seed_volume
from mimic3d.tools.parsing import check_positive_int
from mimic3d.tools.trajectories import check_trajectory
from mimic3d.tools.video import render_video
from mimic3d.tools.viewpoints import orbit_labels

NOVEL_VIEWS = 5


@dataclass
class OutputOptions:
    """Which extras to write. ``trajectory`` None: front-circle, or turntable when the model's cameras
    cover the full circle; ``mesh_level``: raw-sigma iso level (EG3D's 10)."""

    video: bool = True
    trajectory: str | None = None
    frames: int = 60
    mesh: bool = True
    mesh_resolution: int = 128
    mesh_level: float = EG3D_LEVEL

    def __post_init__(self) -> None:
        # Checked before any work, so that a bad option never costs an inversion.
        if self.trajectory is not None:
            check_trajectory(self.trajectory)
        check_positive_int(self.frames, "frames")
        if self.mesh_resolution not in MESH_RESOLUTIONS:
            raise ValueError(
                f"mesh_resolution: expected one of {MESH_RESOLUTIONS}, got {self.mesh_resolution!r}"
            )


def novel_view_labels(preset: CameraPreset, count: int = NOVEL_VIEWS) -> Tensor:
    """Labels [count, 25] spread over the model's yaw range (its full circle for 360 models)."""
    if preset.distribution == "uniform" and preset.yaw_std >= math.pi:
        yaws = preset.yaw_mean + 2 * math.pi * torch.arange(count) / count
    else:
        half = min(2 * preset.yaw_std, math.pi) if preset.distribution == "gaussian" else preset.yaw_std
        yaws = preset.yaw_mean + half * torch.linspace(-1, 1, count)
    return orbit_labels(yaws, preset.pitch_mean, preset)


def before_after_picture(result: InversionResult, targets: Targets, preset: CameraPreset) -> np.ndarray:
    """uint8 picture: per view target | w_avg | latent [| PTI], then the result from novel views."""
    stages = ["w_avg", "latent"] + (["final"] if result.config.method == "pti" else [])
    rows = []
    for v in range(targets.count):
        images = [targets.images[v : v + 1].cpu()] + [result.renders[s][v : v + 1].cpu() for s in stages]
        rows.append([to_uint8(image)[0] for image in images])
    device = result.ws.device
    with torch.no_grad():
        novel = render_views(
            result.generator, result.ws, novel_view_labels(preset).to(device), result.config.branch
        )
    rows.append(list(to_uint8(novel.cpu())))
    return tile_grid(rows, gap=2)


def _json_ready(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def write_outputs(
    result: InversionResult,
    targets: Targets,
    preset: CameraPreset,
    outdir: str | os.PathLike,
    source: str = "",
    source_metadata: dict[str, Any] | None = None,
    options: OutputOptions | None = None,
    progress: bool = True,
) -> tuple[dict[str, Path], list[str]]:
    """Write the files listed in the module docstring; returns ({kind: path}, notes on what was skipped
    or found). The latent and the checkpoint are written first, so a failing extra never loses them."""
    options = options or OutputOptions()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    np.savez(
        outdir / "latent.npz",
        ws=result.ws.cpu().numpy(),
        cameras=result.cameras.cpu().numpy(),
        w_avg=result.w_avg.cpu().numpy(),
        names=np.array(result.names),
        **{f"psnr_{stage}": np.array(values) for stage, values in result.psnr.items()},
    )
    files["latent"] = outdir / "latent.npz"
    record = {"source": source, **_json_ready(result.summary())}
    metadata = {**(source_metadata or {}), CAMERA_METADATA_KEY: asdict(preset), "inversion": record}
    files["generator"] = save(outdir / "generator.safetensors", result.generator, metadata=metadata)
    files["picture"] = save_png(outdir / "before_after.png", before_after_picture(result, targets, preset))
    notes = []
    G = result.generator
    if isinstance(G, TriplaneGenerator):
        branch = result.config.branch or "2d"
        if options.video:
            full_circle = preset.distribution == "uniform" and preset.yaw_std >= math.pi
            trajectory = check_trajectory(
                options.trajectory or ("turntable" if full_circle else "front-circle")
            )
            path = outdir / f"{trajectory}.mp4"
            render_video(
                G, path, [0], trajectory=trajectory, num_frames=options.frames, branch=branch,
                camera=preset, progress=progress, ws=result.ws,
            )  # fmt: skip
            files["video"] = path
        if options.mesh:
            volume, planes = seed_volume(G, result.ws, options.mesh_resolution, progress=progress)
            try:
                mesh, report = seed_mesh(G, planes, volume, options.mesh_level, EG3D_BORDER_FRACTION)
                files["mesh"] = save_mesh(mesh, outdir / "mesh.ply")
                notes.append(f"mesh: {report.describe()}")
            except ValueError as err:  # the level misses the density: keep everything else
                notes.append(f"mesh skipped: {err}")
    else:
        notes.append(f"video and mesh skipped: the tools render tri-plane generators, not {type(G).__name__}")
    summary = {**record, "files": {k: str(v) for k, v in files.items()}, "notes": notes}
    (outdir / "inversion.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    files["summary"] = outdir / "inversion.json"
    return files, notes
