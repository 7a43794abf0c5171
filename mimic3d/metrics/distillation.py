"""How well a distilled student reproduces its teacher (NeRF-GAN distillation's evaluation).

- Correspondence PSNR (the paper's Table 4): teacher and student render the same (z, c); the
  per-image PSNR of the final images, and of the low-resolution images (the student's first three
  feature channels against the teacher's neural render), averaged over the samples.
- Reprojection consistency with the teacher's depth: the student has no geometry of its own that
  can be trusted, so view B of the student is warped into view A through the teacher's depth of
  the same subject (``mimic3d.metrics.reprojection``). A student that keeps the teacher's 3D
  structure scores close to the teacher's own reprojection PSNR (reported beside it); one that
  repaints each view scores lower.
- FID/KID of both (``mimic3d.metrics.compute_metric``) when a dataset and an Inception detector are
  at hand (``mimic3d distill --evaluate ... --metrics fid2k_full``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from mimic3d.metrics.correspondence import correspondence_psnr, masked_mse, mse_to_psnr
from mimic3d.metrics.reprojection import (
    ReprojectionProtocol,
    ReprojectionSummary,
    orbit_labels,
    render_views,
    reprojection_error,
)
from mimic3d.metrics.runner import GenerateFn, LabelSampler
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.models.student import StudentGenerator


def branch_images(G: nn.Module, branch: str, key: str = "image") -> GenerateFn:
    """``(z, c) -> G(z, c)[key]`` of one branch, deterministic (constant noise, no jitter)."""

    def generate(z: Tensor, c: Tensor) -> Tensor:
        with torch.no_grad():
            return G(z, c, branch=branch, noise_mode="const", perturb=False)[key]

    return generate


def _raw_images(G: nn.Module, branch: str, resolution: int) -> GenerateFn:
    """Low-resolution images: the student's first feature channels; the teacher's neural render
    (2D branch) or its render at the student's feature resolution (3D branch)."""
    if isinstance(G, StudentGenerator):
        return branch_images(G, "2d", "image_raw")

    def generate(z: Tensor, c: Tensor) -> Tensor:
        with torch.no_grad():
            ws = G.mapping(z, c)
            if branch == "2d":
                return G.synthesis(ws, c, branch="2d", noise_mode="const", perturb=False)["image_raw"]
            planes = G.planes(ws, noise_mode="const")
            return G.render(planes, c, resolution, perturb=False, channels=3)[0]

    return generate


@dataclass
class StudentReport:
    """Correspondence and consistency of a student with its teacher (``as_dict`` for JSON)."""

    psnr: float  # mean per-image PSNR of the final images, dB
    psnr_lr: float  # the same for the low-resolution images
    num_images: int
    student_reprojection: ReprojectionSummary
    teacher_reprojection: ReprojectionSummary

    def as_dict(self) -> dict[str, float]:
        values = {"correspondence_psnr": self.psnr, "correspondence_psnr_lr": self.psnr_lr}
        values["num_images"] = self.num_images
        for name, summary in (("student", self.student_reprojection), ("teacher", self.teacher_reprojection)):
            for key, value in summary.as_dict().items():
                values[f"{name}_{key}"] = value
        return values


def student_reprojection_error(
    student: StudentGenerator, teacher: TriplaneGenerator, protocol: ReprojectionProtocol | None = None
) -> tuple[ReprojectionSummary, ReprojectionSummary]:
    """Reprojection scores of the student's views warped through the teacher's depth, and of the
    teacher's own views (same subjects, cameras and depths; ``protocol.branch`` is the teacher's)."""
    protocol = (
        protocol if protocol is not None else ReprojectionProtocol(branch=student.config.teacher_branch)
    )
    device = next(student.parameters()).device
    preset = protocol.preset
    conditioning = preset.frontal_label().to(device)[None]
    rng = torch.Generator().manual_seed(protocol.seed)
    views = 2 * protocol.pairs_per_subject
    scores: dict[str, list] = {"student": [], "teacher": []}
    for _ in range(protocol.num_subjects):
        z = torch.randn(1, teacher.z_dim, generator=rng).to(device)
        yaw = preset.yaw_mean + protocol.max_yaw * (2 * torch.rand(views, generator=rng) - 1)
        pitch = preset.pitch_mean + protocol.max_pitch * (2 * torch.rand(views, generator=rng) - 1)
        cameras = orbit_labels(preset, yaw, pitch).to(device)
        with torch.no_grad():
            ws = teacher.mapping(z, conditioning, truncation_psi=protocol.truncation_psi)
        teacher_images, depths = render_views(teacher, ws, cameras, protocol.branch)
        student_images, _ = render_views(student, ws, cameras, "2d")
        if student_images.shape[-1] != depths.shape[-1]:
            raise ValueError("student: its images and the teacher's differ in size")
        for name, images in (("student", student_images), ("teacher", teacher_images)):
            scores[name].append(
                reprojection_error(
                    images[0::2],
                    depths[0::2],
                    cameras[0::2],
                    images[1::2],
                    cameras[1::2],
                    depth_b=depths[1::2] if protocol.occlusion_test else None,
                    depth_tolerance=protocol.depth_tolerance,
                )
            )

    def summary(results: list) -> ReprojectionSummary:
        return ReprojectionSummary(
            psnr=torch.cat([r.psnr for r in results]).cpu(),
            l1=torch.cat([r.l1 for r in results]).cpu(),
            valid_fraction=torch.cat([r.valid_fraction for r in results]).cpu(),
        )

    return summary(scores["student"]), summary(scores["teacher"])


def evaluate_student(
    student: StudentGenerator,
    teacher: TriplaneGenerator,
    labels: LabelSampler,
    num_images: int = 64,
    batch_size: int = 4,
    seed: int = 0,
    reprojection: ReprojectionProtocol | None = None,
) -> StudentReport:
    """Correspondence PSNR over ``num_images`` (z, c) pairs (cameras from ``labels``) and the
    reprojection scores (``student_reprojection_error``) of ``student`` against ``teacher``."""
    if not isinstance(student, StudentGenerator) or not isinstance(teacher, TriplaneGenerator):
        raise ValueError("evaluate_student: expected a StudentGenerator and its TriplaneGenerator teacher")
    if teacher.config != student.config.teacher:
        raise ValueError("teacher: its architecture is not the one this student was distilled from")
    branch = student.config.teacher_branch
    device = next(student.parameters()).device
    options = dict(
        num_images=num_images, z_dim=teacher.z_dim, batch_size=batch_size, seed=seed, device=device
    )
    final = correspondence_psnr(
        branch_images(teacher, branch), branch_images(student, "2d"), labels, **options
    )
    resolution = student.config.neural_rendering_resolution
    raw = correspondence_psnr(
        _raw_images(teacher, branch, resolution), _raw_images(student, "2d", resolution), labels, **options
    )
    protocol = reprojection or ReprojectionProtocol(num_subjects=4, pairs_per_subject=2)
    protocol = replace(protocol, branch=branch)
    student_scores, teacher_scores = student_reprojection_error(student, teacher, protocol)
    return StudentReport(final.psnr_mean, raw.psnr_mean, num_images, student_scores, teacher_scores)


def mean_image_psnr(images: Tensor) -> float:
    """Mean PSNR of images [N, 3, H, W] against their own mean image: what a constant predictor scores."""
    mean = images.mean(dim=0, keepdim=True).expand_as(images)
    return float(mse_to_psnr(masked_mse(images, mean)).mean())
