"""Reprojection error: do two rendered views of one subject agree where they see the same surface?

Every pixel of view A is lifted to 3D with A's depth (the Euclidean distance along the pixel-centre
ray of ``mimic3d.render.generate_rays``, as the renderer's ``image_depth``), projected into view B
through B's cameras (the same normalised intrinsics, skew included), and B's image is sampled there
bilinearly (``grid_sample``, align_corners=False: pixel centres at (j + 0.5) / R). The result is B
warped into A's pixel grid; masked PSNR and L1 between it and A measure consistency. A perfectly
3D-consistent renderer with exact depth scores ~0 error (limited by bilinear interpolation).

A pixel of A counts only when (the mask):
- its depth is finite and positive (and below ``max_depth`` if given: background at the far bound);
- its point lies in front of camera B and projects inside the hull of B's pixel centres, so every
  bilinear tap is a real pixel (out-of-frame pixels are dropped);
- with B's depth: all four bilinear taps of B's depth are valid and the point's distance to camera B
  matches B's interpolated depth within ``depth_tolerance`` (relative). This drops pixels occluded
  in B, and pixels at B's depth discontinuities, whose colour taps straddle two surfaces.

For generators (``generator_reprojection_error``): the 3D branch is rendered with its native depth;
the 2D branch's depth is rendered at the neural rendering resolution and bilinearly upsampled to the
super-resolved image size, so its score includes what the 2D super-resolution invents per view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimic3d.camera import PRESETS, CameraPreset, make_label, orbit_cam2world, split_label
from mimic3d.metrics.correspondence import masked_l1, psnr
from mimic3d.render import generate_rays
from mimic3d.tools.rendering import shared_planes

BRANCHES = ("2d", "3d")
# Points closer than this to camera B's image plane (or behind it) cannot be projected.
_MIN_CAMERA_Z = 1e-6
# Bilinear validity of B's depth below 1 means a tap touched an invalid (background) pixel.
_FULL_VALIDITY = 1 - 1e-5


def _describe(x: object) -> str:
    return str(list(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def check_views(images: Tensor, cameras: Tensor, name: str = "images", camera_name: str = "cameras") -> None:
    """Square images [V, C, R, R] and matching camera labels [V, 25] with finite values."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"{name}: expected square images [V, C, R, R], got {_describe(images)}")
    if not isinstance(cameras, Tensor) or cameras.ndim != 2 or cameras.shape[1] != 25:
        raise ValueError(f"{camera_name}: expected camera labels [V, 25], got {_describe(cameras)}")
    if cameras.shape[0] != images.shape[0]:
        raise ValueError(f"{camera_name}: {cameras.shape[0]} labels for {images.shape[0]} {name}")
    if not bool(torch.isfinite(cameras).all()):
        raise ValueError(f"{camera_name}: labels contain non-finite values")


def _check_depth(depth: Tensor | None, images: Tensor, name: str) -> None:
    if depth is None:
        return
    expected = [images.shape[0], 1, *images.shape[2:]]
    if not isinstance(depth, Tensor) or list(depth.shape) != expected:
        raise ValueError(f"{name}: expected a depth map of shape {expected}, got {_describe(depth)}")


@dataclass
class ReprojectionResult:
    """Per-pair reprojection scores on A's pixel grid."""

    warped: Tensor  # [N, C, H, W] view B sampled at A's reprojected pixels; -1 outside the mask
    mask: Tensor  # [N, 1, H, W] bool, pixels of A that were compared
    psnr: Tensor  # [N] float64, dB on the [0, 1] scale; NaN where the mask is empty
    l1: Tensor  # [N] float64, mean |A - warped B| on the [0, 1] scale
    valid_fraction: Tensor  # [N] float64, share of A's pixels in the mask


def project_points(points: Tensor, cameras: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """World points [N, P, 3] into cameras [N, 25].

    Returns normalised image coordinates uv [N, P, 2] (pixel centres at (j + 0.5) / R), camera-space
    z [N, P] (positive in front) and the Euclidean distance to the camera centre [N, P] (the depth
    convention of the renderer). The inverse of ``rays_from_uv`` at that distance.
    """
    cam2world, intrinsics = split_label(cameras)
    rotation, origin = cam2world[:, :3, :3], cam2world[:, :3, 3]
    offset = points - origin[:, None]
    local = torch.einsum("npk,nkc->npc", offset, rotation)  # R^T (p - t)
    z = local[..., 2]
    safe_z = torch.where(z > _MIN_CAMERA_Z, z, torch.ones_like(z))
    x, y = local[..., 0] / safe_z, local[..., 1] / safe_z
    fx, skew, cx = intrinsics[:, 0, 0, None], intrinsics[:, 0, 1, None], intrinsics[:, 0, 2, None]
    fy, cy = intrinsics[:, 1, 1, None], intrinsics[:, 1, 2, None]
    uv = torch.stack([fx * x + skew * y + cx, fy * y + cy], -1)
    return uv, z, offset.norm(dim=-1)


def _sample(image: Tensor, uv: Tensor, height: int, width: int) -> Tensor:
    """Bilinear samples of image [N, C, Hb, Wb] at uv [N, H * W, 2] -> [N, C, H, W]."""
    grid = (uv * 2 - 1).view(uv.shape[0], height, width, 2)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def reprojection_error(
    image_a: Tensor,
    depth_a: Tensor,
    camera_a: Tensor,
    image_b: Tensor,
    camera_b: Tensor,
    depth_b: Tensor | None = None,
    depth_tolerance: float = 0.01,
    max_depth: float | None = None,
) -> ReprojectionResult:
    """Warp view B into view A with A's depth and compare (see the module docstring).

    image_a [N, C, R, R], image_b [N, C, Rb, Rb] in [-1, 1]; depth_a [N, 1, R, R] and optional
    depth_b [N, 1, Rb, Rb] (Euclidean, along pixel-centre rays; inf/NaN = no surface); cameras [N, 25].
    ``depth_tolerance``: relative depth agreement for the occlusion test against depth_b.
    """
    check_views(image_a, camera_a, "image_a", "camera_a")
    check_views(image_b, camera_b, "image_b", "camera_b")
    if image_a.shape[:2] != image_b.shape[:2]:
        raise ValueError(f"image_b: expected {image_a.shape[0]} images of {image_a.shape[1]} channels "
                         f"like image_a, got {list(image_b.shape)}")
    _check_depth(depth_a, image_a, "depth_a")
    _check_depth(depth_b, image_b, "depth_b")
    if not (math.isfinite(depth_tolerance) and depth_tolerance > 0):
        raise ValueError(f"depth_tolerance: expected a positive number, got {depth_tolerance}")
    if max_depth is not None and not max_depth > 0:
        raise ValueError(f"max_depth: expected None or a positive number, got {max_depth}")
    n, _, height, width = image_a.shape
    resolution_b = image_b.shape[-1]
    dtype = torch.promote_types(image_a.dtype, torch.float32)

    def has_surface(depth: Tensor) -> Tensor:
        valid = torch.isfinite(depth) & (depth > 0)
        return valid & (depth < max_depth) if max_depth is not None else valid

    valid_a = has_surface(depth_a).view(n, -1)
    cam2world_a, intrinsics_a = split_label(camera_a.to(device=image_a.device, dtype=dtype))
    origins, directions = generate_rays(cam2world_a, intrinsics_a, height)
    distance_a = torch.where(valid_a, depth_a.reshape(n, -1).to(dtype), torch.ones_like(valid_a, dtype=dtype))
    points = origins + distance_a[..., None] * directions
    uv, z, distance_b = project_points(points, camera_b.to(device=image_a.device, dtype=dtype))
    low, high = 0.5 / resolution_b, 1 - 0.5 / resolution_b
    slack = 1e-6
    in_frame = ((uv >= low - slack) & (uv <= high + slack)).all(-1) & (z > _MIN_CAMERA_Z)
    mask = valid_a & in_frame
    if depth_b is not None:
        valid_b = has_surface(depth_b)
        depth_filled = torch.where(valid_b, depth_b.to(dtype), torch.zeros_like(depth_b, dtype=dtype))
        sampled_depth = _sample(depth_filled, uv, height, width).view(n, -1)
        sampled_valid = _sample(valid_b.to(dtype), uv, height, width).view(n, -1)
        agrees = (distance_b - sampled_depth).abs() <= depth_tolerance * sampled_depth
        mask = mask & (sampled_valid >= _FULL_VALIDITY) & agrees
    mask = mask.view(n, 1, height, width)
    warped = _sample(image_b.to(dtype), uv, height, width)
    warped = torch.where(mask, warped, torch.full_like(warped, -1.0))
    reference = image_a.to(dtype)
    return ReprojectionResult(
        warped=warped,
        mask=mask,
        psnr=psnr(reference, warped, mask),
        l1=masked_l1(reference, warped, mask),
        valid_fraction=mask.double().mean(dim=(1, 2, 3)),
    )


# ---------------------------------------------------------------------------- generators


def check_generator(G: nn.Module, branch: str) -> None:
    """A ``TriplaneGenerator``-like module (``mapping``, ``planes``, ``synthesis``) and a branch name."""
    if branch not in BRANCHES:
        raise ValueError(f"branch: expected one of {BRANCHES}, got {branch!r}")
    missing = [name for name in ("mapping", "planes", "synthesis", "z_dim", "config") if not hasattr(G, name)]
    if missing:
        raise ValueError(f"G: expected a TriplaneGenerator (mapping, planes, synthesis), missing {missing}")


def orbit_labels(preset: CameraPreset, yaw: Tensor, pitch: Tensor) -> Tensor:
    """Labels [V, 25] of cameras on the preset's orbit (radius, pivot, focal) at yaw, pitch [V] (radians)."""
    pose = orbit_cam2world(yaw, pitch, preset.radius, preset.pivot)
    return make_label(pose, preset.intrinsics().to(pose.dtype))


@torch.no_grad()
def render_views(G: nn.Module, ws: Tensor, cameras: Tensor, branch: str) -> tuple[Tensor, Tensor]:
    """Views of one subject ws [1, num_ws, w_dim] from cameras [V, 25]: images [V, 3, H, W] in [-1, 1]
    and depth [V, 1, H, W] at the image size (the 2D branch's depth is bilinearly upsampled).

    Deterministic: const backbone noise, no ray jitter; the planes are synthesised once.
    """
    planes = shared_planes(G, ws, branch == "3d")
    images, depths = [], []
    for view in range(cameras.shape[0]):
        out = G.synthesis(ws, cameras[view : view + 1], branch=branch, perturb=False, planes=planes)
        image, depth = out["image"], out["image_depth"]
        if depth.shape[-1] != image.shape[-1]:
            depth = F.interpolate(depth, size=image.shape[-2:], mode="bilinear", align_corners=False)
        images.append(image)
        depths.append(depth)
    return torch.cat(images), torch.cat(depths)


@dataclass(frozen=True)
class ReprojectionProtocol:
    """View pairs of a generator's reprojection error.

    Each subject (z ~ N(0, I) from ``seed``, conditioned on the preset's frontal camera) gets
    ``pairs_per_subject`` pairs of cameras drawn uniformly within ``max_yaw`` / ``max_pitch`` radians
    of the preset's frontal pose, on its orbit (radius, pivot, focal).
    """

    num_subjects: int = 16
    pairs_per_subject: int = 4
    branch: str = "3d"
    max_yaw: float = 0.4
    max_pitch: float = 0.2
    depth_tolerance: float = 0.01
    occlusion_test: bool = True  # mask by B's depth; False: only out-of-frame / missing-depth pixels
    truncation_psi: float = 1.0
    preset: CameraPreset = field(default_factory=lambda: PRESETS["ffhq"])
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_subjects", "pairs_per_subject"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.branch not in BRANCHES:
            raise ValueError(f"branch: expected one of {BRANCHES}, got {self.branch!r}")
        for name in ("max_yaw", "max_pitch"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name}: expected a number >= 0, got {getattr(self, name)}")


@dataclass
class ReprojectionSummary:
    """Per-pair scores of all subjects ([num_subjects * pairs_per_subject] each) and their means."""

    psnr: Tensor
    l1: Tensor
    valid_fraction: Tensor

    def as_dict(self) -> dict[str, float]:
        """Means over pairs; pairs with an empty mask (NaN) are skipped, identical pairs give +inf."""
        return {
            "reprojection_psnr": float(self.psnr.nanmean()),
            "reprojection_l1": float(self.l1.nanmean()),
            "reprojection_valid_fraction": float(self.valid_fraction.mean()),
        }


def generator_reprojection_error(
    G: nn.Module, protocol: ReprojectionProtocol | None = None, device: str | torch.device | None = None
) -> ReprojectionSummary:
    """Reprojection error of a ``TriplaneGenerator`` on one branch (see ``ReprojectionProtocol``)."""
    protocol = protocol if protocol is not None else ReprojectionProtocol()
    check_generator(G, protocol.branch)
    device = torch.device(device) if device is not None else next(G.parameters()).device
    preset = protocol.preset
    conditioning = preset.frontal_label().to(device)[None]
    rng = torch.Generator().manual_seed(protocol.seed)
    views = 2 * protocol.pairs_per_subject
    results = []
    for _ in range(protocol.num_subjects):
        z = torch.randn(1, G.z_dim, generator=rng).to(device)
        yaw = preset.yaw_mean + protocol.max_yaw * (2 * torch.rand(views, generator=rng) - 1)
        pitch = preset.pitch_mean + protocol.max_pitch * (2 * torch.rand(views, generator=rng) - 1)
        cameras = orbit_labels(preset, yaw, pitch).to(device)
        with torch.no_grad():
            ws = G.mapping(z, conditioning, truncation_psi=protocol.truncation_psi)
        images, depths = render_views(G, ws, cameras, protocol.branch)
        results.append(reprojection_error(
            images[0::2], depths[0::2], cameras[0::2], images[1::2], cameras[1::2],
            depth_b=depths[1::2] if protocol.occlusion_test else None,
            depth_tolerance=protocol.depth_tolerance,
        ))
    return ReprojectionSummary(
        psnr=torch.cat([r.psnr for r in results]).cpu(),
        l1=torch.cat([r.l1 for r in results]).cpu(),
        valid_fraction=torch.cat([r.valid_fraction for r in results]).cpu(),
    )
