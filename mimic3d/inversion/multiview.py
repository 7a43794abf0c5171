"""The inversion driver: one or more views of one subject -> one latent and (PTI) one tuned generator.

Stages, all on every view at once (the loss is the mean over views):

1. cameras: the targets' own, or, when they have none, the best pose of a coarse grid over the model's
   camera statistics for each view (rendered from w_avg), then optimised jointly with the latent;
2. latent: ``fit_latent`` in W (``method="w"``) or W+ (``"w+"``); for ``"pti"`` in ``pivot`` space;
3. ``"pti"`` only: ``pivotal_tuning`` of the generator's weights around that pivot.

The generator is never modified: the result holds a copy (with the fitted noise maps, and tuned
weights for PTI) that renders the subject exactly as fitted.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mimic3d.camera import CameraPreset
from mimic3d.inversion.cameras import OrbitCameras, conditioning_camera, search_cameras
from mimic3d.inversion.latents import SPACES, ProjectorSchedule, fit_latent, latent_statistics
from mimic3d.inversion.objectives import ReconstructionLoss, psnr
from mimic3d.inversion.pivotal import LocalityRegularizer, pivotal_tuning
from mimic3d.inversion.views import Targets, render_views
from mimic3d.losses.lpips import LPIPS

METHODS = ("w", "w+", "pti")


@dataclass
class InversionConfig:
    """Every setting of an inversion; defaults are StyleGAN2's projector's and PTI's.

    method: "w", "w+" (latent only) or "pti" (latent pivot in ``pivot`` space, then pivotal tuning).
    branch: "2d" / "3d" for Mimic3D (which branch renders the fitted images); None: the generator's
    default (the 2D branch of tri-plane models). steps / pti_steps: latent / tuning steps.
    estimate_cameras: None = only when the targets come without cameras.
    """

    method: str = "pti"
    pivot: str = "w"
    branch: str | None = None
    steps: int = 500
    pti_steps: int = 350
    lr: float = 0.1
    lr_rampdown: float = 0.25
    lr_rampup: float = 0.05
    noise_factor: float = 0.05
    noise_ramp: float = 0.75
    optimize_noise: bool = True
    noise_weight: float = 1e5
    latent_weight: float = 0.0
    lpips_weight: float = 1.0
    l2_weight: float = 1.0
    w_avg_samples: int = 10000
    estimate_cameras: bool | None = None
    camera_lr: float = 0.01
    radius_lr: float = 0.002
    search_yaws: int = 7
    search_pitches: int = 3
    pti_lr: float = 3e-4
    locality_weight: float = 1.0
    locality_radius: float = 0.5
    locality_every: int = 1
    lpips_threshold: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {self.method!r}")
        if self.pivot not in SPACES:
            raise ValueError(f"pivot: expected one of {SPACES}, got {self.pivot!r}")
        for name in (
            "steps",
            "pti_steps",
            "w_avg_samples",
            "search_yaws",
            "search_pitches",
            "locality_every",
        ):
            value = getattr(self, name)
            minimum = 0 if name in ("steps", "pti_steps") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
        for name in ("lr", "pti_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive learning rate, got {getattr(self, name)}")
        for name in ("camera_lr", "radius_lr"):
            if not getattr(self, name) >= 0:
                raise ValueError(
                    f"{name}: expected a learning rate >= 0 (0: fixed), got {getattr(self, name)}"
                )
        for name in ("noise_weight", "latent_weight", "lpips_weight", "l2_weight", "locality_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected a weight >= 0, got {getattr(self, name)}")

    @property
    def latent_space(self) -> str:
        return self.pivot if self.method == "pti" else self.method

    def schedule(self) -> ProjectorSchedule:
        return ProjectorSchedule(
            self.lr, self.lr_rampdown, self.lr_rampup, self.noise_factor, self.noise_ramp
        )


@dataclass
class InversionResult:
    """ws [1, num_ws, w_dim]; cameras [V, 25] (given or estimated); generator: the model that renders the
    subject (a copy: fitted noise maps, and tuned weights for PTI); PSNR (dB) per view of w_avg, of the
    latent alone and of the final result; losses per step; seconds per step; ``estimated``: yaw, pitch,
    radius per view when the cameras were estimated; ``camera_source``: where the camera statistics
    came from; w_avg [1, num_ws, w_dim] (the start); ``renders``: images [V, 3, H, W] of w_avg, of the
    latent alone and of the final result from the fitted cameras; ``files`` / ``notes``: what
    ``invert(..., outdir=...)`` wrote and skipped."""

    ws: Tensor
    cameras: Tensor
    generator: nn.Module
    config: InversionConfig
    psnr: dict[str, list[float]]
    losses: dict[str, list[float]]
    seconds_per_step: dict[str, float]
    camera_source: str
    estimated: dict[str, list[float]] | None = None
    names: list[str] = field(default_factory=list)
    w_avg: Tensor | None = None
    renders: dict[str, Tensor] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready record: config, PSNRs, final losses, timings, estimated cameras."""
        return {
            "config": asdict(self.config),
            "views": list(self.names),
            "psnr": self.psnr,
            "final_loss": {stage: values[-1] if values else None for stage, values in self.losses.items()},
            "steps_run": {stage: len(values) for stage, values in self.losses.items()},
            "seconds_per_step": self.seconds_per_step,
            "camera_source": self.camera_source,
            "estimated_cameras": self.estimated,
        }


def _score(
    G: nn.Module, ws: Tensor, cameras: Tensor, targets: Tensor, branch: str | None
) -> tuple[list[float], Tensor]:
    """PSNR per view and the renders [V, 3, H, W] of ws from the cameras."""
    with torch.no_grad():
        images = render_views(G, ws, cameras, branch)
    return psnr(images, targets).tolist(), images


def invert_targets(
    G: nn.Module,
    targets: Targets,
    preset: CameraPreset,
    config: InversionConfig | None = None,
    lpips: LPIPS | None = None,
    camera_source: str = "",
    progress: bool = True,
) -> InversionResult:
    """Invert ``targets`` (on G's device) into ``G``; see the module docstring. ``preset``: the model's
    camera statistics (``model_camera``); ``lpips``: the LPIPS network (None only with lpips_weight 0)."""
    config = config or InversionConfig()
    device = next(G.parameters()).device
    targets = targets.to(device)
    branch = config.branch
    generator = torch.Generator().manual_seed(config.seed)
    work = copy.deepcopy(G).eval().requires_grad_(False)
    conditioning = conditioning_camera(preset, G.c_dim, device)
    stats = latent_statistics(work, conditioning, config.w_avg_samples)
    loss = ReconstructionLoss(targets.images, lpips, config.lpips_weight, config.l2_weight)
    estimate = targets.cameras is None if config.estimate_cameras is None else config.estimate_cameras

    w_avg = stats.broadcast()
    cameras: Tensor | nn.Module
    if estimate:
        yaw, pitch = search_cameras(
            work, w_avg, loss, preset, targets.count, branch, config.search_yaws, config.search_pitches
        )
        cameras = OrbitCameras(yaw, pitch, torch.tensor(preset.radius), preset).to(device)
    elif targets.cameras is None:
        raise ValueError("cameras: estimate_cameras=False needs targets with cameras")
    else:
        cameras = targets.cameras
    start_cameras = cameras().detach() if isinstance(cameras, nn.Module) else cameras
    scores, renders = {}, {}
    scores["w_avg"], renders["w_avg"] = _score(work, w_avg, start_cameras, targets.images, branch)

    fit = fit_latent(
        work,
        loss,
        cameras,
        stats,
        space=config.latent_space,
        steps=config.steps,
        schedule=config.schedule(),
        branch=branch,
        optimize_noise=config.optimize_noise,
        noise_weight=config.noise_weight,
        latent_weight=config.latent_weight,
        camera_lr=config.camera_lr,
        radius_lr=config.radius_lr,
        generator=generator,
        progress=progress,
    )
    scores["latent"], renders["latent"] = _score(work, fit.ws, fit.cameras, targets.images, branch)
    losses = {"latent": fit.losses}
    timings = {"latent": fit.seconds_per_step}
    final = work
    if config.method == "pti":
        regularizer = None
        if config.locality_weight > 0:
            regularizer = LocalityRegularizer(
                work,
                stats,
                preset,
                conditioning,
                lpips,
                radius=config.locality_radius,
                l2_weight=0.1 * config.locality_weight,
                lpips_weight=0.1 * config.locality_weight if lpips is not None else 0.0,
                branch=branch,
            )
        tuning = pivotal_tuning(
            work,
            fit.ws,
            fit.cameras,
            loss,
            steps=config.pti_steps,
            lr=config.pti_lr,
            regularizer=regularizer,
            regularize_every=config.locality_every,
            lpips_threshold=config.lpips_threshold,
            branch=branch,
            generator=generator,
            progress=progress,
        )
        final = tuning.generator
        losses["pti"] = tuning.losses
        timings["pti"] = tuning.seconds_per_step
    scores["final"], renders["final"] = _score(final, fit.ws, fit.cameras, targets.images, branch)
    return InversionResult(
        ws=fit.ws,
        cameras=fit.cameras,
        generator=final,
        config=config,
        psnr=scores,
        losses=losses,
        seconds_per_step=timings,
        camera_source=camera_source,
        estimated=cameras.angles() if isinstance(cameras, nn.Module) else None,
        names=list(targets.names),
        w_avg=w_avg,
        renders=renders,
    )
