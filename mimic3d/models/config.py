"""Configuration of the tri-plane generator (EG3D, Mimic3D stage 1 and stage 2) and its presets.

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

from mimic3d.render import RENDER_PRESETS, RenderConfig

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


# Test-sized generators with every code path of the full ones; every other preset name is a
# training preset's (its YAML holds its generator).
_TINY_PRESETS: dict[str, GeneratorConfig] = {
    "tiny-eg3d": _tiny(),
    "tiny-mimic3d-stage1": _tiny(convention="xyz", aware3d=True),
    "tiny-mimic3d": _tiny(convention="xyz", aware3d=True, sr3d=True),
}


def generator_preset_names() -> list[str]:
    """Every name ``generator_preset`` knows: the training presets' and the tiny test generators'."""
    from mimic3d.training.presets import preset_names  # lazily: the training layer builds on this one

    return sorted([*preset_names(), *_TINY_PRESETS])


def generator_preset(name: str, **overrides: Any) -> GeneratorConfig:
    """A fresh copy of a named generator configuration, optionally with some fields replaced.

    Names are the training presets' (``mimic3d train --list-presets``: eg3d-ffhq512,
    mimic3d-ffhq512-stage1, mimic3d-ffhq512-stage2, mimic3d-ffhq256, ...), giving the generator a run
    of that preset starts with, plus tiny-eg3d, tiny-mimic3d-stage1 and tiny-mimic3d: few-thousand-
    parameter models for tests and CPU experiments.
    """
    if name in _TINY_PRESETS:
        config = copy.deepcopy(_TINY_PRESETS[name])
    else:
        from mimic3d.training.presets import preset_dict, preset_names

        if name not in preset_names():
            raise ValueError(f"preset: unknown name {name!r}; expected one of {generator_preset_names()}")
        config = GeneratorConfig.from_dict(preset_dict(name).get("generator", {}))
    return dataclasses.replace(config, **overrides) if overrides else config
