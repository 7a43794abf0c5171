"""Configuration of the tri-plane generator (EG3D, Mimic3D stage 1 and stage 2, EpiGRAF) and its presets.

A ``GeneratorConfig`` fully rebuilds a ``TriplaneGenerator``: it is plain data, serialisable with
``dataclasses.asdict`` (JSON/YAML) and rebuilt with ``GeneratorConfig.from_dict``, which names every
unknown or ill-typed field it refuses.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from mimic3d.models.background import BackgroundConfig
from mimic3d.render import RENDER_PRESETS, RenderConfig
from mimic3d.render.decoder import DECODER_KINDS

# EG3D's 2D super-resolution modules, by official class suffix. "hybrid2x" and "hybrid4x" keep the
# resolution in their first block and double it in the second (input = output / 2); "hybrid8x" and
# "hybrid8xdc" double it in both (input = output / 4) and differ only in their default widths.
SUPERRESOLUTION_INPUT_DIVISOR = {"hybrid2x": 2, "hybrid4x": 2, "hybrid8x": 4, "hybrid8xdc": 4}
SUPERRESOLUTION_TYPES = ("none", *SUPERRESOLUTION_INPUT_DIVISOR)
NOISE_MODES = ("random", "const", "none")


@dataclass
class GeneratorConfig:
    """Architecture and rendering options of a tri-plane generator.

    ``aware3d`` adds Mimic3D's 3D-aware stream (stage 1) with a block at every backbone resolution
    from ``aware3d_min_resolution`` (4 in Mimic3D) up; ``sr3d`` adds its 3D super-resolution (stage 2,
    needs ``aware3d``). The tri-plane projection is ``rendering.convention``: "eg3d" (official EG3D's
    (x,y), (x,z), (z,x), needed by EG3D weights) or "xyz" (Mimic3D's (x,y), (y,z), (z,x), needed by
    the 3D-aware stream).

    EpiGRAF is ``superresolution="none"`` with ``decoder="epigraf"`` (lrelu MLP, raw RGB and density),
    ``rendering.integration="epigraf"`` and its plane/pixel conventions (see ``epigraf_render_config``),
    a mapping network that does not see the camera (``pose_conditioning=False``), optionally one-hot
    class labels (``class_dim``) and a sphere ``background`` (Megascans).
    """

    z_dim: int = 512
    w_dim: int = 512
    c_dim: int = 25
    img_resolution: int = 512
    triplane_resolution: int = 256
    triplane_channels: int = 96
    channel_base: int = 32768
    channel_max: int = 512
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    conv_clamp: float | None = None
    neural_rendering_resolution: int = 64
    superresolution: str = "hybrid8xdc"
    sr_channels: tuple[int, int] = (256, 128)
    sr_antialias: bool = True
    sr_num_fp16_res: int = 4
    sr_noise_mode: str = "none"
    decoder_output_dim: int = 32
    decoder_lr_multiplier: float = 1.0
    rendering: RenderConfig = field(default_factory=RenderConfig)
    aware3d: bool = False
    aware3d_min_resolution: int = 4
    sr3d: bool = False
    c_scale: float = 1.0
    c_gen_conditioning_zero: bool = False
    decoder: str = "eg3d"  # "eg3d" (OSGDecoder) or "epigraf" (TriPlaneMLP: lrelu, raw RGB + density)
    pose_conditioning: bool = True  # the mapping network sees the camera label (EG3D, Mimic3D)
    class_dim: int = 0  # one-hot class labels the mapping network also sees (EpiGRAF's Megascans)
    background: BackgroundConfig | None = None  # EpiGRAF's sphere background model

    def __post_init__(self) -> None:
        self.validate()

    @property
    def plane_convention(self) -> str:
        """Tri-plane projection, "eg3d" or "xyz" (stored in ``rendering.convention``)."""
        return self.rendering.convention

    @property
    def plane_channels(self) -> int:
        """Feature channels of one plane (the backbone's output viewed as 3 planes)."""
        return self.triplane_channels // 3

    @property
    def mapping_c_dim(self) -> int:
        """Width of the mapping network's conditioning input: camera label (if seen) + class labels."""
        return (self.c_dim if self.pose_conditioning else 0) + self.class_dim

    @property
    def sr_input_resolution(self) -> int:
        """Resolution the 2D super-resolution expects (the neural render is resized to it)."""
        if self.superresolution == "none":
            return self.img_resolution
        return self.img_resolution // SUPERRESOLUTION_INPUT_DIVISOR[self.superresolution]

    @property
    def sr_conv_clamp(self) -> float | None:
        """EG3D clamps the super-resolution convolutions whenever it marks them for fp16."""
        return 256.0 if self.sr_num_fp16_res > 0 else None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        for name in (
            "z_dim",
            "w_dim",
            "c_dim",
            "channel_base",
            "channel_max",
            "mapping_layers",
            "decoder_output_dim",
        ):
            if getattr(self, name) < (0 if name in ("z_dim", "c_dim") else 1):
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        for name in ("img_resolution", "triplane_resolution", "neural_rendering_resolution"):
            value = getattr(self, name)
            if value < 4 or value & (value - 1):
                raise ValueError(f"{name}: expected a power of two >= 4, got {value}")
        if self.triplane_channels < 3 or self.triplane_channels % 3:
            raise ValueError(
                f"triplane_channels: expected a positive multiple of 3, got {self.triplane_channels}"
            )
        if self.superresolution not in SUPERRESOLUTION_TYPES:
            raise ValueError(
                f"superresolution: expected one of {SUPERRESOLUTION_TYPES}, got {self.superresolution!r}"
            )
        if self.superresolution != "none":
            if self.img_resolution % SUPERRESOLUTION_INPUT_DIVISOR[self.superresolution]:
                raise ValueError(
                    f"img_resolution: {self.img_resolution} is too small for {self.superresolution}"
                )
            if self.decoder_output_dim < 4:
                raise ValueError("decoder_output_dim: super-resolution needs more than the 3 RGB channels")
        if len(self.sr_channels) != 2 or any(int(ch) < 1 for ch in self.sr_channels):
            raise ValueError(f"sr_channels: expected two positive widths, got {self.sr_channels!r}")
        if self.sr_noise_mode not in NOISE_MODES:
            raise ValueError(f"sr_noise_mode: expected one of {NOISE_MODES}, got {self.sr_noise_mode!r}")
        if not isinstance(self.rendering, RenderConfig):
            raise ValueError(f"rendering: expected a RenderConfig, got {type(self.rendering).__name__}")
        if self.aware3d and self.rendering.convention != "xyz":
            raise ValueError(
                "rendering.convention: the 3D-aware stream (aware3d=True) needs the 'xyz' convention"
            )
        value = self.aware3d_min_resolution
        if value < 4 or value & (value - 1) or value > self.triplane_resolution:
            raise ValueError(
                f"aware3d_min_resolution: expected a power of two in [4, {self.triplane_resolution}], "
                f"got {value}"
            )
        if self.sr3d and not self.aware3d:
            raise ValueError("sr3d: the 3D super-resolution lives in the 3D-aware stream; set aware3d=True")
        if self.conv_clamp is not None and self.conv_clamp <= 0:
            raise ValueError(f"conv_clamp: expected None or a positive number, got {self.conv_clamp}")
        if not math.isfinite(self.c_scale):
            raise ValueError(f"c_scale: expected a finite number, got {self.c_scale}")
        self._validate_epigraf_fields()

    def _validate_epigraf_fields(self) -> None:
        if self.decoder not in DECODER_KINDS:
            raise ValueError(f"decoder: expected one of {DECODER_KINDS}, got {self.decoder!r}")
        epigraf = self.decoder == "epigraf"
        if epigraf != (self.rendering.integration == "epigraf"):
            raise ValueError(
                "decoder, rendering.integration: the 'epigraf' decoder (raw colours) and the 'epigraf' "
                f"integration go together; got decoder={self.decoder!r}, "
                f"integration={self.rendering.integration!r}"
            )
        if epigraf and self.superresolution != "none":
            raise ValueError("superresolution: the 'epigraf' decoder renders only RGB; use 'none'")
        if isinstance(self.class_dim, bool) or not isinstance(self.class_dim, int) or self.class_dim < 0:
            raise ValueError(f"class_dim: expected an int >= 0, got {self.class_dim!r}")
        if self.z_dim == 0 and self.mapping_c_dim == 0:
            raise ValueError("z_dim: a mapping network without camera or class conditioning needs z_dim > 0")
        if self.background is not None and not isinstance(self.background, BackgroundConfig):
            kind = type(self.background).__name__
            raise ValueError(f"background: expected a BackgroundConfig or None, got {kind}")
        if (self.background is not None) != (self.rendering.background_samples > 0):
            raise ValueError(
                "background, rendering.background_samples: a background model needs background_samples > 0 "
                "and background samples need a background model"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready dict (``from_dict`` inverts it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        """Build a config from ``to_dict`` output (or parsed JSON/YAML), checking every field's name
        and type; missing fields take their defaults. Errors name the field, e.g.
        ``generator config.rendering.ray_start``."""
        from mimic3d.checkpoints.portable import config_from_dict

        return config_from_dict(cls, data, where="generator config")


def _tiny(convention: str = "eg3d", **overrides: Any) -> GeneratorConfig:
    """A few-thousand-parameter model with every code path of the full one (tests, CPU demos)."""
    rendering = dataclasses.replace(
        RENDER_PRESETS["ffhq"], num_coarse=6, num_importance=6, convention=convention
    )
    options = dict(
        z_dim=16,
        w_dim=16,
        img_resolution=32,
        triplane_resolution=16,
        triplane_channels=24,
        channel_base=256,
        channel_max=32,
        neural_rendering_resolution=16,
        superresolution="hybrid2x",
        sr_channels=(16, 8),
        decoder_output_dim=8,
        rendering=rendering,
    )
    options.update(overrides)
    return GeneratorConfig(**options)


def epigraf_render_config(
    ray_start: float, ray_end: float, cube_scale: float, samples: int = 48, **overrides: Any
) -> RenderConfig:
    """EpiGRAF's renderer: ``samples`` coarse + ``samples`` fine, box_warp = 2 * cube_scale, its plane
    frame and projection, ``align_corners=True``, the corner pixel grid and its integration."""
    options = dict(
        ray_start=ray_start,
        ray_end=ray_end,
        num_coarse=samples,
        num_importance=samples,
        box_warp=2 * cube_scale,
        convention="epigraf",
        integration="epigraf",
        align_corners=True,
        pixel_grid="corners",
    )
    options.update(overrides)
    return RenderConfig(**options)


def epigraf_architecture(img_resolution: int, rendering: RenderConfig, **overrides: Any) -> GeneratorConfig:
    """EpiGRAF's generator (universome/epigraf configs/model/epigraf.yaml): a 512^2 x (3 x 32) tri-plane
    whatever the image size, mapping depth 2, conv clamp 256, no super-resolution, its decoder and
    ``rendering`` (e.g. ``EPIGRAF_FACE_RENDERING``); the training presets epigraf-* use it."""
    options = dict(
        img_resolution=img_resolution,
        triplane_resolution=512,
        triplane_channels=96,
        mapping_layers=2,
        conv_clamp=256.0,
        neural_rendering_resolution=img_resolution,
        superresolution="none",
        decoder_output_dim=3,
        decoder="epigraf",
        pose_conditioning=False,
        rendering=rendering,
    )
    options.update(overrides)
    return GeneratorConfig(**options)


# EpiGRAF's cameras (configs/dataset): FFHQ and cats fov 12 deg at radius 1, rays 0.88..1.12 in a cube of
# half-size 0.2; Megascans fov 30 deg, rays 0.75..1.25, cube 0.475, white background, 8 sphere samples.
EPIGRAF_FACE_RENDERING = epigraf_render_config(0.88, 1.12, 0.2)
EPIGRAF_MEGASCANS_RENDERING = epigraf_render_config(
    0.75, 1.25, 0.475, white_background=True, background_samples=8
)


def _tiny_epigraf(rendering: RenderConfig, **overrides: Any) -> GeneratorConfig:
    """A tiny EpiGRAF generator (tests, CPU demos): 3 x 8-channel 32^2 tri-planes, 32^2 images."""
    options = dict(
        z_dim=16,
        w_dim=16,
        triplane_resolution=32,
        triplane_channels=24,
        channel_base=256,
        channel_max=32,
    )
    options.update(overrides)
    return epigraf_architecture(32, rendering, **options)


# Test-sized generators with every code path of the full ones; every other preset name is a
# training preset's (its YAML holds its generator).
_TINY_PRESETS: dict[str, GeneratorConfig] = {
    "tiny-eg3d": _tiny(),
    "tiny-mimic3d-stage1": _tiny(convention="xyz", aware3d=True),
    "tiny-mimic3d": _tiny(convention="xyz", aware3d=True, sr3d=True),
    "tiny-epigraf": _tiny_epigraf(epigraf_render_config(2.25, 3.3, 0.5, samples=6)),
    "tiny-epigraf-bg": _tiny_epigraf(
        epigraf_render_config(0.75, 1.25, 0.475, samples=6, white_background=True, background_samples=4),
        background=BackgroundConfig(channel_base=64, channel_max=16),
    ),
}


def generator_preset_names() -> list[str]:
    """Every name ``generator_preset`` knows: the training presets' (but the distillation presets',
    whose student is built from a teacher checkpoint) and the tiny test generators'."""
    return sorted([*_training_generator_presets(), *_TINY_PRESETS])


def _training_generator_presets() -> list[str]:
    from mimic3d.training.presets import preset_dict, preset_names  # lazily: training builds on this layer

    return [name for name in preset_names() if "distill" not in preset_dict(name)]


def generator_preset(name: str, **overrides: Any) -> GeneratorConfig:
    """A fresh copy of a named generator configuration, optionally with some fields replaced.

    Names are the training presets' (``mimic3d train --list-presets``: eg3d-ffhq512,
    mimic3d-ffhq512-stage1, mimic3d-ffhq512-stage2, mimic3d-ffhq256, ...), giving the generator a run
    of that preset starts with, plus tiny-eg3d, tiny-mimic3d-stage1, tiny-mimic3d, tiny-epigraf
    (EpiGRAF on EG3D's FFHQ camera range 2.25..3.3, the synthetic heads' cameras) and
    tiny-epigraf-bg (sphere background, EpiGRAF's Megascans cameras): few-thousand-parameter models
    for tests and CPU experiments. Full-size EpiGRAF configurations: ``epigraf_architecture``.
    """
    if name in _TINY_PRESETS:
        config = copy.deepcopy(_TINY_PRESETS[name])
    else:
        from mimic3d.training.presets import preset_dict

        if name not in _training_generator_presets():
            raise ValueError(f"preset: unknown name {name!r}; expected one of {generator_preset_names()}")
        config = GeneratorConfig.from_dict(preset_dict(name).get("generator", {}))
    return dataclasses.replace(config, **overrides) if overrides else config
