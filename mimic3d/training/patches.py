"""Where patches sit in an image: EpiGRAF's scaled patches and Mimic3D's pixel windows.

A **scaled patch** (EpiGRAF, "Rethinking training of 3D GANs", section 3.3) is an r x r grid over
the square [ox, ox + s] x [oy, oy + s] of the image, in normalised image coordinates (image side 1,
x to the right, y down from the top), sampled at its r x r pixel centres
(``mimic3d.render.scaled_patch_uv``) on the generator's pixel grid. A fake patch is rendered with
the rays through exactly those points (``TriplaneGenerator.render_scaled_patch``); a real patch
(and Mimic3D's teacher patch) is the bilinear sample of the image at the same points
(``ScaledPatches.crop``, which reads the image on that grid), so real and fake patches are aligned
by construction. Because all points lie within the image's pixel centres whenever s >= r / R, no
padding enters a crop; where the points fall on pixel centres the crop returns exact pixels.

A **pixel window** (Mimic3D) is a size x size block of full-resolution pixels at an integer
(top, left) corner: the scaled patch with s = size / R and offset (left, top) / R.

Scale distributions (EpiGRAF's ``training_utils.py``; t = kimg shown, ``linear_schedule``):

- ``beta``: s = s_min + (s_max - s_min) Beta(alpha, b(t)), b linear from ``beta_start`` to
  ``beta_end`` over ``anneal_kimg`` (EpiGRAF: alpha 1, b 0.001 -> 0.8 over 10000 kimg);
- ``uniform``: s ~ U[m(t), s_max], m(t) linear from s_max to s_min over ``anneal_kimg``;
- ``discrete``: s uniform over the ``discrete_support`` values in [m(t), s_max], m(t) as above.

s_min is ``min_scale`` (default r / R). Offsets are U(0, 1) (1 - s) per axis. Patches are square,
and consecutive groups of ``group_size`` samples (the discriminator's minibatch-std groups) share
one draw. Every draw comes from torch's global generator on the CPU (the training loop seeds it per
chunk), so runs are resumable and identical on every device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimic3d.camera import split_label, to_angles
from mimic3d.losses.schedules import linear_schedule
from mimic3d.models.patch_discriminator import HyperModulatedPatchDiscriminator
from mimic3d.render import scaled_patch_uv

SCALED_DISTRIBUTIONS = ("beta", "uniform", "discrete")
PATCH_DISTRIBUTIONS = ("window", *SCALED_DISTRIBUTIONS)


def crop_windows(images: Tensor, top: Tensor, left: Tensor, size: int) -> Tensor:
    """Per-sample windows: images [N, C, H, W], top/left [N] ints -> [N, C, size, size]."""
    offsets = torch.arange(size, device=images.device)
    rows = (top.to(images.device)[:, None] + offsets)[:, :, None]  # [N, size, 1]
    cols = (left.to(images.device)[:, None] + offsets)[:, None, :]  # [N, 1, size]
    batch = torch.arange(images.shape[0], device=images.device)[:, None, None]
    return images.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def random_windows(batch: int, resolution: int, size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Uniform top-left corners (top [N], left [N]) of size x size windows in an R x R image."""
    corners = torch.randint(resolution - size + 1, (batch, 2), device=device)
    return corners[:, 0], corners[:, 1]


def crop_scaled(
    images: Tensor, scale: Tensor, offset: Tensor, resolution: int, grid: str = "centres"
) -> Tensor:
    """Bilinear samples of images [N, C, H, W] at the r x r points of ``scaled_patch_uv`` -> [N, C, r, r].

    ``scale`` [N], ``offset`` [N, 2] (x, y); ``grid`` is the images' pixel grid, the one their rays
    used: "centres" (EG3D, pixel j at u = (j + 0.5) / W: ``align_corners=False``) or "corners"
    (EpiGRAF, u = j / (W - 1): ``align_corners=True``).
    """
    if images.ndim != 4:
        raise ValueError(f"images: expected [N, C, H, W], got {list(images.shape)}")
    uv = scaled_patch_uv(resolution, scale.to(images.device), offset.to(images.device), grid)  # [N, r*r, 2]
    points = (uv * 2 - 1).to(images.dtype).reshape(images.shape[0], resolution, resolution, 2)
    return F.grid_sample(
        images, points, mode="bilinear", padding_mode="border", align_corners=grid == "corners"
    )


@dataclass
class ScaledPatches:
    """EpiGRAF patches of ``resolution`` pixels: ``scale`` [N] (side / image side) and ``offset``
    [N, 2] (top-left corner x, y in image-side units, y from the top) on the generator's pixel
    ``grid`` ("centres" or "corners", ``RenderConfig.pixel_grid``)."""

    scale: Tensor
    offset: Tensor
    resolution: int
    grid: str = "centres"

    def crop(self, images: Tensor) -> Tensor:
        """The patches cut from images [N, C, H, W] (any H = W) -> [N, C, r, r]."""
        return crop_scaled(images, self.scale, self.offset, self.resolution, self.grid)


@dataclass
class PixelWindows:
    """Mimic3D windows: ``size`` x ``size`` full-resolution pixels at integer corners ``top``, ``left``
    [N] of an ``image_resolution``-pixel image."""

    top: Tensor
    left: Tensor
    size: int
    image_resolution: int

    @property
    def scale(self) -> Tensor:
        """[N]: the window's side over the image side."""
        return torch.full(self.top.shape, self.size / self.image_resolution, device=self.top.device)

    @property
    def offset(self) -> Tensor:
        """[N, 2]: (left, top) in image-side units."""
        return torch.stack([self.left, self.top], dim=1).float() / self.image_resolution

    def crop(self, images: Tensor) -> Tensor:
        """The windows cut from images [N, C, R, R] -> [N, C, size, size] (exact pixels)."""
        if images.shape[-1] != self.image_resolution:
            raise ValueError(
                f"images: windows are placed on {self.image_resolution}-pixel images, got {images.shape[-1]}"
            )
        return crop_windows(images, self.top, self.left, self.size)


@dataclass(frozen=True)
class ScaleSchedule:
    """The scale distribution at one moment: s in [min_scale, max_scale] from ``distribution`` with
    its current lower bound ``floor`` (uniform, discrete) or beta parameter ``beta``."""

    distribution: str
    min_scale: float
    max_scale: float
    floor: float
    alpha: float
    beta: float
    support: tuple[float, ...]


def scale_schedule(
    distribution: str,
    cur_kimg: float,
    min_scale: float,
    max_scale: float = 1.0,
    anneal_kimg: float = 10000.0,
    beta_start: float = 0.001,
    beta_end: float = 0.8,
    alpha: float = 1.0,
    support: tuple[float, ...] = (0.25, 1.0),
) -> ScaleSchedule:
    """EpiGRAF's ``progressive_update``: the beta parameter or the annealed lower bound at ``cur_kimg``."""
    if distribution not in SCALED_DISTRIBUTIONS:
        raise ValueError(f"distribution: expected one of {SCALED_DISTRIBUTIONS}, got {distribution!r}")
    if not 0 < min_scale <= max_scale <= 1:
        raise ValueError(f"scales: expected 0 < min_scale <= max_scale <= 1, got {min_scale}, {max_scale}")
    if distribution == "beta":
        floor, beta = min_scale, linear_schedule(cur_kimg, beta_start, beta_end, anneal_kimg)
    else:
        floor, beta = linear_schedule(cur_kimg, max_scale, min_scale, anneal_kimg), beta_end
    return ScaleSchedule(distribution, min_scale, max_scale, floor, alpha, beta, tuple(support))


def sample_scales(schedule: ScaleSchedule, count: int) -> Tensor:
    """``count`` scales [count] (float32, CPU) from the schedule's distribution."""
    s = schedule
    if s.distribution == "beta":
        concentration = torch.tensor([s.alpha, s.beta], dtype=torch.float64)
        draws = torch.distributions.Beta(concentration[0], concentration[1]).sample((count,))
        return (draws * (s.max_scale - s.min_scale) + s.min_scale).float()
    if s.distribution == "uniform":
        return (torch.rand(count, dtype=torch.float64) * (s.max_scale - s.floor) + s.floor).float()
    support = [v for v in s.support if s.floor <= v <= s.max_scale]
    if not support:
        raise ValueError(
            f"patches.discrete_support: no value in [{s.floor:g}, {s.max_scale:g}] (got {list(s.support)})"
        )
    index = torch.randint(len(support), (count,))
    return torch.tensor(support, dtype=torch.float32)[index]


def sample_scaled_patches(
    schedule: ScaleSchedule,
    batch: int,
    resolution: int,
    group_size: int,
    device: torch.device | str,
    grid: str = "centres",
) -> ScaledPatches:
    """``batch`` patches, one scale and offset per group of ``group_size`` consecutive samples.

    The group is min(group_size, batch), as in the minibatch-std layer; it must divide ``batch``.
    """
    group = min(group_size, batch)
    if group < 1 or batch % group:
        raise ValueError(
            f"run.batch_gpu: the per-chunk batch {batch} must be a multiple of the patch group "
            f"(the discriminator's mbstd_group_size {group_size})"
        )
    groups = batch // group
    scale = sample_scales(schedule, groups)  # [groups]
    offset = torch.rand(groups, 2) * (1.0 - scale[:, None])  # [groups, 2]
    scale = scale.repeat_interleave(group).to(device)
    offset = offset.repeat_interleave(group, dim=0).to(device)
    return ScaledPatches(scale, offset, resolution, grid)


def score_patches(D: nn.Module, patches: Tensor, where: ScaledPatches | PixelWindows, c: Tensor) -> Tensor:
    """Logits [N, 1] of a patch discriminator: the hyper-modulated one sees where each patch sits
    (and, with ``camera_cond``, the yaw and pitch of camera labels c [N, 25]); a plain one only pixels."""
    if not isinstance(D, HyperModulatedPatchDiscriminator):
        return D(patches, None)
    angles = to_angles(split_label(c)[0])[0] if D.config.camera_cond else None
    return D(patches, where.scale, where.offset, None, angles)
