"""Distilled students against their teachers: the side-by-side sweep picture and the evaluation report
of ``mimic3d distill --evaluate`` (numbers from ``mimic3d.metrics.distillation``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mimic3d.models.generator import TriplaneGenerator
from mimic3d.models.student import StudentGenerator
from mimic3d.runtime import resolve_device
from mimic3d.tools.imaging import resize_images, save_png, tile_grid, to_uint8
from mimic3d.tools.latents import seed_ws
from mimic3d.tools.parsing import parse_seeds
from mimic3d.tools.rendering import load_generator, render_branch, render_settings
from mimic3d.tools.viewpoints import camera_preset_for, view_labels


def sweep_offsets(views: int, yaw_range: float) -> list[float]:
    """``views`` yaw offsets evenly over [-yaw_range, yaw_range] (radians from frontal)."""
    if views < 1:
        raise ValueError(f"views: expected a positive number of views, got {views}")
    if views == 1:
        return [0.0]
    return [float(x) for x in np.linspace(-yaw_range, yaw_range, views)]


def comparison_grid(
    teacher: TriplaneGenerator,
    student: StudentGenerator,
    seeds: str | Sequence[int] = "0-2",
    views: int = 5,
    yaw_range: float = 0.5,
    pitch_offset: float = -0.1,
    truncation_psi: float = 0.7,
    camera: str | None = None,
    difference: bool = True,
) -> np.ndarray:
    """uint8 grid: per seed a teacher row, a student row and (``difference``) their absolute
    difference x2 (black = equal), one column per view of the yaw sweep, at the final image size."""
    seeds = parse_seeds(seeds)
    preset = camera_preset_for(teacher, camera)
    device = next(student.parameters()).device
    labels = view_labels(sweep_offsets(views, yaw_range), pitch_offset, preset, device)
    branch = student.config.teacher_branch
    rows: list[list[np.ndarray]] = []
    with render_settings(teacher):
        for seed in seeds:
            ws = seed_ws(teacher, [seed], preset, truncation_psi)
            images = {}
            for name, G, used in (("teacher", teacher, branch), ("student", student, "2d")):
                renders = [render_branch(G, ws, labels[i : i + 1], used)[0] for i in range(len(labels))]
                images[name] = torch.cat(renders)
            size = images["teacher"].shape[-1]
            pictures = [images["teacher"], resize_images(images["student"], size)]
            if difference:
                pictures.append((pictures[0] - pictures[1]).abs() * 2 - 1)  # |diff| x2, mapped to [-1, 1]
            rows += [list(to_uint8(picture)) for picture in pictures]
    return tile_grid(rows)


def load_student(source: str | os.PathLike, device: torch.device) -> StudentGenerator:
    """The student of a checkpoint or of a distillation run folder (its latest snapshot)."""
    student = load_generator(source, device)
    if not isinstance(student, StudentGenerator):
        raise ValueError(f"--evaluate: {source} holds a {type(student).__name__}, not a distilled student")
    return student


def evaluation_report(
    student_source: str | os.PathLike,
    teacher: str | os.PathLike | None = None,
    num_images: int = 64,
    data: str | os.PathLike | None = None,
    metrics: Sequence[str] = (),
    picture: str | os.PathLike | None = None,
    seeds: str = "0-2",
    device: str = "auto",
) -> dict:
    """``mimic3d distill --evaluate``: correspondence PSNR and reprojection scores of a student
    against its teacher (``evaluate_student``), FID/KID of both for ``metrics`` (with ``data``; skipped
    with a note when no Inception detector file is present), and the sweep ``picture``."""
    from mimic3d.data import ImageDataset
    from mimic3d.metrics.detector import find_detector_file, load_inception
    from mimic3d.metrics.distillation import branch_images, evaluate_student
    from mimic3d.metrics.runner import compute_metric
    from mimic3d.training.data import PresetCameraSampler
    from mimic3d.training.distill import read_teacher

    if metrics and data is None:
        raise ValueError("--metrics: FID/KID need the real images; add --data DATASET")
    where = resolve_device(device)
    student = load_student(student_source, where)
    teacher = teacher or student.config.teacher_source
    if not teacher:
        raise ValueError("--teacher: this student does not record its teacher; give --teacher PATH")
    model = read_teacher(teacher, where)
    dataset = ImageDataset(data) if data is not None else None
    labels = (
        dataset.camera_sampler() if dataset is not None else PresetCameraSampler(camera_preset_for(model))
    )
    report = evaluate_student(student, model, labels, num_images=num_images).as_dict()
    report.update({"student": str(student_source), "teacher": str(teacher)})
    if metrics:
        try:
            extractor = load_inception(find_detector_file(None, allow_download=False), where)
        except FileNotFoundError as err:
            report["metrics"] = f"skipped: {err}"
        else:
            branch = student.config.teacher_branch
            for name, G, used in (("teacher", model, branch), ("student", student, "2d")):
                for protocol in metrics:
                    result = compute_metric(
                        protocol,
                        branch_images(G, used),
                        labels,
                        dataset,
                        extractor,
                        z_dim=model.z_dim,
                        device=where,
                        dataset_path=data,
                    )
                    for key, value in result.results.items():
                        report[f"{name}_{key}"] = float(value)
    if picture is not None:
        grid = comparison_grid(model, student, seeds)
        report["picture"] = str(save_png(Path(picture), grid))
    return report
