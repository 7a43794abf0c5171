"""PSNR_mv / SSIM_mv: how well one static 3D scene explains a subject's generated views.

The papers (GRAM-HD, then Mimic3D Table 1: PSNR_mv 39.3 for the 3D branch, 35.7 for the 2D
branch at FFHQ 256) render multi-view images of 50 random subjects, reconstruct each subject with
NeuS and report PSNR/SSIM between the generated views and NeuS's re-renders. A perfectly 3D-consistent
generator's views are explained exactly by one scene; view-dependent flicker (2D super-resolution)
cannot be, and lowers the score.

This module follows that idea with a cheaper, self-contained reconstruction, so its numbers are NOT
comparable with the papers' 39.3 / 35.7:

- the reconstruction is a tri-plane radiance field (learned planes + ``TriplaneDecoder``, rendered by
  our ``TriplaneRenderer``), not NeuS's SDF network with positional encoding; it has no view
  direction input, so view-dependent appearance cannot be absorbed by the colour network as NeuS
  partly can;
- it is fitted with a small, configurable budget (``TriplaneFitConfig``: steps, plane resolution,
  channels, rays per step) instead of NeuS's hundreds of thousands of iterations with mask-free
  background modelling;
- besides the scores on the fitted views (the papers' number), it reports scores on held-out views
  that the fit never saw, which also penalise geometry that only holds up at the training poses;
- SSIM is ``mimic3d.metrics.correspondence.ssim`` (Gaussian 11x11, sigma 1.5), views are our own
  yaw/pitch grid (``MultiviewProtocol``), not GRAM-HD's exact pose list.

Compare models with each other under one fixed ``MultiviewProtocol``; keep the budget in the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimic3d.camera import PRESETS, CameraPreset, split_label
from mimic3d.metrics.correspondence import psnr, ssim
from mimic3d.metrics.reprojection import BRANCHES, check_generator, check_views, orbit_labels, render_views
from mimic3d.render import RenderConfig, TriplaneDecoder, TriplaneRenderer, generate_rays


@dataclass(frozen=True)
class TriplaneFitConfig:
    """Budget and optimiser of the per-subject tri-plane fit."""

    steps: int = 2000  # Adam steps
    rays_per_step: int = 4096  # random pixels of the training views per step
    plane_resolution: int = 128  # side S of each [C, S, S] plane
    plane_channels: int = 16  # C, the decoder's input width
    hidden_dim: int = 64  # decoder MLP width
    plane_lr: float = 0.2
    decoder_lr: float = 0.04
    final_lr_fraction: float = 0.1  # learning rates decay exponentially to this fraction at the last step
    tv_weight: float = 0.0  # total-variation penalty on the planes (smooths unobserved texels)
    init_std: float = 0.1  # standard deviation of the random initial plane features
    density_bias: float = -2.0  # added to the initial raw density: start from nearly empty space
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{f.name}: expected an int, got {value!r}")
        for name in ("steps", "rays_per_step", "plane_resolution", "plane_channels", "hidden_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(self, name)}")
        for name in ("plane_lr", "decoder_lr", "init_std"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")
        if not 0 < self.final_lr_fraction <= 1:
            raise ValueError(f"final_lr_fraction: expected a number in (0, 1], got {self.final_lr_fraction}")
        if not (math.isfinite(self.tv_weight) and self.tv_weight >= 0):
            raise ValueError(f"tv_weight: expected a number >= 0, got {self.tv_weight}")
        if not math.isfinite(self.density_bias):
            raise ValueError(f"density_bias: expected a finite number, got {self.density_bias}")


class FittedTriplane(nn.Module):
    """A single scene: planes [1, 3, C, S, S] + RGB decoder, rendered with ``render`` settings."""

    def __init__(self, config: TriplaneFitConfig, render: RenderConfig) -> None:
        super().__init__()
        rng = torch.Generator().manual_seed(config.seed)
        shape = (1, 3, config.plane_channels, config.plane_resolution, config.plane_resolution)
        self.planes = nn.Parameter(torch.randn(shape, generator=rng) * config.init_std)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.decoder = TriplaneDecoder(config.plane_channels, config.hidden_dim, 3)
        last = self.decoder.net[2]
        with torch.no_grad():
            last.bias[0] += config.density_bias / last.bias_gain
        self.renderer = TriplaneRenderer(render)

    def render_rays(
        self, origins: Tensor, directions: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """RGB in [-1, 1] along rays [1, M, 3] -> [1, M, 3]."""
        return self.renderer(self.planes, self.decoder, origins, directions, generator).features

    @torch.no_grad()
    def render(self, cameras: Tensor, resolution: int) -> Tensor:
        """Deterministic (``perturb=False``) images of cameras [V, 25] -> [V, 3, R, R] in [-1, 1]."""
        check_views(torch.empty(cameras.shape[0], 3, resolution, resolution), cameras)
        cam2world, intrinsics = split_label(cameras.to(device=self.planes.device, dtype=self.planes.dtype))
        renderer = self.renderer.with_options(perturb=False)
        images = []
        for view in range(cameras.shape[0]):
            one = slice(view, view + 1)
            origins, directions = generate_rays(cam2world[one], intrinsics[one], resolution)
            rgb = renderer(self.planes, self.decoder, origins, directions).features
            images.append(rgb[0].t().reshape(3, resolution, resolution))
        return torch.stack(images)


def _check_rgb_views(images: Tensor, cameras: Tensor) -> None:
    check_views(images, cameras)
    if images.shape[1] != 3:
        raise ValueError(f"images: expected RGB views [V, 3, R, R], got {list(images.shape)}")


def _total_variation(planes: Tensor) -> Tensor:
    dy = (planes[..., 1:, :] - planes[..., :-1, :]).square().mean()
    dx = (planes[..., :, 1:] - planes[..., :, :-1]).square().mean()
    return dx + dy


def fit_triplane(
    images: Tensor, cameras: Tensor, render: RenderConfig, config: TriplaneFitConfig | None = None
) -> FittedTriplane:
    """Fit one tri-plane radiance field to views images [V, 3, R, R] in [-1, 1] seen by cameras [V, 25].

    Adam on the planes and the decoder, ``config.rays_per_step`` random pixels per step (drawn over
    all views), MSE on RGB, stratified + importance sampling with jitter (``render.perturb`` is
    forced on while fitting). Runs on the images' device.
    """
    config = config if config is not None else TriplaneFitConfig()
    _check_rgb_views(images, cameras)
    if not isinstance(config, TriplaneFitConfig):
        raise ValueError(f"config: expected a TriplaneFitConfig, got {type(config).__name__}")
    if not isinstance(render, RenderConfig):
        raise ValueError(f"render: expected a RenderConfig, got {type(render).__name__}")
    device = images.device
    resolution = images.shape[-1]
    model = FittedTriplane(config, replace(render, perturb=True)).to(device)
    cam2world, intrinsics = split_label(cameras.to(device=device, dtype=torch.float32))
    origins, directions = generate_rays(cam2world, intrinsics, resolution)
    origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)
    targets = images.float().permute(0, 2, 3, 1).reshape(-1, 3)
    optimizer = torch.optim.Adam([
        {"params": [model.planes], "lr": config.plane_lr},
        {"params": model.decoder.parameters(), "lr": config.decoder_lr},
    ])
    decay = config.final_lr_fraction ** (1 / max(1, config.steps - 1))
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, decay)
    rng = torch.Generator(device=device).manual_seed(config.seed)
    batch = min(config.rays_per_step, targets.shape[0])
    for _ in range(config.steps):
        index = torch.randint(targets.shape[0], (batch,), generator=rng, device=device)
        rgb = model.render_rays(origins[index][None], directions[index][None], rng)[0]
        loss = F.mse_loss(rgb, targets[index])
        if config.tv_weight > 0:
            loss = loss + config.tv_weight * _total_variation(model.planes)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return model.eval()


@dataclass
class MultiviewScore:
    """Re-render scores of one subject; NaN where a split (fitted or held-out views) is empty."""

    psnr_fitted: float  # PSNR_mv in the papers' sense: on the views the fit saw
    ssim_fitted: float
    psnr_held_out: float  # on views the fit never saw
    ssim_held_out: float
    psnr_per_view: Tensor = field(repr=False)  # [V] float64
    ssim_per_view: Tensor = field(repr=False)  # [V] float64
    held_out: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, float]:
        return {"psnr_mv": self.psnr_fitted, "ssim_mv": self.ssim_fitted,
                "psnr_mv_held_out": self.psnr_held_out, "ssim_mv_held_out": self.ssim_held_out}


def _mean(values: Tensor) -> float:
    return float(values.mean()) if values.numel() else float("nan")


def multiview_consistency(
    images: Tensor,
    cameras: Tensor,
    held_out: Sequence[int],
    render: RenderConfig,
    config: TriplaneFitConfig | None = None,
) -> MultiviewScore:
    """Fit a tri-plane field to the views not in ``held_out`` and score its re-renders of every view.

    images [V, 3, R, R] in [-1, 1], cameras [V, 25]; ``held_out``: indices of views kept out of the fit
    (at least one view must remain). Returns PSNR/SSIM on fitted and held-out views.
    """
    _check_rgb_views(images, cameras)
    if images.shape[-1] < 11:
        size = images.shape[-1]
        raise ValueError(f"images: {size}x{size} views are smaller than the 11-pixel SSIM window")
    views = images.shape[0]
    held = tuple(sorted({int(i) for i in held_out}))
    if any(i < 0 or i >= views for i in held):
        raise ValueError(f"held_out: expected view indices in [0, {views}), got {list(held_out)}")
    fitted = [i for i in range(views) if i not in held]
    if not fitted:
        raise ValueError("held_out: every view is held out; at least one view must be fitted")
    model = fit_triplane(images[fitted], cameras[fitted], render, config)
    rerendered = model.render(cameras, images.shape[-1])
    target = images.float()
    psnr_per_view, ssim_per_view = psnr(rerendered, target).cpu(), ssim(rerendered, target).cpu()
    in_fit = torch.tensor([i not in held for i in range(views)])
    return MultiviewScore(
        _mean(psnr_per_view[in_fit]), _mean(ssim_per_view[in_fit]),
        _mean(psnr_per_view[~in_fit]), _mean(ssim_per_view[~in_fit]),
        psnr_per_view, ssim_per_view, held,
    )


@dataclass(frozen=True)
class MultiviewProtocol:
    """Which views of which subjects a generator's PSNR_mv / SSIM_mv is computed on.

    Views lie on a yaw x pitch grid around the preset's frontal pose (offsets up to ``max_yaw`` /
    ``max_pitch`` radians); grid points with an odd index along every axis with more than one view
    (interior points, surrounded by fitted views) are held out. Subjects use z ~ N(0, I) from ``seed``
    and are conditioned on the preset's frontal camera (EG3D's convention for multi-view renders).
    """

    num_subjects: int = 50
    branch: str = "3d"
    yaw_views: int = 7
    pitch_views: int = 3
    max_yaw: float = 0.5
    max_pitch: float = 0.25
    resolution: int | None = None  # fit at this size (area-resized); None: the generator's image size
    truncation_psi: float = 1.0
    preset: CameraPreset = field(default_factory=lambda: PRESETS["ffhq"])
    fit: TriplaneFitConfig = field(default_factory=TriplaneFitConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_subjects", "yaw_views", "pitch_views"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.yaw_views * self.pitch_views < 2:
            raise ValueError("yaw_views, pitch_views: the grid needs at least 2 views")
        if self.branch not in BRANCHES:
            raise ValueError(f"branch: expected one of {BRANCHES}, got {self.branch!r}")
        if not isinstance(self.fit, TriplaneFitConfig):
            raise ValueError(f"fit: expected a TriplaneFitConfig, got {type(self.fit).__name__}")
        if self.resolution is not None and (not isinstance(self.resolution, int) or self.resolution < 11):
            raise ValueError(
                f"resolution: expected None or an int >= 11 (the SSIM window), got {self.resolution!r}"
            )

    def view_grid(self) -> tuple[Tensor, Tensor, tuple[int, ...]]:
        """Yaw [V], pitch [V] (radians, yaw-major order) and the held-out view indices."""
        def offsets(count: int) -> Tensor:
            return torch.linspace(-1, 1, count) if count > 1 else torch.zeros(1)

        yaw = self.preset.yaw_mean + self.max_yaw * offsets(self.yaw_views)
        pitch = self.preset.pitch_mean + self.max_pitch * offsets(self.pitch_views)
        yaw_grid, pitch_grid = torch.meshgrid(yaw, pitch, indexing="ij")
        held = []
        for i in range(self.yaw_views):
            for j in range(self.pitch_views):
                odd_yaw = i % 2 == 1 or self.yaw_views == 1
                odd_pitch = j % 2 == 1 or self.pitch_views == 1
                if odd_yaw and odd_pitch:
                    held.append(i * self.pitch_views + j)
        return yaw_grid.reshape(-1), pitch_grid.reshape(-1), tuple(held)


@dataclass
class MultiviewSummary:
    """Mean scores over subjects, and each subject's ``MultiviewScore``."""

    mean: dict[str, float]
    subjects: list[MultiviewScore]


def generator_multiview_consistency(
    G: nn.Module, protocol: MultiviewProtocol | None = None, device: str | torch.device | None = None
) -> MultiviewSummary:
    """PSNR_mv / SSIM_mv of a ``TriplaneGenerator`` (``G.mapping``, ``G.synthesis``) on one branch.

    Each subject's views (``protocol.view_grid``) are rendered deterministically (const noise,
    ``perturb=False``), then fitted with ``G.config.rendering``'s ray range, box and background
    (importance sampling on, jitter on while fitting).
    """
    protocol = protocol if protocol is not None else MultiviewProtocol()
    check_generator(G, protocol.branch)
    device = torch.device(device) if device is not None else next(G.parameters()).device
    yaw, pitch, held = protocol.view_grid()
    cameras = orbit_labels(protocol.preset, yaw, pitch).to(device)
    conditioning = protocol.preset.frontal_label().to(device)[None]
    rng = torch.Generator().manual_seed(protocol.seed)
    scores = []
    for _ in range(protocol.num_subjects):
        z = torch.randn(1, G.z_dim, generator=rng).to(device)
        with torch.no_grad():
            ws = G.mapping(z, conditioning, truncation_psi=protocol.truncation_psi)
        images, _ = render_views(G, ws, cameras, protocol.branch)
        if protocol.resolution is not None and protocol.resolution != images.shape[-1]:
            images = F.interpolate(images, size=(protocol.resolution,) * 2, mode="area")
        scores.append(multiview_consistency(images, cameras, held, G.config.rendering, protocol.fit))
    keys = scores[0].as_dict().keys()
    mean = {key: float(sum(s.as_dict()[key] for s in scores) / len(scores)) for key in keys}
    return MultiviewSummary(mean, scores)
