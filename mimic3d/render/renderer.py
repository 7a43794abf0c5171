"""The two-pass volume renderer of EG3D and EpiGRAF, over any field, in bounded-memory ray chunks.

Per chunk of rays: stratified coarse depths -> field -> weights -> importance-sampled fine depths
(detached) -> field -> merge and sort all samples -> composite. ``RenderConfig.integration``
chooses the conventions:

- "eg3d": jitter by U[0, 1) spacings, EG3D's smoothed importance weights and its midpoint marcher
  (``marcher``); features mapped x * 2 - 1. With ``perturb=False`` the output equals NVlabs/eg3d's
  ``ImportanceRenderer`` with zero jitter and ``det=True`` importance sampling (to float rounding).
  One deliberate difference: the depth is clamped to the fixed [ray_start, ray_end] rather than to
  the min/max of the whole batch's samples, so that chunked and unchunked renders are identical.
- "epigraf": jitter within midpoint cells, unsmoothed importance weights and EpiGRAF's per-sample
  integration (``epigraf_march``): raw colours, unnormalised depth, optional density noise and a
  NeRF++ background field composited behind the foreground (``background_samples`` > 0). With
  ``perturb=False`` it equals universome/epigraf's ``SynthesisNetwork`` forward with jitter off and
  ``det=True`` importance sampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from mimic3d.render.epigraf_march import (
    LAST_DELTA_OPAQUE,
    LAST_DELTA_WITH_BACKGROUND,
    integration_weights,
    sphere_background_points,
)
from mimic3d.render.field import Field, TriplaneField, query_field
from mimic3d.render.marcher import composite, compositing_weights, finish_march, march_rays, sample_weights
from mimic3d.render.rays import PIXEL_GRIDS
from mimic3d.render.samplers import (
    check_ray_range,
    importance_sample,
    importance_sample_cells,
    jitter_within_cells,
    stratified_depths,
)
from mimic3d.render.triplane import plane_axes

INTEGRATIONS = ("eg3d", "epigraf")


@dataclass(frozen=True)
class RenderConfig:
    """Volume-rendering settings (EG3D's ``rendering_kwargs`` names in comments)."""

    ray_start: float = 2.25  # ray_start
    ray_end: float = 3.3  # ray_end
    num_coarse: int = 48  # depth_resolution
    num_importance: int = 48  # depth_resolution_importance (0: coarse pass only)
    box_warp: float = 1.0  # box_warp: side of the cube mapped onto the planes
    white_background: bool = False  # white_back
    convention: str = "eg3d"  # plane projection: "eg3d" (x,y),(x,z),(z,x) or "xyz" (x,y),(y,z),(z,x)
    perturb: bool = True  # stratified jitter and random importance draws; False: deterministic
    # Rays per chunk, summed over the batch: bounds memory at any resolution. None: 1024 on CPU (a
    # chunk's activations then stay in cache, ~10% faster than 2048), 65536 on GPUs (fewer launches).
    chunk_rays: int | None = None
    # Sampling and compositing conventions: "eg3d" or "epigraf" (see the module docstring).
    integration: str = "eg3d"
    align_corners: bool = False  # tri-plane grid_sample alignment (EpiGRAF: True)
    # Where an R-pixel image's rays go: "centres" u = (j + 0.5) / R (EG3D), "corners" u = j / (R - 1)
    # (EpiGRAF's linspace(-1, 1, R) grid: the outer pixel centres lie on the field of view's edges).
    pixel_grid: str = "centres"
    # Added to the raw density before the softplus; None: the integration's own (EG3D -1, EpiGRAF 0).
    density_shift: float | None = None
    # EpiGRAF's background: samples per ray at inverse distances background_start -> 0 (0: none).
    background_samples: int = 0
    background_start: float = 1.0

    def __post_init__(self) -> None:
        check_ray_range(self.ray_start, self.ray_end)
        if not (isinstance(self.num_coarse, int) and self.num_coarse >= 4):
            raise ValueError(f"num_coarse: expected an int >= 4, got {self.num_coarse!r}")
        if not (isinstance(self.num_importance, int) and self.num_importance >= 0):
            raise ValueError(f"num_importance: expected an int >= 0, got {self.num_importance!r}")
        if not (math.isfinite(self.box_warp) and self.box_warp > 0):
            raise ValueError(f"box_warp: expected a positive number, got {self.box_warp}")
        plane_axes(self.convention)
        if self.chunk_rays is not None and not (
            isinstance(self.chunk_rays, int)
            and not isinstance(self.chunk_rays, bool)
            and self.chunk_rays >= 1
        ):
            raise ValueError(
                f"chunk_rays: expected a positive int or None (automatic), got {self.chunk_rays!r}"
            )
        if self.integration not in INTEGRATIONS:
            raise ValueError(f"integration: expected one of {INTEGRATIONS}, got {self.integration!r}")
        if self.pixel_grid not in PIXEL_GRIDS:
            raise ValueError(f"pixel_grid: expected one of {PIXEL_GRIDS}, got {self.pixel_grid!r}")
        if self.density_shift is not None and not math.isfinite(self.density_shift):
            raise ValueError(f"density_shift: expected a finite number or None, got {self.density_shift}")
        if not (isinstance(self.background_samples, int) and self.background_samples >= 0):
            raise ValueError(f"background_samples: expected an int >= 0, got {self.background_samples!r}")
        if self.background_samples and self.integration != "epigraf":
            raise ValueError("background_samples: a background model needs integration='epigraf'")
        if not 0 < self.background_start <= 1:
            raise ValueError(
                f"background_start: expected an inverse distance in (0, 1], got {self.background_start}"
            )
        if self.integration == "epigraf" and self.num_importance and self.num_coarse < 3:
            raise ValueError("num_coarse: EpiGRAF's importance pass needs at least 3 coarse samples")

    @property
    def shift(self) -> float:
        """The density shift in use (``density_shift`` or the integration's default)."""
        if self.density_shift is not None:
            return self.density_shift
        return -1.0 if self.integration == "eg3d" else 0.0

    def rays_per_chunk(self, device: torch.device) -> int:
        """``chunk_rays``, or its automatic value for ``device`` when it is None."""
        if self.chunk_rays is not None:
            return self.chunk_rays
        return 1024 if device.type == "cpu" else 65536

    @classmethod
    def from_eg3d_kwargs(cls, rendering_kwargs: dict[str, Any], **overrides: Any) -> RenderConfig:
        """Config from an official EG3D/Mimic3D ``rendering_kwargs`` dict (plus field overrides)."""
        if rendering_kwargs.get("ray_start") == "auto" or rendering_kwargs.get("ray_end") == "auto":
            raise ValueError("rendering_kwargs: ray_start/ray_end 'auto' (box intersection) is not supported")
        if rendering_kwargs.get("clamp_mode", "softplus") != "softplus":
            raise ValueError(
                f"rendering_kwargs: clamp_mode must be 'softplus', got {rendering_kwargs['clamp_mode']!r}"
            )
        if rendering_kwargs.get("disparity_space_sampling", False):
            raise ValueError("rendering_kwargs: disparity_space_sampling is not supported")
        keys = {
            "ray_start": "ray_start",
            "ray_end": "ray_end",
            "depth_resolution": "num_coarse",
            "depth_resolution_importance": "num_importance",
            "box_warp": "box_warp",
            "white_back": "white_background",
        }
        values = {
            ours: rendering_kwargs[theirs] for theirs, ours in keys.items() if theirs in rendering_kwargs
        }
        for name in ("ray_start", "ray_end", "box_warp"):
            if name in values:
                values[name] = float(values[name])
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"overrides: unknown RenderConfig fields {sorted(unknown)}")
        return cls(**{**values, **overrides})


RENDER_PRESETS: dict[str, RenderConfig] = {
    "ffhq": RenderConfig(ray_start=2.25, ray_end=3.3, num_coarse=48, num_importance=48, box_warp=1.0),
    "afhq": RenderConfig(ray_start=2.25, ray_end=3.3, num_coarse=48, num_importance=48, box_warp=1.0),
    "shapenet": RenderConfig(
        ray_start=0.1, ray_end=2.6, num_coarse=64, num_importance=64, box_warp=1.6, white_background=True
    ),
}


class RenderResult(NamedTuple):
    features: Tensor  # [N, M, C] composited features mapped to x * 2 - 1 (first 3 = RGB in [-1, 1])
    depth: Tensor  # [N, M, 1] expected depth along the ray
    alpha: Tensor  # [N, M, 1] accumulated opacity (sum of compositing weights)


def _check_rays(origins: Tensor, directions: Tensor) -> None:
    if origins.ndim != 3 or origins.shape[-1] != 3:
        raise ValueError(f"origins: expected shape [N, M, 3], got {list(origins.shape)}")
    if directions.shape != origins.shape:
        raise ValueError(f"directions: expected shape {list(origins.shape)}, got {list(directions.shape)}")


def _ray_points(origins: Tensor, directions: Tensor, depths: Tensor) -> Tensor:
    """origins, directions [N, M, 3], depths [N, M, S, 1] -> points [N, M * S, 3]."""
    return (origins.unsqueeze(-2) + depths * directions.unsqueeze(-2)).reshape(origins.shape[0], -1, 3)


class TriplaneRenderer:
    """Renders tri-planes (or any field) along rays; see ``RenderConfig`` for the settings."""

    def __init__(self, config: RenderConfig | None = None) -> None:
        self.config = config if config is not None else RenderConfig()

    def with_options(self, **changes: Any) -> TriplaneRenderer:
        """A renderer with some config fields changed, e.g. ``perturb=False``."""
        return TriplaneRenderer(replace(self.config, **changes))

    def field(
        self, planes: Tensor | Sequence[Tensor], decoder: nn.Module, colour_channels: int | None = None
    ) -> TriplaneField:
        """The field that ``__call__`` renders: planes (summed if a list) decoded by ``decoder``."""
        cfg = self.config
        return TriplaneField(
            planes,
            decoder,
            cfg.box_warp,
            cfg.convention,
            colour_channels=colour_channels,
            align_corners=cfg.align_corners,
        )

    def __call__(
        self,
        planes: Tensor | Sequence[Tensor],
        decoder: nn.Module,
        origins: Tensor,
        directions: Tensor,
        generator: torch.Generator | None = None,
        colour_channels: int | None = None,
        density_noise: float = 0.0,
        background: Field | None = None,
    ) -> RenderResult:
        """Render planes [N, 3, C, S, S] (or a list, summed) along rays [N, M, 3] -> ``RenderResult``.

        ``colour_channels`` (e.g. 3 when only RGB is wanted) composites just the first channels of the
        decoder's output; the default is all of them. ``density_noise`` and ``background``: see
        ``render_field``.
        """
        _check_rays(origins, directions)
        field = self.field(planes, decoder, colour_channels)
        return self.render_field(field, origins, directions, generator, density_noise, background)

    def render_field(
        self,
        field: Field,
        origins: Tensor,
        directions: Tensor,
        generator: torch.Generator | None = None,
        density_noise: float = 0.0,
        background: Field | None = None,
    ) -> RenderResult:
        """Render any field along rays [N, M, 3].

        ``field`` maps points [N, P, 3] to (colour [N, P, C], raw sigma [N, P, 1]); see ``Field``.
        "epigraf" integration only: ``density_noise`` is the std of the Gaussian noise added to raw
        densities (EpiGRAF's training-time regulariser), and ``background`` maps NeRF++ points
        [N, P, 4] (direction, inverse distance) to (colour, raw sigma); it is required exactly when
        ``background_samples`` > 0.
        """
        _check_rays(origins, directions)
        cfg = self.config
        if cfg.integration == "eg3d" and (density_noise or background is not None):
            raise ValueError("density_noise, background: only the 'epigraf' integration supports them")
        if (background is not None) != (cfg.background_samples > 0):
            raise ValueError(
                f"background: expected a background field exactly when background_samples > 0 "
                f"(background_samples = {cfg.background_samples})"
            )
        rays_per_chunk = max(1, cfg.rays_per_chunk(origins.device) // max(1, origins.shape[0]))
        parts = [
            self._render_chunk(field, o, d, generator)
            if cfg.integration == "eg3d"
            else self._render_chunk_epigraf(field, o, d, generator, density_noise, background)
            for o, d in zip(origins.split(rays_per_chunk, 1), directions.split(rays_per_chunk, 1))
        ]
        if len(parts) == 1:
            return parts[0]
        return RenderResult(*(torch.cat(outputs, 1) for outputs in zip(*parts)))

    def _coarse_depths(self, origins: Tensor, generator: torch.Generator | None) -> Tensor:
        cfg = self.config
        n, m, _ = origins.shape
        cells = cfg.integration == "epigraf"
        depths = stratified_depths(
            n,
            m,
            cfg.ray_start,
            cfg.ray_end,
            cfg.num_coarse,
            perturb=cfg.perturb and not cells,
            generator=generator,
            device=origins.device,
        ).to(origins.dtype)
        return jitter_within_cells(depths, generator) if cfg.perturb and cells else depths

    def _render_chunk(
        self, field: Field, origins: Tensor, directions: Tensor, generator: torch.Generator | None
    ) -> RenderResult:
        cfg = self.config
        n, m, _ = origins.shape
        depths = self._coarse_depths(origins, generator)
        colors, densities = field(_ray_points(origins, directions, depths))
        colors = colors.view(n, m, cfg.num_coarse, -1)
        densities = densities.view(n, m, cfg.num_coarse, 1)
        if cfg.num_importance == 0:
            result = march_rays(
                colors,
                densities,
                depths,
                white_background=cfg.white_background,
                depth_range=(cfg.ray_start, cfg.ray_end),
                density_shift=cfg.shift,
            )
            return RenderResult(result.features, result.depth, result.weights.sum(2))
        with torch.no_grad():
            coarse_weights = compositing_weights(densities.detach(), depths, cfg.shift)
        fine_depths = importance_sample(
            depths, coarse_weights, cfg.num_importance, perturb=cfg.perturb, generator=generator
        ).to(origins.dtype)
        fine_colors, fine_densities = self._fine_samples(field, origins, directions, fine_depths)
        # March over all samples in depth order, but composite the colours where they are: the
        # per-sample weights are scattered back to (coarse, fine) order instead of sorting the much
        # larger colour tensors.
        depths, order = torch.sort(torch.cat([depths, fine_depths], -2), dim=-2, stable=True)
        densities = torch.gather(torch.cat([densities, fine_densities], -2), -2, order)
        weights = compositing_weights(densities, depths, cfg.shift)
        per_sample = sample_weights(weights)
        features = self._composite_unsorted(colors, fine_colors, per_sample, order)
        weight_total = weights.sum(2)
        features, depth = finish_march(
            features,
            composite(depths, per_sample),
            weight_total,
            (cfg.ray_start, cfg.ray_end),
            cfg.white_background,
        )
        return RenderResult(features, depth, weight_total)

    def _render_chunk_epigraf(
        self,
        field: Field,
        origins: Tensor,
        directions: Tensor,
        generator: torch.Generator | None,
        density_noise: float,
        background: Field | None,
    ) -> RenderResult:
        cfg = self.config
        n, m, _ = origins.shape
        last_delta = LAST_DELTA_WITH_BACKGROUND if background is not None else LAST_DELTA_OPAQUE
        depths = self._coarse_depths(origins, generator)
        colors, densities = field(_ray_points(origins, directions, depths))
        colors = colors.view(n, m, cfg.num_coarse, -1)
        densities = densities.view(n, m, cfg.num_coarse, 1)
        if cfg.num_importance == 0:
            weights, transmittance = integration_weights(
                densities, depths, last_delta, density_noise, cfg.shift, generator
            )
            features = composite(colors, weights)
        else:
            with torch.no_grad():
                coarse_weights, _ = integration_weights(
                    densities.detach(), depths, last_delta, density_noise, cfg.shift, generator
                )
            fine_depths = importance_sample_cells(
                depths, coarse_weights, cfg.num_importance, perturb=cfg.perturb, generator=generator
            ).to(origins.dtype)
            fine_colors, fine_densities = self._fine_samples(field, origins, directions, fine_depths)
            depths, order = torch.sort(torch.cat([depths, fine_depths], -2), dim=-2, stable=True)
            densities = torch.gather(torch.cat([densities, fine_densities], -2), -2, order)
            weights, transmittance = integration_weights(
                densities, depths, last_delta, density_noise, cfg.shift, generator
            )
            features = self._composite_unsorted(colors, fine_colors, weights, order)
        weight_total = weights.sum(2)
        if cfg.white_background:
            features = features + 1 - weight_total
        if background is not None:
            features = features + self._background(background, origins, directions, generator) * transmittance
        return RenderResult(features, composite(depths, weights), weight_total)

    def _background(
        self, background: Field, origins: Tensor, directions: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """EpiGRAF's sphere background behind the foreground: composited colour [N, M, C]."""
        cfg = self.config
        n, m, _ = origins.shape
        k = cfg.background_samples
        inverse = torch.linspace(cfg.background_start, 0.0, k, device=origins.device, dtype=origins.dtype)
        inverse = inverse.view(1, 1, k, 1).expand(n, m, k, 1)
        if cfg.perturb:
            inverse = jitter_within_cells(inverse, generator)
        points = sphere_background_points(origins, directions, inverse[..., 0])
        colors, densities = background(points.reshape(n, m * k, 4))
        # The inverse distances fall from 1 to 0; negated they increase like depths.
        weights, _ = integration_weights(densities.view(n, m, k, 1), -inverse)
        features = composite(colors.view(n, m, k, -1), weights)
        if cfg.white_background:
            features = features + 1 - weights.sum(2)
        return features

    def _fine_samples(
        self, field: Field, origins: Tensor, directions: Tensor, fine_depths: Tensor
    ) -> tuple[Tensor, Tensor]:
        n, m, _ = origins.shape
        fine_colors, fine_densities = field(_ray_points(origins, directions, fine_depths))
        k = self.config.num_importance
        return fine_colors.view(n, m, k, -1), fine_densities.view(n, m, k, 1)

    def _composite_unsorted(
        self, colors: Tensor, fine_colors: Tensor, weights: Tensor, order: Tensor
    ) -> Tensor:
        """Composite (coarse, fine) colours with per-sample weights given in sorted order."""
        unsorted = torch.zeros_like(weights).scatter(-2, order, weights)
        s = self.config.num_coarse
        return composite(colors, unsorted[:, :, :s]) + composite(fine_colors, unsorted[:, :, s:])

    def sample(
        self,
        planes: Tensor | Sequence[Tensor],
        decoder: nn.Module,
        points: Tensor,
        chunk_points: int = 1 << 16,
    ) -> tuple[Tensor, Tensor]:
        """Colour [N, P, C] and raw sigma [N, P, 1] at arbitrary points [N, P, 3] (EG3D's ``G.sample``)."""
        colour, sigma = query_field(self.field(planes, decoder), points, chunk_points)
        return colour, sigma

    def sample_density(
        self,
        planes: Tensor | Sequence[Tensor],
        decoder: nn.Module,
        points: Tensor,
        chunk_points: int = 1 << 16,
    ) -> Tensor:
        """Raw sigma [N, P, 1] at points [N, P, 3] (density regulariser, mesh extraction)."""
        (sigma,) = query_field(self.field(planes, decoder), points, chunk_points, density_only=True)
        return sigma
