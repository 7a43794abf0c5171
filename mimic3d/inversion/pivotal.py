"""Pivotal tuning (PTI, Roich et al. 2022): fine-tune the generator's weights around a fixed latent.

After the latent stage has found a pivot ws_p, every weight of a copy of the generator is trained
(Adam, lr 3e-4, PTI's defaults) so that ws_p reproduces the targets (LPIPS + L2, both weight 1), while
PTI's locality regulariser keeps the rest of the latent space where it was: each step it draws z,
maps it (truncation 0.5), moves from the pivot towards it by a fixed distance,
w_r = ws_p + alpha (w_z - ws_p) / |w_z - ws_p|, and penalises 0.1 L2 + 0.1 LPIPS between the tuned and
the original generator's renders of w_r (here from a camera drawn from the model's camera
statistics, since a 3D generator needs one).

Deviation: PTI's alpha is 30 in StyleGAN2-FFHQ's W; ours is ``locality_radius`` times the typical
distance of a mapped sample from w_avg over the whole ws tensor (w_std * sqrt(num_ws)), so the ball
has the same meaning in every model's own latent scale. PTI's early stop below an LPIPS threshold is
optional (``lpips_threshold``), since its 0.06 was set for the AlexNet LPIPS, not the VGG one used here.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm import tqdm

from mimic3d.camera import CameraPreset, sample_labels
from mimic3d.inversion.latents import LatentStatistics, map_latents
from mimic3d.inversion.objectives import ReconstructionLoss, lpips_input
from mimic3d.inversion.views import render_views
from mimic3d.losses.lpips import LPIPS

PTI_TRUNCATION = 0.5


class LocalityRegularizer:
    """PTI's latent-ball regulariser between a tuned generator and the frozen ``reference`` (see module)."""

    def __init__(
        self,
        reference: nn.Module,
        stats: LatentStatistics,
        preset: CameraPreset,
        conditioning: Tensor,
        lpips: LPIPS | None,
        radius: float = 0.5,
        l2_weight: float = 0.1,
        lpips_weight: float = 0.1,
        samples: int = 1,
        branch: str | None = None,
    ) -> None:
        if lpips_weight > 0 and lpips is None:
            raise ValueError("locality regulariser: an LPIPS network is needed for its LPIPS term")
        self.reference, self.stats, self.preset = reference, stats, preset
        self.conditioning, self.lpips, self.branch = conditioning, lpips, branch
        self.distance = radius * stats.w_std * stats.num_ws**0.5
        self.l2_weight, self.lpips_weight, self.samples = l2_weight, lpips_weight, samples

    def ball_latents(self, pivot: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """ws [S, num_ws, w_dim] at distance ``self.distance`` from the pivot [1, num_ws, w_dim]."""
        device = pivot.device
        z = torch.randn([self.samples, self.reference.z_dim], generator=generator).to(device)
        c = self.conditioning.expand(self.samples, -1)
        with torch.no_grad():
            w_z = map_latents(self.reference, z, c, generator, truncation_psi=PTI_TRUNCATION)
        direction = w_z - pivot
        norm = direction.flatten(1).norm(dim=1).clamp(min=1e-8).view(-1, 1, 1)
        return pivot + self.distance * direction / norm

    def __call__(self, G: nn.Module, pivot: Tensor, generator: torch.Generator | None = None) -> Tensor:
        ws = self.ball_latents(pivot, generator)
        cameras = sample_labels(self.preset, self.samples, generator).to(pivot.device)
        with torch.no_grad():
            old = render_views(self.reference, ws, cameras, self.branch)
            old_features = self.lpips.features(lpips_input(old)) if self.lpips_weight > 0 else None
        new = render_views(G, ws, cameras, self.branch)
        loss = self.l2_weight * (new - old).square().mean()
        if old_features is not None:
            loss = loss + self.lpips_weight * self.lpips.distance_to(lpips_input(new), old_features).mean()
        return loss


@dataclass
class TuningResult:
    """The tuned generator (eval mode, no gradients), the loss of every step and the time per step."""

    generator: nn.Module
    losses: list[float]
    seconds_per_step: float


def pivotal_tuning(
    G: nn.Module,
    ws: Tensor,
    cameras: Tensor,
    loss: ReconstructionLoss,
    steps: int = 350,
    lr: float = 3e-4,
    regularizer: LocalityRegularizer | None = None,
    regularize_every: int = 1,
    lpips_threshold: float | None = None,
    branch: str | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> TuningResult:
    """Tune a copy of ``G`` so that the pivot ws [1, num_ws, w_dim] renders the targets of ``loss`` from
    cameras [V, 25]; ``G`` itself is left unchanged."""
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"pti_steps: expected a non-negative int, got {steps!r}")
    if not (isinstance(regularize_every, int) and regularize_every >= 1):
        raise ValueError(f"locality_every: expected a positive int, got {regularize_every!r}")
    tuned = copy.deepcopy(G).requires_grad_(True)
    ws, cameras = ws.detach(), cameras.detach()
    optimizer = torch.optim.Adam(tuned.parameters(), lr=lr)
    losses: list[float] = []
    started = time.perf_counter()
    bar = tqdm(range(steps), desc="pivotal tuning", disable=not progress)
    for step in bar:
        terms = loss.terms(render_views(tuned, ws, cameras, branch))
        total = terms.total.mean()
        losses.append(float(total.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
        if lpips_threshold is not None and float(terms.lpips.mean()) <= lpips_threshold:
            break
        if regularizer is not None and step % regularize_every == 0:
            total = total + regularizer(tuned, ws, generator)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
    seconds = (time.perf_counter() - started) / max(len(losses), 1)
    return TuningResult(tuned.eval().requires_grad_(False), losses, seconds)
