"""The tri-plane generator: EG3D, Mimic3D stage 1 (3D-aware stream) and stage 2 (+ 3D super-resolution),
and EpiGRAF.

z, camera -> mapping -> ws -> StyleGAN2 backbone -> tri-plane(s) -> volume render -> image.

- EG3D: the backbone's 96-channel 256^2 output is the tri-plane; the "2d" branch renders it at the
  neural rendering resolution (64 or 128) and EG3D's 2D super-resolution makes the final image.
- Mimic3D stage 1: a 3D-aware stream beside the backbone produces the coarse tri-plane P^c.
- Mimic3D stage 2: S^3D adds a residual tri-plane P^r at 512^2; the "3d" branch renders the summed
  field of P^c and P^r directly at full resolution, with no 2D super-resolution. The "2d" branch
  never computes P^r (the official code does, and throws it away).
- EpiGRAF (``decoder="epigraf"``): the backbone's 96-channel 512^2 output is the tri-plane, rendered
  at full resolution with EpiGRAF's integration and no super-resolution (both branches give the same
  image); optional sphere background (Megascans) with its own ws after the backbone's.

Module names follow the official G_ema (``backbone.mapping``, ``backbone.synthesis`` with
``b3d*`` 3D blocks, ``superresolution``, ``decoder``), so official EG3D/Mimic3D state dicts load
unchanged; EpiGRAF's are renamed on import (``mimic3d.checkpoints.epigraf``).

API used by the trainers and tools (all methods; c is always the 25-float camera label):

- ``G(z, c, labels=None)`` -> {"image" [N, 3, H, W] in [-1, 1], "image_raw", "image_depth", ...};
  ``labels`` [N, class_dim] one-hot classes for class-conditional models, else None.
- ``G.mapping(z, c, truncation_psi, truncation_cutoff, update_emas, labels)`` -> ws [N, num_ws, w_dim].
- ``G.synthesis(ws, c, branch, noise_mode, perturb, neural_rendering_resolution, planes, ...)``.
- ``G.planes(ws)`` -> ``Triplanes`` (reuse for many views); ``G.render(planes, c, resolution)``.
- ``G.render_scaled_patch(ws, c, scale [N] or [N, 2], offset [N, 2], resolution)``: EpiGRAF's patch
  at any scale/offset (see ``mimic3d.render.rays.scaled_patch_uv``: offset = patch's top-left corner
  in image fractions, y down; EpiGRAF's own y offset converts as 1 - scale - y). Real images are
  cropped at the same points by ``grid_sample`` with align_corners = (pixel grid == "corners").
- ``G.render_patch(ws, c, top, left, size)``: Mimic3D's fixed-scale window of the full image grid.
- ``G.density_noise_std``: std of the noise added to raw densities while ``G.training`` (EpiGRAF's
  regulariser, annealed 1 -> 0 over ``nerf_noise_kimg_growth`` kimg by the trainer); "epigraf"
  integration only, ignored in eval mode.
- ``G.sample_density(points, ws)`` -> raw sigma [N, P, 1] (density regulariser, meshes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from mimic3d.camera import split_label
from mimic3d.models.aware3d import add_aware3d_blocks, synthesize_coarse_planes, synthesize_residual_planes
from mimic3d.models.background import SphereBackground, background_field
from mimic3d.models.config import GeneratorConfig
from mimic3d.models.inputs import checked_camera, checked_input, map_latents
from mimic3d.models.superresolution import SuperResolution
from mimic3d.models.triplanes import Triplanes
from mimic3d.nn.backbone import StyleGAN2Backbone
from mimic3d.nn.modulated import NOISE_MODES
from mimic3d.render import (
    TriplaneDecoder,
    TriplaneRenderer,
    generate_patch_rays,
    generate_rays,
    generate_scaled_patch_rays,
)
from mimic3d.render.field import Field
from mimic3d.render.renderer import RenderResult
from mimic3d.runtime import full_precision

BRANCHES = ("2d", "3d")


class TriplaneGenerator(nn.Module):
    """Tri-plane generator configured by a ``GeneratorConfig`` (see ``generator_preset``)."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        if not isinstance(config, GeneratorConfig):
            raise ValueError(f"config: expected a GeneratorConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        self.z_dim, self.c_dim, self.w_dim = config.z_dim, config.c_dim, config.w_dim
        self.img_resolution = config.img_resolution
        self.backbone = StyleGAN2Backbone(
            config.z_dim,
            config.mapping_c_dim,
            config.w_dim,
            img_resolution=config.triplane_resolution,
            img_channels=config.triplane_channels,
            mapping_kwargs=dict(num_layers=config.mapping_layers, lr_multiplier=config.mapping_lr_multiplier),
            channel_base=config.channel_base,
            channel_max=config.channel_max,
            num_fp16_res=0,
            conv_clamp=config.conv_clamp,
            fused_modconv_default="inference_only",
        )
        if config.aware3d:
            add_aware3d_blocks(
                self.backbone.synthesis,
                config.aware3d_min_resolution,
                config.sr3d,
                conv_clamp=config.conv_clamp,
            )
        self.num_ws = self.backbone.num_ws
        self.background = None
        if config.background is not None:
            self.background = SphereBackground(config.background, config.w_dim)
            # The mapping network broadcasts the background's ws after the backbone's.
            self.num_ws += self.background.num_ws
            self.backbone.mapping.num_ws = self.num_ws
        self._density_noise_std = 0.0
        self.superresolution = None
        if config.superresolution != "none":
            self.superresolution = SuperResolution(
                config.superresolution,
                config.decoder_output_dim,
                config.img_resolution,
                config.sr_channels,
                w_dim=config.w_dim,
                antialias=config.sr_antialias,
                conv_clamp=config.sr_conv_clamp,
                use_fp16=config.sr_num_fp16_res > 0,
                noise_mode=config.sr_noise_mode,
            )
        self.decoder = TriplaneDecoder(
            config.plane_channels,
            64,
            config.decoder_output_dim,
            lr_multiplier=config.decoder_lr_multiplier,
            kind=config.decoder,
        )
        self.renderer = TriplaneRenderer(config.rendering)
        # Per-entry std of the training set's camera labels; EG3D's training loop stores it on G.
        self.register_buffer("dataset_label_std", torch.zeros([config.c_dim]))
        self._register_load_state_dict_pre_hook(_accept_mimic3d_const)

    # ------------------------------------------------------------------ latent and planes

    @property
    def density_noise_std(self) -> float:
        """Std of the noise added to raw densities in training mode (EpiGRAF integration only)."""
        return self._density_noise_std

    @density_noise_std.setter
    def density_noise_std(self, value: float) -> None:
        value = float(value)
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"density_noise_std: expected a finite number >= 0, got {value}")
        if value and self.config.rendering.integration != "epigraf":
            raise ValueError("density_noise_std: density noise needs rendering.integration='epigraf'")
        self._density_noise_std = value

    def mapping(
        self,
        z: Tensor,
        c: Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        labels: Tensor | None = None,
    ) -> Tensor:
        """z [N, z_dim], conditioning camera c [N, 25] -> ws [N, num_ws, w_dim].

        Generator pose conditioning: c is multiplied by ``c_scale``, or zeroed when the model was
        trained without it (``c_gen_conditioning_zero``); models with ``pose_conditioning=False``
        (EpiGRAF) ignore it. Class-conditional models (``class_dim`` > 0) need one-hot ``labels``
        [N, class_dim], which follow the camera in the conditioning input. Always in full precision:
        the mapping is cheap and every later layer reads its output, so it runs with autocast off.
        """
        return map_latents(
            self.backbone.mapping,
            self.config,
            z,
            c,
            truncation_psi,
            truncation_cutoff,
            update_emas,
            labels,
            self.decoder.net[0].weight,
        )

    def planes(
        self,
        ws: Tensor,
        noise_mode: str = "const",
        residual: bool | None = None,
        fused_modconv: bool | None = None,
    ) -> Triplanes:
        """ws [N, num_ws, w_dim] -> ``Triplanes``; ``residual`` (default: when the model has S^3D)
        also runs the 3D super-resolution."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode: expected one of {NOISE_MODES}, got {noise_mode!r}")
        if residual is None:
            residual = self.config.sr3d
        if residual and not self.config.sr3d:
            raise ValueError("residual: this model has no 3D super-resolution (config.sr3d is False)")
        fused = self._fused(fused_modconv)
        synthesis = self.backbone.synthesis
        background_ws = None
        if self.background is not None:
            ws, background_ws = ws[:, : synthesis.num_ws], ws[:, synthesis.num_ws :]
        if self.config.aware3d:
            coarse = synthesize_coarse_planes(synthesis, ws, noise_mode=noise_mode, fused_modconv=fused)
        else:
            image = synthesis(ws, noise_mode=noise_mode, fused_modconv=fused)
            coarse = image.view(image.shape[0], 3, -1, *image.shape[-2:])
        planes = Triplanes(coarse, background_ws=background_ws)
        if residual:
            planes.residual = synthesize_residual_planes(synthesis, coarse, ws, noise_mode=noise_mode)
        return planes

    # ------------------------------------------------------------------ rendering

    def synthesis(
        self,
        ws: Tensor,
        c: Tensor,
        branch: str = "2d",
        noise_mode: str = "const",
        perturb: bool | None = None,
        neural_rendering_resolution: int | None = None,
        planes: Triplanes | None = None,
        fused_modconv: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """ws [N, num_ws, w_dim] and rendering camera c [N, 25] -> images (see ``forward``).

        ``planes`` from ``self.planes(ws)`` skips the backbone (multi-view rendering of one ws).
        """
        if branch not in BRANCHES:
            raise ValueError(f"branch: expected one of {BRANCHES}, got {branch!r}")
        ws = self._input(ws, "ws", [self.num_ws, self.w_dim], "styles")
        c = self._camera(c, ws.shape[0])
        if branch == "3d":
            resolution = (
                self.img_resolution if neural_rendering_resolution is None else neural_rendering_resolution
            )
            if planes is None:
                planes = self.planes(ws, noise_mode=noise_mode, fused_modconv=fused_modconv)
            rgb, depth = self.render(planes, c, resolution, perturb=perturb, generator=generator, channels=3)
            return {"image": rgb, "image_raw": rgb, "image_depth": depth}

        resolution = neural_rendering_resolution
        if resolution is None:
            resolution = self.config.neural_rendering_resolution
        if planes is None:
            planes = self.planes(ws, noise_mode=noise_mode, residual=False, fused_modconv=fused_modconv)
        elif planes.residual is not None:
            planes = Triplanes(planes.coarse, background_ws=planes.background_ws)
        features, depth = self.render(planes, c, resolution, perturb=perturb, generator=generator)
        rgb = features[:, :3]
        image = rgb
        if self.superresolution is not None:
            image = self.superresolution(rgb, features, ws, fused_modconv=self._fused(fused_modconv))
        # float32 outputs also under autocast (the super-resolution then runs in the reduced type).
        image = full_precision(image)
        return {"image": image, "image_raw": rgb, "image_depth": depth, "feature_image": features}

    def forward(
        self,
        z: Tensor,
        c: Tensor,
        branch: str = "2d",
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        perturb: bool | None = None,
        neural_rendering_resolution: int | None = None,
        update_emas: bool = False,
        fused_modconv: bool | None = None,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Render a batch: z [N, z_dim], camera c [N, 25] (conditioning and rendering camera).

        Returns ``image`` [N, 3, H, W] in [-1, 1], ``image_raw`` (the volume render's RGB) and
        ``image_depth`` [N, 1, h, w]; the "2d" branch also returns ``feature_image`` [N, 32, h, w].

        - branch "2d": render P^c at ``neural_rendering_resolution`` (default: the model's) and
          super-resolve it (EG3D; Mimic3D's 2D branch).
        - branch "3d": render P^c (+ P^r) directly at ``neural_rendering_resolution`` (default:
          the image resolution); ``image`` is that render. Rays are rendered in chunks of
          ``config.rendering.chunk_rays`` (default: 1024 on CPU, 65536 on GPU), so memory stays bounded
          at any resolution.

        ``perturb`` (default ``config.rendering.perturb``) switches stratified jitter and random
        importance draws; ``noise_mode`` is the backbone's per-pixel noise ("const", "random", "none");
        ``labels``: one-hot classes of class-conditional models.
        """
        ws = self.mapping(
            z,
            c,
            truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
            update_emas=update_emas,
            labels=labels,
        )
        return self.synthesis(
            ws,
            c,
            branch=branch,
            noise_mode=noise_mode,
            perturb=perturb,
            neural_rendering_resolution=neural_rendering_resolution,
            fused_modconv=fused_modconv,
            generator=generator,
        )

    def render(
        self,
        planes: Triplanes,
        c: Tensor,
        resolution: int,
        perturb: bool | None = None,
        generator: torch.Generator | None = None,
        channels: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Volume-render the planes' field at resolution R: feature image [N, C, R, R], depth [N, 1, R, R].

        ``channels`` renders only the first feature channels (3: RGB, all the 3D branch shows).
        """
        c = self._camera(c, planes.batch_size)
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"neural_rendering_resolution: expected a positive int, got {resolution!r}")
        cam2world, intrinsics = split_label(c)
        grid = self.config.rendering.pixel_grid
        origins, directions = generate_rays(cam2world, intrinsics, resolution, grid)
        result = self.render_rays(planes, origins, directions, perturb, generator, channels)
        return _to_image(result.features, resolution), _to_image(result.depth, resolution)

    def render_scaled_patch(
        self,
        ws: Tensor,
        c: Tensor,
        scale: Tensor,
        offset: Tensor,
        resolution: int,
        noise_mode: str = "const",
        perturb: bool | None = None,
        planes: Triplanes | None = None,
        fused_modconv: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """EpiGRAF's patch: the r x r grid covering [offset, offset + scale] of the image (any model).

        scale [N] or [N, 2] in (0, 1], offset [N, 2] as (x, y) of the top-left corner in image
        fractions (y down; see ``mimic3d.render.rays.scaled_patch_uv``). scale 1, offset 0 gives the
        full image at resolution r. Returns ``image`` [N, 3, r, r] and ``image_depth`` [N, 1, r, r].
        """
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution: expected a positive int, got {resolution!r}")
        rays = partial(
            generate_scaled_patch_rays,
            patch_resolution=resolution,
            scale=scale,
            offset=offset,
            grid=self.config.rendering.pixel_grid,
        )
        options = (noise_mode, perturb, planes, fused_modconv, generator)
        return self._render_window(ws, c, rays, resolution, *options)

    def render_patch(
        self,
        ws: Tensor,
        c: Tensor,
        top: int | Tensor,
        left: int | Tensor,
        size: int,
        noise_mode: str = "const",
        perturb: bool | None = None,
        planes: Triplanes | None = None,
        fused_modconv: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """The 3D branch's size x size window at (top, left) of the full-resolution image.

        Rays are those of the ``img_resolution`` image grid (Mimic3D's patch training), so the result
        equals the same crop of ``synthesis(ws, c, branch="3d")``. top, left: ints or [N] tensors.
        Returns ``image`` [N, 3, size, size] and ``image_depth`` [N, 1, size, size].
        """
        rays = partial(
            generate_patch_rays,
            resolution=self.img_resolution,
            top=top,
            left=left,
            size=size,
            grid=self.config.rendering.pixel_grid,
        )
        return self._render_window(ws, c, rays, size, noise_mode, perturb, planes, fused_modconv, generator)

    def _render_window(
        self,
        ws: Tensor,
        c: Tensor,
        rays: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
        size: int,
        noise_mode: str,
        perturb: bool | None,
        planes: Triplanes | None,
        fused_modconv: bool | None,
        generator: torch.Generator | None,
    ) -> dict[str, Tensor]:
        """RGB and depth [N, C, size, size] along ``rays(cam2world, intrinsics)`` (a patch's size^2 rays)."""
        ws = self._input(ws, "ws", [self.num_ws, self.w_dim], "styles")
        c = self._camera(c, ws.shape[0])
        if planes is None:
            planes = self.planes(ws, noise_mode=noise_mode, fused_modconv=fused_modconv)
        origins, directions = rays(*split_label(c))
        result = self.render_rays(planes, origins, directions, perturb, generator, 3)
        return {"image": _to_image(result.features, size), "image_depth": _to_image(result.depth, size)}

    def sample_density(
        self,
        points: Tensor,
        ws: Tensor,
        noise_mode: str = "const",
        planes: Triplanes | None = None,
        fused_modconv: bool | None = None,
    ) -> Tensor:
        """Raw sigma (before the marcher's softplus) of the full field at points [N, P, 3] -> [N, P, 1].

        Stage-2 models use the summed P^c + P^r field, as the 3D branch renders it.
        """
        if planes is None:
            planes = self.planes(ws, noise_mode=noise_mode, fused_modconv=fused_modconv)
        return self.renderer.sample_density(planes.field_planes(), self.decoder, points)

    def render_rays(
        self,
        planes: Triplanes,
        origins: Tensor,
        directions: Tensor,
        perturb: bool | None = None,
        generator: torch.Generator | None = None,
        channels: int | None = None,
    ) -> RenderResult:
        """The planes' field (and background, density noise in training) along any rays [N, M, 3]."""
        noise = self._density_noise_std if self.training else 0.0
        return self._renderer(perturb)(
            planes.field_planes(),
            self.decoder,
            origins,
            directions,
            generator,
            colour_channels=channels,
            density_noise=noise,
            background=self._background_field(planes),
        )

    def _background_field(self, planes: Triplanes) -> Field | None:
        """The background model as a render field (None without one)."""
        if self.background is None:
            return None
        if planes.background_ws is None:
            raise ValueError("planes: this model has a background; compute the planes with G.planes(ws)")
        return background_field(self.background, planes.background_ws, self.config.rendering.convention)

    # ------------------------------------------------------------------ helpers

    def _fused(self, fused_modconv: bool | None) -> bool:
        return (not self.training) if fused_modconv is None else bool(fused_modconv)

    def _renderer(self, perturb: bool | None) -> TriplaneRenderer:
        if perturb is None or perturb == self.renderer.config.perturb:
            return self.renderer
        return TriplaneRenderer(replace(self.renderer.config, perturb=bool(perturb)))

    def _input(self, x: Any, name: str, shape: list[int], what: str) -> Tensor:
        return checked_input(x, name, shape, what, self.decoder.net[0].weight)

    def _camera(self, c: Any, batch_size: int) -> Tensor:
        return checked_camera(c, self.c_dim, batch_size, self.decoder.net[0].weight)

    def extra_repr(self) -> str:
        cfg = self.config
        kind = "epigraf" if cfg.decoder == "epigraf" else "mimic3d" if cfg.aware3d else "eg3d"
        return (
            f"{kind}, img_resolution={cfg.img_resolution}, triplane={cfg.triplane_resolution}, "
            f"sr3d={cfg.sr3d}, superresolution={cfg.superresolution}"
        )


def _accept_mimic3d_const(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Mimic3D stores the first backbone block's constant input as [1, C, 4, 4] (EG3D: [C, 4, 4])."""
    key = f"{prefix}backbone.synthesis.b4.const"
    const = state_dict.get(key)
    if const is not None and const.ndim == 4 and const.shape[0] == 1:
        state_dict[key] = const[0]


def _to_image(values: Tensor, resolution: int) -> Tensor:
    """Per-ray values [N, R*R, C] (row-major) -> image [N, C, R, R]."""
    image = values.permute(0, 2, 1).reshape(values.shape[0], values.shape[-1], resolution, resolution)
    return image.contiguous()
