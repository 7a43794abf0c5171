"""Official EpiGRAF generators (universome/epigraf ``networks_epigraf.Generator``) as ``TriplaneGenerator``s.

An EpiGRAF snapshot keeps its hydra config on the generator (``G.cfg``, the ``model.generator`` node
of the experiment config, whose ``dataset`` and ``patch`` entries are interpolations into the
rest of the tree). It is read as plain data (``omegaconf_data``), checked option by option, and
turned into a ``GeneratorConfig``: tri-plane resolution and width, MLP, ray samples, camera range,
cube size (box_warp = 2 * cube_scale), white background and the sphere background model. The
official state dict is renamed onto our modules:

    mapping.*                           -> backbone.mapping.*   (mean_camera_pose dropped)
    synthesis.tri_plane_decoder.*       -> backbone.synthesis.*
    synthesis.tri_plane_mlp.model.0/1.* -> decoder.net.0/2.*
    synthesis.bg_model.blocks.*         -> background.blocks.*  (Fourier frequencies checked, dropped)

The camera is not part of our generator: render EpiGRAF's (yaw, pitch) at its radius and fov with
``mimic3d.camera.epigraf_label``; the importer records neither.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mimic3d.checkpoints.omegaconf_data import config_to_plain
from mimic3d.checkpoints.portable import assign_weights
from mimic3d.checkpoints.records import ModuleRecord
from mimic3d.models.background import BackgroundConfig, fourier_frequencies
from mimic3d.models.config import GeneratorConfig, epigraf_render_config
from mimic3d.models.generator import TriplaneGenerator

_RENAMES = (
    ("mapping.", "backbone.mapping."),
    ("synthesis.tri_plane_decoder.", "backbone.synthesis."),
    ("synthesis.tri_plane_mlp.model.0.", "decoder.net.0."),
    ("synthesis.tri_plane_mlp.model.1.", "decoder.net.2."),
    ("synthesis.bg_model.", "background."),
)
_FREQUENCIES_KEY = "synthesis.bg_model.blocks.0.scalar_enc.fourier_encoder.fourier_coefs"
# Options with one implemented value: (path in the generator config, value).
_FIXED_OPTIONS = (
    ("backbone", "stylegan2"),
    ("clamp_mode", "softplus"),
    ("use_noise", True),
    ("camera_cond", False),
    ("tri_plane.has_view_cond", False),
    ("tri_plane.posenc_period_len", 0),
    ("tri_plane.mlp.n_layers", 2),
    ("tri_plane.mlp.hid_dim", 64),
    ("dataset.last_back", False),
)
_FIXED_BACKGROUND_OPTIONS = (("output_channels", 4), ("coord_dim", 4), ("fmm.enabled", False))


def is_epigraf_generator(record: ModuleRecord) -> bool:
    """Whether an official generator record is EpiGRAF's (a ``Generator`` with a tri-plane MLP)."""
    synthesis = record.children.get("synthesis")
    return (
        record.class_name == "Generator"
        and synthesis is not None
        and {"tri_plane_decoder", "tri_plane_mlp"} <= set(synthesis.children)
    )


def epigraf_generator(record: ModuleRecord, where: str = "G_ema") -> TriplaneGenerator:
    """A ``TriplaneGenerator`` with the weights of an official EpiGRAF ``Generator`` record."""
    generator = TriplaneGenerator(epigraf_generator_config(record, where))
    state = epigraf_state_dict(record.state_dict(), generator, where)
    assign_weights(generator, state, where)
    return generator


def _get(cfg: dict[str, Any], path: str, where: str) -> Any:
    value: Any = cfg
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise ValueError(f"{where}: EpiGRAF config has no option {path!r}")
        value = value[key]
    return value


def _number(cfg: dict[str, Any], path: str, where: str) -> float:
    value = _get(cfg, path, where)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: EpiGRAF option {path} = {value!r} is not a number")
    return float(value)


def epigraf_generator_config(record: ModuleRecord, where: str = "G_ema") -> GeneratorConfig:
    """The ``GeneratorConfig`` of an official EpiGRAF generator record (ValueError naming any
    option of a variant we do not implement)."""
    if not is_epigraf_generator(record):
        raise ValueError(f"{where}: not an EpiGRAF generator (class {record.class_name!r})")
    kwargs = record.init_kwargs
    cfg = config_to_plain(kwargs.get("cfg", record.attributes.get("cfg")))
    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: the EpiGRAF generator has no readable config (cfg)")
    missing = [
        name for name in ("z_dim", "w_dim", "c_dim", "img_resolution", "img_channels") if name not in kwargs
    ]
    if missing:
        raise ValueError(f"{where}: constructor arguments {missing} not recorded in the pickle")
    mapping_kwargs = config_to_plain(dict(kwargs.get("mapping_kwargs") or {}))
    if mapping_kwargs.get("camera_cond", False):
        raise ValueError(f"{where}: unsupported EpiGRAF option mapping_kwargs.camera_cond=True")
    for path, value in _FIXED_OPTIONS:
        actual = _get(cfg, path, where)
        if actual != value:
            raise ValueError(f"{where}: unsupported EpiGRAF option {path}={actual!r} (only {value!r})")
    if int(kwargs["img_channels"]) != 3:
        raise ValueError(f"{where}: img_channels={kwargs['img_channels']}; only RGB models are supported")
    background, background_samples, background_start = None, 0, 1.0
    bg_type = _get(cfg, "bg_model.type", where)
    if bg_type == "sphere":
        bg = _get(cfg, "bg_model", where)
        for path, value in _FIXED_BACKGROUND_OPTIONS:
            if _get(bg, path, where) != value:
                raise ValueError(
                    f"{where}: unsupported EpiGRAF option bg_model.{path}={_get(bg, path, where)!r}"
                )
        background = BackgroundConfig(
            channel_base=int(_number(bg, "cbase", where)),
            channel_max=int(_number(bg, "cmax", where)),
            num_blocks=int(_number(bg, "num_blocks", where)),
            posenc_period=_number(bg, "posenc_period_len", where),
        )
        background_samples = int(_number(bg, "num_steps", where))
        background_start = _number(bg, "start", where)
    elif bg_type is not None:
        raise ValueError(f"{where}: unsupported EpiGRAF option bg_model.type={bg_type!r} (None or 'sphere')")
    samples = int(_number(cfg, "num_ray_steps", where))
    feat_dim = int(_number(cfg, "tri_plane.feat_dim", where))
    try:
        rendering = epigraf_render_config(
            _number(cfg, "dataset.camera.ray_start", where),
            _number(cfg, "dataset.camera.ray_end", where),
            _number(cfg, "dataset.cube_scale", where),
            samples=samples,
            white_background=bool(_get(cfg, "dataset.white_back", where)),
            density_shift=_number(cfg, "density_shift", where),
            background_samples=background_samples,
            background_start=background_start,
        )
        img_resolution = int(kwargs["img_resolution"])
        return GeneratorConfig(
            z_dim=int(kwargs["z_dim"]),
            w_dim=int(kwargs["w_dim"]),
            c_dim=25,
            img_resolution=img_resolution,
            triplane_resolution=int(_number(cfg, "tri_plane.res", where)),
            triplane_channels=3 * feat_dim,
            channel_base=int(kwargs.get("channel_base", 32768)),
            channel_max=int(kwargs.get("channel_max", 512)),
            mapping_layers=int(mapping_kwargs.get("num_layers", 2)),
            mapping_lr_multiplier=float(mapping_kwargs.get("lr_multiplier", 0.01)),
            # EpiGRAF's synthesis blocks clamp at 256 unless the run was launched with training.fp32.
            conv_clamp=None
            if kwargs.get("conv_clamp", 256) is None
            else float(kwargs.get("conv_clamp", 256)),
            neural_rendering_resolution=img_resolution,
            superresolution="none",
            decoder_output_dim=3,
            decoder="epigraf",
            pose_conditioning=False,
            class_dim=int(kwargs["c_dim"]),
            background=background,
            rendering=rendering,
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: cannot rebuild the EpiGRAF generator: {err}") from err


def epigraf_state_dict(
    state: dict[str, Tensor], generator: TriplaneGenerator, where: str
) -> dict[str, Tensor]:
    """Official EpiGRAF ``G.state_dict()`` renamed onto ``generator``'s modules (see the module docstring)."""
    state = dict(state)
    state.pop("mapping.mean_camera_pose", None)
    frequencies = state.pop(_FREQUENCIES_KEY, None)
    background = generator.config.background
    if background is not None:
        expected = fourier_frequencies(background.posenc_period)
        if (
            frequencies is None
            or frequencies.shape != expected.shape
            or not torch.allclose(frequencies.float(), expected, rtol=1e-6, atol=0)
        ):
            raise ValueError(
                f"{where}: background Fourier frequencies {_FREQUENCIES_KEY} do not match posenc"
            )
    renamed: dict[str, Tensor] = {}
    for key, tensor in state.items():
        for theirs, ours in _RENAMES:
            if key.startswith(theirs):
                key = ours + key[len(theirs) :]
                break
        renamed[key] = tensor
    # Our generator keeps EG3D's per-entry label std; EpiGRAF has none.
    renamed.setdefault("dataset_label_std", torch.zeros_like(generator.dataset_label_std))
    return renamed
