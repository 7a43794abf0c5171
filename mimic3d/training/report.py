"""A report folder for a trained generator: samples, multi-view video, mesh, EPI, offline metrics.

Everything here runs offline and on a CPU: the metrics are the weight-free SWD (generated vs real
images, both branches) and the reprojection consistency of each branch (how well two rendered views
of one subject agree through the rendered depth; Mimic3D's 3D branch should beat the 2D branch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mimic3d.data import ImageDataset
from mimic3d.metrics import MetricProtocol, compute_metric
from mimic3d.metrics.reprojection import ReprojectionProtocol, generator_reprojection_error
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.tools.epi import epi_picture, seed_epis
from mimic3d.tools.generate import generate_sample_grids, save_sample_grids
from mimic3d.tools.imaging import enlarge, save_png, tile_grid
from mimic3d.tools.latents import seed_ws
from mimic3d.tools.mesh import EG3D_BORDER_FRACTION, seed_mesh, seed_volume
from mimic3d.tools.rendering import render_settings
from mimic3d.tools.trajectories import trajectory_labels
from mimic3d.tools.video import render_video
from mimic3d.tools.viewpoints import camera_preset_for
from mimic3d.training.evaluation import branch_generator
from mimic3d.training.visuals import branch_rows, fixed_grid_inputs

SAMPLE_SEEDS = (0, 1, 2, 3)
BRANCHES = ("2d", "3d")
# Pictures of small models are enlarged (nearest neighbour) to tiles of at least this many pixels, and
# the 3D branch's video is rendered at up to this size: a NeRF renders at any resolution.
DISPLAY_SIZE = 128


def _display_factor(G: TriplaneGenerator) -> int:
    return max(1, DISPLAY_SIZE // G.img_resolution)


@dataclass
class Report:
    """Files of a report folder and the metric values (also written to ``metrics.json``)."""

    folder: Path
    files: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what could not be produced, and why


def write_samples(
    G: TriplaneGenerator,
    dataset: ImageDataset,
    report: Report,
    count: int = 8,
    branches: tuple[str, ...] = BRANCHES,
) -> None:
    """``samples.png`` (rows: 2D image, raw, depth, 3D image, depth, for the given branches) with the
    dataset's cameras, enlarged to tiles of at least ``DISPLAY_SIZE`` pixels."""
    z, c = fixed_grid_inputs(dataset.labels, count, G.z_dim, seed=0)
    device = next(G.parameters()).device
    rows = branch_rows(G, z.to(device), c.to(device), branches, G.config.neural_rendering_resolution)
    grid = enlarge(tile_grid(list(rows.values()), gap=2), _display_factor(G))
    report.files["samples"] = save_png(report.folder / "samples.png", grid)


def write_multiview(G: TriplaneGenerator, report: Report, branches: tuple[str, ...] = BRANCHES) -> None:
    """``multiview/seedNNNN.png``: three views of each seed, the given branches with depth and normals."""
    branch = "both" if len(branches) > 1 else branches[0]
    grids = generate_sample_grids(G, list(SAMPLE_SEEDS), branch=branch, progress=False)
    factor = _display_factor(G)
    grids = {seed: enlarge(picture, factor) for seed, picture in grids.items()}
    paths = save_sample_grids(grids, report.folder / "multiview")
    report.files["multiview grids"] = paths[0].parent


def write_epi(
    G: TriplaneGenerator,
    report: Report,
    seed: int = 0,
    frames: int = 64,
    branches: tuple[str, ...] = BRANCHES,
) -> None:
    """``epi_seedNNNN.png``: the middle image row over a yaw sweep, one strip per branch (2D | 3D; the
    3D branch at up to ``DISPLAY_SIZE``); straight strips mean a 3D-consistent branch."""
    preset = camera_preset_for(G)
    labels = trajectory_labels("yaw-sweep", frames, preset, device=next(G.parameters()).device)
    resolution = G.img_resolution * min(_display_factor(G), 4)
    with render_settings(G):
        epis = seed_epis(G, seed_ws(G, [seed], preset), labels, branches, 0.5, resolution)
    path = report.folder / f"epi_seed{seed:04d}.png"
    report.files["epi"] = save_png(path, epi_picture(list(epis.values())))


def write_video(
    G: TriplaneGenerator,
    report: Report,
    frames: int,
    seeds: tuple[int, ...] = SAMPLE_SEEDS,
    depth_multiplier: float = 2.0,
) -> None:
    """``multiview_3d.mp4``: an orbit of ``seeds`` rendered by the 3D branch, with depth, at up to
    ``DISPLAY_SIZE`` pixels (more than the training resolution for small models), with
    ``depth_multiplier`` times the model's samples per ray (EG3D's video script: 2)."""
    path = report.folder / "multiview_3d.mp4"
    resolution = G.img_resolution * min(_display_factor(G), 4)
    render_video(
        G,
        path,
        list(seeds),
        num_frames=frames,
        fps=24.0,
        branch="3d",
        depth=True,
        resolution=resolution,
        depth_multiplier=depth_multiplier,
        progress=False,
    )
    report.files["video"] = path


def write_mesh(G: TriplaneGenerator, report: Report, resolution: int = 64, seed: int = 0) -> None:
    """``mesh_seed0.ply``: marching cubes of seed 0's density with vertex colours."""
    preset = camera_preset_for(G)
    ws = seed_ws(G, [seed], preset)
    volume, planes = seed_volume(G, ws, resolution=resolution)
    try:
        mesh, summary = seed_mesh(G, planes, volume, border_fraction=EG3D_BORDER_FRACTION)
    except ValueError:
        report.notes.append(f"no mesh: seed {seed}'s density is flat inside the box")
        return
    report.metrics["mesh_level"] = summary.level
    path = report.folder / f"mesh_seed{seed}.ply"
    mesh.export(path)
    report.files["mesh"] = path
    report.metrics["mesh_vertices"] = float(summary.vertices)
    report.metrics["mesh_watertight"] = float(summary.watertight)


def write_consistency(G: TriplaneGenerator, report: Report, branches: tuple[str, ...] = BRANCHES) -> None:
    """Reprojection consistency (PSNR, L1, valid fraction) of each branch."""
    preset = camera_preset_for(G)
    for branch in branches:
        consistency = generator_reprojection_error(
            G, ReprojectionProtocol(num_subjects=8, pairs_per_subject=2, branch=branch, preset=preset)
        )
        for key, value in consistency.as_dict().items():
            report.metrics[f"{branch}/{key}"] = value


def write_swd(
    G: TriplaneGenerator,
    dataset: ImageDataset,
    report: Report,
    num_images: int,
    branches: tuple[str, ...] = BRANCHES,
) -> None:
    """SWD (x1e3, per pyramid level and averaged) of each branch against ``dataset``."""
    protocol = MetricProtocol(
        f"swd{num_images}", "swd", num_gen=num_images, max_real=num_images, detector=None
    )
    device = next(G.parameters()).device
    for branch in branches:
        result = compute_metric(
            protocol,
            branch_generator(G, branch),
            dataset.camera_sampler(),
            dataset,
            z_dim=G.z_dim,
            device=device,
        )
        for key, value in result.results.items():
            report.metrics[f"{branch}/{key}"] = float(value)


def write_metrics_file(report: Report) -> None:
    path = report.folder / "metrics.json"
    path.write_text(json.dumps(report.metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    report.files["metrics"] = path


def write_metrics(
    G: TriplaneGenerator,
    dataset: ImageDataset,
    report: Report,
    num_images: int,
    branches: tuple[str, ...] = BRANCHES,
) -> None:
    """SWD and reprojection consistency of each branch, then ``metrics.json``."""
    write_swd(G, dataset, report, num_images, branches)
    write_consistency(G, report, branches)
    write_metrics_file(report)


def write_model_report(
    G: TriplaneGenerator,
    folder: str | Path,
    video_frames: int = 36,
    mesh_resolution: int = 64,
    branches: tuple[str, ...] = BRANCHES,
    video_seeds: tuple[int, ...] = SAMPLE_SEEDS,
    video_depth_multiplier: float = 2.0,
) -> Report:
    """What needs no dataset, into ``folder`` (``G`` in eval mode, on its device): multi-view grids of
    ``branches``, the 3D branch's orbit video of ``video_seeds`` (see ``write_video``), seed 0's
    mesh, its EPI image and the reprojection consistency of each branch. ``branches`` are those the
    model was trained with (EpiGRAF renders only directly: "3d")."""
    report = Report(Path(folder))
    report.folder.mkdir(parents=True, exist_ok=True)
    G = G.eval().requires_grad_(False)
    with torch.no_grad():
        write_multiview(G, report, branches)
        write_video(G, report, video_frames, video_seeds, video_depth_multiplier)
        write_mesh(G, report, mesh_resolution)
        write_epi(G, report, branches=branches)
    write_consistency(G, report, branches)
    write_metrics_file(report)
    return report


def write_report(
    G: TriplaneGenerator,
    dataset: ImageDataset,
    folder: str | Path,
    video_frames: int = 36,
    metric_images: int = 256,
    branches: tuple[str, ...] = BRANCHES,
) -> Report:
    """``write_model_report`` plus the dataset's parts: ``samples.png`` and SWD of each branch."""
    report = write_model_report(G, folder, video_frames, branches=branches)
    with torch.no_grad():
        write_samples(G, dataset, report, branches=branches)
    write_swd(G, dataset, report, metric_images, branches)
    write_metrics_file(report)
    return report
