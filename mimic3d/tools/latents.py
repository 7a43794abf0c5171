"""Latents for the tools: z from integer seeds (EG3D's way), ws, keyframe interpolation, style mixing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.interpolate
import torch
from torch import Tensor, nn

from mimic3d.camera import CameraPreset
from mimic3d.tools.viewpoints import conditioning_label


def seed_latents(seeds: Sequence[int], z_dim: int, device: torch.device | str = "cpu") -> Tensor:
    """z [N, z_dim] with row i = ``np.random.RandomState(seeds[i]).randn(z_dim)``, as EG3D's scripts draw
    it, so a seed gives the same sample here and in the official ``gen_samples.py``."""
    rows = [np.random.RandomState(seed).randn(z_dim) for seed in seeds]
    return torch.from_numpy(np.stack(rows)).float().to(device)


def seed_class_labels(seeds: Sequence[int], class_dim: int, device: torch.device | str = "cpu") -> Tensor:
    """One-hot labels [N, class_dim]: seed s picks ``np.random.RandomState(s).choice(class_dim)``, as
    EpiGRAF's scripts (``sample_c_from_seeds``) do for class-conditional models."""
    index = [int(np.random.RandomState(seed).choice(np.arange(class_dim))) for seed in seeds]
    return torch.eye(class_dim, device=device)[index]


def seed_ws(
    G: nn.Module,
    seeds: Sequence[int],
    preset: CameraPreset,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
) -> Tensor:
    """ws [N, num_ws, w_dim] of ``seeds``, mapped with the frontal conditioning camera of ``preset``
    (and, for class-conditional models, the class each seed draws: ``seed_class_labels``)."""
    device = next(G.parameters()).device
    z = seed_latents(seeds, G.z_dim, device)
    c = conditioning_label(preset, len(seeds), device)
    class_dim = getattr(getattr(G, "config", None), "class_dim", 0)
    labels = seed_class_labels(seeds, class_dim, device) if class_dim else None
    with torch.no_grad():
        options = dict(truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return G.mapping(z, c, **options, labels=labels) if labels is not None else G.mapping(z, c, **options)


def interpolate_keyframes(keyframes: Tensor, times: np.ndarray) -> Tensor:
    """Periodic cubic interpolation through keyframes [K, ...] at ``times`` (in keyframe units, K = one loop).

    Keyframe k sits at time k and the curve returns to keyframe 0 at time K, so a video looping over
    ``times = linspace(0, K, F, endpoint=False)`` has no jump (EG3D's gen_videos reaches the same
    effect by tiling the keyframes before a plain cubic fit). Returns [len(times), ...].
    """
    count = keyframes.shape[0]
    if count == 1:
        return keyframes.expand(len(times), *keyframes.shape[1:]).clone()
    values = keyframes.detach().cpu().double().numpy()
    looped = np.concatenate([values, values[:1]], axis=0)
    spline = scipy.interpolate.CubicSpline(np.arange(count + 1), looped, axis=0, bc_type="periodic")
    result = spline(np.mod(times, count))
    return torch.from_numpy(result).to(device=keyframes.device, dtype=keyframes.dtype)


def style_mix(ws_content: Tensor, ws_style: Tensor, layers: Sequence[int]) -> Tensor:
    """ws [N, num_ws, w_dim] of ``ws_content`` with the ws at ``layers`` taken from ``ws_style`` (StyleGAN's
    style mixing: later layers carry finer detail, and in EG3D also more of the appearance than the shape)."""
    if ws_content.shape != ws_style.shape:
        raise ValueError(f"ws_style: expected shape {list(ws_content.shape)}, got {list(ws_style.shape)}")
    mixed = ws_content.clone()
    mixed[:, list(layers)] = ws_style[:, list(layers)]
    return mixed
