"""Latent optimisation: fit one w (repeated over the layers) or per-layer w+ codes to target views.

StyleGAN2's projector (Karras et al. 2020, ``projector.py`` of stylegan2-ada-pytorch), extended to
several views and, optionally, cameras optimised jointly:

- start at w_avg, the mean of ``samples`` mapped latents (z drawn with ``RandomState(123)`` as the
  projector does; the mapping is conditioned on the model's frontal camera); w_std is their RMS
  distance to w_avg;
- Adam (betas 0.9, 0.999) whose learning rate ramps up over the first ``lr_rampup`` of the steps
  and down with a half cosine over the last ``lr_rampdown``;
- Gaussian noise added to the latent, w_std * ``noise_factor`` * max(0, 1 - t / ``noise_ramp``)^2 at
  progress t, so early steps explore;
- the generator's per-pixel noise maps (buffers named ``*noise_const``) optimised alongside with the
  projector's regulariser (weight 1e5) and renormalised after every step.

Deviation: the noise maps start from the model's stored constants instead of fresh random draws, so
an inversion with 0 steps renders exactly what the model renders for w_avg; they are kept in the
output generator, so what was fitted is what the tools render.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from mimic3d.inversion.objectives import (
    ReconstructionLoss,
    latent_distance,
    noise_regularization,
    normalize_noise_,
)
from mimic3d.inversion.views import render_views

SPACES = ("w", "w+")
W_AVG_SEED = 123  # the projector's RandomState seed for the w_avg samples


@dataclass
class LatentStatistics:
    """w_avg [1, 1, w_dim], w_std (RMS distance of mapped samples to w_avg) and the number of ws."""

    w_avg: Tensor
    w_std: float
    num_ws: int

    def broadcast(self) -> Tensor:
        """w_avg repeated over the layers: ws [1, num_ws, w_dim]."""
        return self.w_avg.repeat(1, self.num_ws, 1)


def map_latents(
    G: nn.Module, z: Tensor, c: Tensor, generator: torch.Generator | None = None, **options: float
) -> Tensor:
    """``G.mapping(z, c, **options)``; class-conditional models (``config.class_dim`` > 0, EpiGRAF's
    Megascans) get one-hot labels of classes drawn uniformly with ``generator``."""
    class_dim = getattr(getattr(G, "config", None), "class_dim", 0)
    if not class_dim:
        return G.mapping(z, c, **options)
    index = torch.randint(class_dim, (z.shape[0],), generator=generator)
    return G.mapping(z, c, **options, labels=torch.eye(class_dim, device=z.device)[index.to(z.device)])


@torch.no_grad()
def latent_statistics(
    G: nn.Module, conditioning: Tensor, samples: int = 10000, batch: int = 2000
) -> LatentStatistics:
    """w_avg and w_std of ``samples`` latents mapped with the conditioning camera [1, 25] (over
    uniformly drawn classes for class-conditional models)."""
    if samples < 2:
        raise ValueError(f"w_avg_samples: expected at least 2 samples, got {samples}")
    z_all = torch.from_numpy(np.random.RandomState(W_AVG_SEED).randn(samples, G.z_dim)).float()
    device = conditioning.device
    classes = torch.Generator().manual_seed(W_AVG_SEED)
    ws_first, num_ws = [], 0
    for start in range(0, samples, batch):
        z = z_all[start : start + batch].to(device)
        ws = map_latents(G, z, conditioning.expand(z.shape[0], -1), classes)
        num_ws = ws.shape[1]
        ws_first.append(ws[:, :1].float())
    w = torch.cat(ws_first)
    w_avg = w.mean(dim=0, keepdim=True)
    w_std = float((w - w_avg).square().sum() / samples) ** 0.5
    return LatentStatistics(w_avg, w_std, num_ws)


@dataclass
class ProjectorSchedule:
    """The projector's learning-rate and latent-noise ramps (its defaults, as fractions of the steps)."""

    lr: float = 0.1
    lr_rampdown: float = 0.25
    lr_rampup: float = 0.05
    noise_factor: float = 0.05
    noise_ramp: float = 0.75

    def learning_rate(self, t: float) -> float:
        """Learning rate at progress t in [0, 1)."""
        ramp = min(1.0, (1.0 - t) / self.lr_rampdown) if self.lr_rampdown > 0 else 1.0
        ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
        if self.lr_rampup > 0:
            ramp *= min(1.0, t / self.lr_rampup)
        return self.lr * ramp

    def latent_noise(self, t: float, w_std: float) -> float:
        """Standard deviation of the noise added to the latent at progress t."""
        if self.noise_ramp <= 0:
            return 0.0
        return w_std * self.noise_factor * max(0.0, 1.0 - t / self.noise_ramp) ** 2


def noise_buffers(G: nn.Module) -> list[Tensor]:
    """The generator's per-pixel noise constants (StyleGAN's ``noise_const`` buffers)."""
    return [buffer for name, buffer in G.named_buffers() if name.split(".")[-1] == "noise_const"]


@dataclass
class LatentFit:
    """Result of ``fit_latent``: ws [1, num_ws, w_dim], the cameras [V, 25] it was fitted from, the loss
    of every step and the mean wall time of one step."""

    ws: Tensor
    cameras: Tensor
    losses: list[float]
    seconds_per_step: float


def fit_latent(
    G: nn.Module,
    loss: ReconstructionLoss,
    cameras: Tensor | nn.Module,
    stats: LatentStatistics,
    space: str = "w+",
    steps: int = 500,
    schedule: ProjectorSchedule | None = None,
    branch: str | None = None,
    optimize_noise: bool = True,
    noise_weight: float = 1e5,
    latent_weight: float = 0.0,
    camera_lr: float = 0.01,
    radius_lr: float = 0.002,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> LatentFit:
    """Fit a latent in ``space`` ("w": one code for every layer; "w+": one per layer), starting at
    w_avg, to the targets of ``loss`` rendered by ``G`` from ``cameras``: labels [V, 25], or a module
    whose call returns them (``OrbitCameras``: optimised jointly, the angles at ``camera_lr`` and the
    log radius at ``radius_lr`` times the latent's learning-rate ramp; 0 keeps them fixed). With
    ``optimize_noise`` G's noise buffers are fitted too, in place (pass a copy of the model).
    """
    if space not in SPACES:
        raise ValueError(f"space: expected one of {SPACES}, got {space!r}")
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps: expected a non-negative int, got {steps!r}")
    schedule = schedule or ProjectorSchedule()
    w_opt = (stats.w_avg if space == "w" else stats.broadcast()).clone().requires_grad_(True)
    groups = [{"params": [w_opt], "scale": 1.0}]
    noise_maps = noise_buffers(G) if optimize_noise else []
    if noise_maps:
        for buffer in noise_maps:
            buffer.requires_grad_(True)
        groups.append({"params": noise_maps, "scale": 1.0})
    if isinstance(cameras, nn.Module):
        # OrbitCameras: angles at camera_lr, the log radius at radius_lr; other modules: all at camera_lr.
        named = dict(cameras.named_parameters())
        radius = [named.pop("log_radius")] if "log_radius" in named else []
        for params, rate in ((list(named.values()), camera_lr), (radius, radius_lr)):
            if params and rate > 0:
                groups.append({"params": params, "scale": rate / schedule.lr})
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.999), lr=schedule.lr)

    def current_ws(noise_scale: float = 0.0) -> Tensor:
        w = w_opt
        if noise_scale > 0:
            w = w + torch.randn(w.shape, generator=generator, device=w.device) * noise_scale
        return w.expand(-1, stats.num_ws, -1) if space == "w" else w

    losses: list[float] = []
    started = time.perf_counter()
    bar = tqdm(range(steps), desc=f"invert {space}", disable=not progress)
    try:
        for step in bar:
            t = step / steps
            lr = schedule.learning_rate(t)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["scale"]
            labels = cameras() if isinstance(cameras, nn.Module) else cameras
            images = render_views(G, current_ws(schedule.latent_noise(t, stats.w_std)), labels, branch)
            total = loss(images)
            reconstruction = float(total.detach())
            if noise_maps and noise_weight > 0:
                total = total + noise_weight * noise_regularization(noise_maps)
            if latent_weight > 0:
                total = total + latent_weight * latent_distance(current_ws(), stats.w_avg, stats.w_std)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            if noise_maps:
                normalize_noise_(noise_maps)
            losses.append(reconstruction)
            bar.set_postfix(loss=f"{reconstruction:.4f}", refresh=False)
    finally:
        for buffer in noise_maps:
            buffer.requires_grad_(False)
    seconds = (time.perf_counter() - started) / max(steps, 1)
    with torch.no_grad():
        final_cameras = (cameras() if isinstance(cameras, nn.Module) else cameras).detach().clone()
        ws = current_ws().detach().clone()
    return LatentFit(ws, final_cameras, losses, seconds)
