"""The tri-plane generator: EG3D, Mimic3D stage 1 (3D-aware stream) and stage 2 (+ 3D super-resolution).

z, camera -> mapping -> ws -> StyleGAN2 backbone -> tri-plane(s) -> volume render -> image.

- EG3D: the backbone's 96-channel 256^2 output is the tri-plane; the "2d" branch renders it at the
  neural rendering resolution (64 or 128) and EG3D's 2D super-resolution makes the final image.
- Mimic3D stage 1: a 3D-aware stream beside the backbone produces the coarse tri-plane P^c.
- Mimic3D stage 2: S^3D adds a residual tri-plane P^r at 512^2; the "3d" branch renders the summed
  field of P^c and P^r directly at full resolution, with no 2D super-resolution. The "2d" branch
  never computes P^r (the official code does, and throws it away).

Module names follow the official G_ema (``backbone.mapping``, ``backbone.synthesis`` with
``b3d*`` 3D blocks, ``superresolution``, ``decoder``), so official state dicts load unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from mimic3d.camera import split_label
from mimic3d.models.aware3d import add_aware3d_blocks, synthesize_coarse_planes, synthesize_residual_planes
from mimic3d.models.config import GeneratorConfig
from mimic3d.models.superresolution import SuperResolution
from mimic3d.nn.backbone import StyleGAN2Backbone
from mimic3d.nn.modulated import NOISE_MODES
from mimic3d.render import TriplaneDecoder, TriplaneRenderer, generate_patch_rays, generate_rays

BRANCHES = ("2d", "3d")


@dataclass
class Triplanes:
    """The tri-planes of a batch: coarse P^c [N, 3, C, R, R] and, for stage-2 models, residual P^r
    [N, 3, C, 2R, 2R] whose features add to P^c's at every point. Compute once with
    ``TriplaneGenerator.planes`` to render many views of the same ws."""

    coarse: Tensor
    residual: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.coarse.shape[0]

    def field_planes(self) -> Tensor | list[Tensor]:
        """What the renderer samples: P^c alone or [P^c, P^r] (features summed)."""
        return self.coarse if self.residual is None else [self.coarse, self.residual]


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
            config.c_dim,
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
            config.plane_channels, 64, config.decoder_output_dim, lr_multiplier=config.decoder_lr_multiplier
        )
        self.renderer = TriplaneRenderer(config.rendering)
        # Per-entry std of the training set's camera labels; EG3D's training loop stores it on G.
        self.register_buffer("dataset_label_std", torch.zeros([config.c_dim]))
        self._register_load_state_dict_pre_hook(_accept_mimic3d_const)

    # ------------------------------------------------------------------ latent and planes

    def mapping(
        self,
        z: Tensor,
        c: Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> Tensor:
        """z [N, z_dim], conditioning camera c [N, 25] -> ws [N, num_ws, w_dim].

        Generator pose conditioning: c is multiplied by ``c_scale``, or zeroed when the model was
        trained without it (``c_gen_conditioning_zero``).
        """
        z = self._input(z, "z", [self.z_dim], "latents")
        c = self._camera(c, z.shape[0])
        if self.config.c_gen_conditioning_zero:
            c = torch.zeros_like(c)
        return self.backbone.mapping(
            z,
            c * self.config.c_scale,
            truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
            update_emas=update_emas,
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
        if self.config.aware3d:
            coarse = synthesize_coarse_planes(synthesis, ws, noise_mode=noise_mode, fused_modconv=fused)
        else:
            image = synthesis(ws, noise_mode=noise_mode, fused_modconv=fused)
            coarse = image.view(image.shape[0], 3, -1, *image.shape[-2:])
        planes = Triplanes(coarse)
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
            planes = Triplanes(planes.coarse)
        features, depth = self.render(planes, c, resolution, perturb=perturb, generator=generator)
        rgb = features[:, :3]
        image = rgb
        if self.superresolution is not None:
            image = self.superresolution(rgb, features, ws, fused_modconv=self._fused(fused_modconv))
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
        importance draws; ``noise_mode`` is the backbone's per-pixel noise ("const", "random", "none").
        """
        ws = self.mapping(
            z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas
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
        origins, directions = generate_rays(cam2world, intrinsics, resolution)
        result = self._renderer(perturb)(
            planes.field_planes(), self.decoder, origins, directions, generator, colour_channels=channels
        )
        return _to_image(result.features, resolution), _to_image(result.depth, resolution)

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
        ws = self._input(ws, "ws", [self.num_ws, self.w_dim], "styles")
        c = self._camera(c, ws.shape[0])
        if planes is None:
            planes = self.planes(ws, noise_mode=noise_mode, fused_modconv=fused_modconv)
        cam2world, intrinsics = split_label(c)
        origins, directions = generate_patch_rays(cam2world, intrinsics, self.img_resolution, top, left, size)
        result = self._renderer(perturb)(
            planes.field_planes(), self.decoder, origins, directions, generator, colour_channels=3
        )
        return {
            "image": _to_image(result.features, size),
            "image_depth": _to_image(result.depth, size),
        }

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

    # ------------------------------------------------------------------ helpers

    def _fused(self, fused_modconv: bool | None) -> bool:
        return (not self.training) if fused_modconv is None else bool(fused_modconv)

    def _renderer(self, perturb: bool | None) -> TriplaneRenderer:
        if perturb is None or perturb == self.renderer.config.perturb:
            return self.renderer
        return TriplaneRenderer(replace(self.renderer.config, perturb=bool(perturb)))

    def _input(self, x: Any, name: str, shape: list[int], what: str) -> Tensor:
        """``x`` checked to be a floating-point tensor [N, *shape], on the model's device and dtype."""
        if not isinstance(x, Tensor) or x.ndim != 1 + len(shape) or list(x.shape[1:]) != shape:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: expected {what} [N, {', '.join(map(str, shape))}], got {got}")
        if not x.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype}")
        reference = self.decoder.net[0].weight
        return x.to(device=reference.device, dtype=reference.dtype)

    def _camera(self, c: Any, batch_size: int) -> Tensor:
        """Camera labels c [N, c_dim] checked (shape, batch, finite values) and cast like ``_input``."""
        c = self._input(c, "c", [self.c_dim], "camera labels")
        if c.shape[0] != batch_size:
            raise ValueError(f"c: batch size {c.shape[0]} differs from the latents' {batch_size}")
        if not bool(torch.isfinite(c).all()):
            raise ValueError(
                "c: camera labels hold NaN or infinite values (mimic3d.camera.validate_label names them)"
            )
        return c

    def extra_repr(self) -> str:
        cfg = self.config
        kind = "mimic3d" if cfg.aware3d else "eg3d"
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
