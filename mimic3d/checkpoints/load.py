"""``mimic3d.load`` / ``mimic3d.save``: one entry point for every checkpoint a user may hold.

``load`` accepts everything ``resolve.resolve_checkpoint`` does: a run folder (its latest snapshot),
our portable checkpoints (a folder, one of its network folders, or one ``.safetensors`` file, see
``portable``) and official EG3D / Mimic3D / EpiGRAF network pickles (``network-snapshot-*.pkl``). Pickles
are read by the restricted unpickler of ``safe_unpickle`` (their embedded code never runs); the
architecture is rebuilt from the recorded constructor arguments, ``rendering_kwargs``,
``neural_rendering_resolution`` and the super-resolution class, and the official state dicts
are copied onto our modules, whose parameter names are the official ones. EG3D weights get the
legacy "eg3d" plane projection, Mimic3D weights the "xyz" one. Buffers that pickles written outside
EG3D's training loop lack (``OPTIONAL_BUFFERS``) take their defaults, with a warning. EpiGRAF
generators are rebuilt from the OmegaConf config they carry, read as inert data (``epigraf``).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mimic3d.checkpoints.epigraf import epigraf_generator, is_epigraf_generator
from mimic3d.checkpoints.portable import (
    assign_weights,
    is_portable_file,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from mimic3d.checkpoints.records import ModuleRecord
from mimic3d.checkpoints.resolve import resolve_checkpoint
from mimic3d.checkpoints.safe_unpickle import read_official_pickle
from mimic3d.models.config import GeneratorConfig
from mimic3d.models.discriminator import DualDiscriminator, DualDiscriminatorConfig
from mimic3d.models.generator import TriplaneGenerator
from mimic3d.models.patch_discriminator import PatchDiscriminator, PatchDiscriminatorConfig
from mimic3d.render import RenderConfig
from mimic3d.runtime import resolve_device

_GENERATOR_KINDS = {"TriPlaneGenerator": "eg3d", "DualTriPlaneGenerator": "mimic3d"}
_SUPERRESOLUTION_KINDS = {
    "SuperresolutionHybrid2X": "hybrid2x",
    "SuperresolutionHybrid4X": "hybrid4x",
    "SuperresolutionHybrid8X": "hybrid8x",
    "SuperresolutionHybrid8XDC": "hybrid8xdc",
}
# Mimic3D generator options that select code paths we do not implement, with their inert values.
_MIMIC3D_INERT_OPTIONS = {
    "triplane_act": None,
    "blur_plane": 0,
    "depth_guided_sample": 0,
    "roll_out": None,
    "add_block": 0,
    "add_sr_module": False,
    "aware3d_att": False,
}
_STAGE2_RETIDX = [-3, -1]  # Mimic3D stage 2 returns (P^c, P^r): the 3D-aware output and S^3D's last one
_DISCRIMINATOR_CLASSES = ("DualDiscriminator", "SingleDiscriminator")
# Generator buffers EG3D's training loop adds (training_loop.py registers the dataset's label std on G);
# a G pickled elsewhere (PTI and other tools) has none. Only recorded, never used for generation.
OPTIONAL_BUFFERS = ("dataset_label_std",)
_PICKLE_MAGIC = b"\x80"
_ZIP_MAGIC = b"PK\x03\x04"


def save(
    path: str | os.PathLike,
    G_ema: nn.Module,
    D: nn.Module | None = None,
    *,
    G: nn.Module | None = None,
    D_patch: nn.Module | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save networks as a portable checkpoint: a ``.safetensors`` path gives one file, any other
    path a folder. ``metadata`` is free JSON (training step, dataset, ...). Returns the path."""
    networks = {
        name: module
        for name, module in (("G_ema", G_ema), ("G", G), ("D", D), ("D_patch", D_patch))
        if module is not None
    }
    return save_checkpoint(path, networks, metadata)


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """The EMA generator of any supported checkpoint (the network itself for a network folder such
    as ``snapshot/G``), in eval mode without gradients, on ``device`` ("auto" picks the fastest)."""
    single = resolve_checkpoint(path).network is not None
    networks = load_networks(path, device, names=None if single else ["G_ema"])
    return next(iter(networks.values())).eval().requires_grad_(False)


def load_networks(
    path: str | os.PathLike, device: str | torch.device = "cpu", names: list[str] | None = None
) -> dict[str, nn.Module]:
    """Networks of a checkpoint by name (``G_ema``, ``G``, ``D``, ``D_patch``; default: all it holds).

    ``path`` is anything ``resolve_checkpoint`` accepts; a network folder holds one network, named
    by its folder. For official pickles, networks we cannot rebuild (e.g. the ADA ``augment_pipe``,
    EpiGRAF's discriminator) are skipped unless named.
    """
    device = resolve_device(device)
    location = resolve_checkpoint(path)
    path = location.path
    if location.network is not None:
        networks = load_checkpoint(path, device)[0]
        absent = [n for n in names or [] if n not in networks]
        if absent:
            raise ValueError(f"{path}: a network folder holding {location.network}, not {absent}")
        return networks
    if path.is_dir():
        return load_checkpoint(path, device, names)[0]
    with path.open("rb") as f:
        head = f.read(4)
    if is_portable_file(path):
        return load_checkpoint(path, device, names)[0]
    if head[:1] == _PICKLE_MAGIC:
        return {
            name: module.to(device) for name, module in networks_from_official_pickle(path, names).items()
        }
    hint = (
        " (a zip archive: torch.save files are not read, to avoid unpickling)" if head == _ZIP_MAGIC else ""
    )
    raise ValueError(
        f"{path}: unknown checkpoint format{hint}; expected a mimic3d folder or .safetensors file, "
        "or an official EG3D/Mimic3D/EpiGRAF network pickle"
    )


def checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata saved with a portable checkpoint, for any path ``resolve_checkpoint`` accepts
    ({} for a network folder and for official pickles, which keep none)."""
    location = resolve_checkpoint(path)
    if location.network is not None:
        return {}
    if location.path.is_dir() or is_portable_file(location.path):
        return read_metadata(location.path)
    return {}


# ----------------------------------------------------------------------------- official pickles


def networks_from_official_pickle(
    path: str | os.PathLike, names: list[str] | None = None
) -> dict[str, nn.Module]:
    """Our modules, with the official weights, for the networks of an official snapshot."""
    snapshot = read_official_pickle(path)
    builders = {
        "G_ema": official_generator,
        "G": official_generator,
        "D": official_discriminator,
        "D_patch": official_discriminator,
    }
    available = [n for n in builders if isinstance(snapshot.get(n), ModuleRecord)]
    if names is None:
        # EpiGRAF's discriminator (class Discriminator) is not imported; load its generators.
        available = [
            n
            for n in available
            if n not in ("D", "D_patch") or snapshot[n].class_name in _DISCRIMINATOR_CLASSES
        ]
    else:
        absent = [n for n in names if n not in available]
        if absent:
            raise ValueError(f"{Path(path).name}: has no network {absent}; it holds {available}")
    return {n: builders[n](snapshot[n], f"{Path(path).name}:{n}") for n in (names or available)}


def official_generator(record: ModuleRecord, where: str = "G_ema") -> TriplaneGenerator:
    """A ``TriplaneGenerator`` with the weights of an official (Dual)TriPlaneGenerator record or
    EpiGRAF ``Generator`` record (see ``mimic3d.checkpoints.epigraf``)."""
    if is_epigraf_generator(record):
        return epigraf_generator(record, where)
    generator = TriplaneGenerator(generator_config_from_official(record, where))
    state = record.state_dict()
    for name in OPTIONAL_BUFFERS:
        if name not in state:
            warnings.warn(
                f"{where}: the pickle has no {name} buffer (not saved by EG3D's training loop); it "
                "defaults to zeros, which changes no image",
                stacklevel=2,
            )
            state[name] = generator.state_dict()[name]
    const_key = "backbone.synthesis.b4.const"
    # Mimic3D keeps the first block's constant as [1, C, 4, 4] (a leading plane axis); ours is [C, 4, 4].
    if const_key in state and state[const_key].ndim == 4 and state[const_key].shape[0] == 1:
        state[const_key] = state[const_key][0]
    assign_weights(generator, state, where)
    return generator


def official_discriminator(record: ModuleRecord, where: str = "D") -> nn.Module:
    """Our ``DualDiscriminator`` / ``PatchDiscriminator`` for an official DualDiscriminator /
    SingleDiscriminator record (Mimic3D's D^3D), with its weights."""
    fields = _discriminator_fields(record, where)
    if record.class_name == "DualDiscriminator":
        module: nn.Module = DualDiscriminator(DualDiscriminatorConfig(**fields))
    elif record.class_name == "SingleDiscriminator":
        # Our plain patch discriminator has no projection width or frozen layers to configure.
        for name, inert in (("cmap_dim", None), ("freeze_layers", 0), ("disc_c_noise", None)):
            if fields.pop(name, inert) != inert:
                raise ValueError(f"{where}: unsupported SingleDiscriminator option {name}")
        fields["patch_resolution"] = fields.pop("img_resolution")
        module = PatchDiscriminator(PatchDiscriminatorConfig(**fields))
    else:
        raise ValueError(
            f"{where}: cannot import discriminator class {record.class_name!r}; "
            "expected DualDiscriminator or SingleDiscriminator"
        )
    assign_weights(module, record.state_dict(), where)
    return module


def _discriminator_fields(record: ModuleRecord, where: str) -> dict[str, Any]:
    """Config fields from an official discriminator's constructor arguments.

    Unrecorded arguments keep the official defaults, which our configs share.
    """
    kwargs = dict(record.init_kwargs)
    nested = {
        key: dict(kwargs.pop(key, None) or {})
        for key in ("block_kwargs", "mapping_kwargs", "epilogue_kwargs")
    }
    top_level = (
        "c_dim",
        "img_resolution",
        "img_channels",
        "architecture",
        "channel_base",
        "channel_max",
        "num_fp16_res",
        "conv_clamp",
        "cmap_dim",
        "disc_c_noise",
    )
    fields = {name: kwargs.pop(name) for name in top_level if name in kwargs}
    kwargs.pop("sr_upsample_factor", None)  # SingleDiscriminator accepts and ignores it
    renames = {
        ("block_kwargs", "freeze_layers"): "freeze_layers",
        ("mapping_kwargs", "num_layers"): "mapping_layers",
        ("epilogue_kwargs", "mbstd_group_size"): "mbstd_group_size",
        ("epilogue_kwargs", "mbstd_num_channels"): "mbstd_num_channels",
    }
    for (group, theirs), ours in renames.items():
        if theirs in nested[group]:
            fields[ours] = nested[group].pop(theirs)
    leftovers = sorted(kwargs) + [f"{group}.{key}" for group, extra in nested.items() for key in extra]
    if leftovers:
        raise ValueError(f"{where}: unsupported {record.class_name} option(s) {leftovers}")
    for name in ("conv_clamp", "disc_c_noise"):
        if fields.get(name) is not None:
            fields[name] = float(fields[name])
    return fields


def generator_config_from_official(record: ModuleRecord, where: str = "G_ema") -> GeneratorConfig:
    """The ``GeneratorConfig`` that rebuilds an official EG3D / Mimic3D generator record.

    Reads the generator's constructor arguments, its ``rendering_kwargs`` and
    ``neural_rendering_resolution`` attributes, the class of its super-resolution module and the
    widths of a few weights. Raises ValueError naming the option when the pickle uses a variant
    we do not implement.
    """
    if record.class_name not in _GENERATOR_KINDS:
        raise ValueError(
            f"{where}: cannot import generator class {record.class_name!r}; "
            f"expected one of {sorted(_GENERATOR_KINDS)}"
        )
    kind = _GENERATOR_KINDS[record.class_name]
    kwargs, attributes = record.init_kwargs, record.attributes
    rendering_kwargs = attributes.get("rendering_kwargs", kwargs.get("rendering_kwargs"))
    if not isinstance(rendering_kwargs, dict):
        raise ValueError(f"{where}: has no rendering_kwargs dict")
    missing = [name for name in ("z_dim", "w_dim", "c_dim", "img_resolution") if name not in kwargs]
    if missing:
        raise ValueError(f"{where}: constructor arguments {missing} not recorded in the pickle")
    for name, inert in _MIMIC3D_INERT_OPTIONS.items():
        if kwargs.get(name, inert) != inert:
            raise ValueError(
                f"{where}: unsupported Mimic3D option {name}={kwargs[name]!r} (only {inert!r} is implemented)"
            )
    # EG3D's backbone is fixed at 256^2 x 96 channels; Mimic3D records both.
    triplane_resolution = int(kwargs.get("triplane_resolution", 256))
    aware3d_res = sorted(int(r) for r in kwargs.get("aware3d_res") or [])
    retidx = kwargs.get("retidx")
    if aware3d_res:
        expected = [
            2**i for i in range(int(math.log2(aware3d_res[0])), int(math.log2(triplane_resolution)) + 1)
        ]
        if aware3d_res != expected:
            raise ValueError(
                f"{where}: aware3d_res {aware3d_res} must hold every resolution from its first up to "
                f"the tri-plane's ({expected})"
            )
        if retidx is not None and list(retidx) != _STAGE2_RETIDX:
            raise ValueError(
                f"{where}: unsupported Mimic3D option retidx={list(retidx)!r} "
                f"(None for stage 1, {_STAGE2_RETIDX} for stage 2)"
            )
    elif retidx is not None:
        raise ValueError(f"{where}: retidx={retidx!r} without a 3D-aware stream is not supported")
    state = record.state_dict()
    if "decoder.net.2.weight" not in state:
        raise ValueError(f"{where}: not an EG3D/Mimic3D generator (no decoder.net.2.weight)")
    superresolution, sr_channels = _superresolution_fields(record, state, where)
    mapping_kwargs = dict(kwargs.get("mapping_kwargs") or {})
    try:
        return GeneratorConfig(
            z_dim=int(kwargs["z_dim"]),
            w_dim=int(kwargs["w_dim"]),
            c_dim=int(kwargs["c_dim"]),
            img_resolution=int(kwargs["img_resolution"]),
            triplane_resolution=triplane_resolution,
            triplane_channels=int(kwargs.get("triplane_channels", 96)),
            channel_base=int(kwargs.get("channel_base", 32768)),
            channel_max=int(kwargs.get("channel_max", 512)),
            mapping_layers=int(mapping_kwargs.get("num_layers", 8)),
            mapping_lr_multiplier=float(mapping_kwargs.get("lr_multiplier", 0.01)),
            conv_clamp=None if kwargs.get("conv_clamp") is None else float(kwargs["conv_clamp"]),
            neural_rendering_resolution=int(
                attributes.get("neural_rendering_resolution", kwargs.get("neural_rendering_resolution", 64))
            ),
            superresolution=superresolution,
            sr_channels=sr_channels,
            sr_antialias=bool(rendering_kwargs.get("sr_antialias", True)),
            sr_num_fp16_res=int(kwargs.get("sr_num_fp16_res", 0)),
            sr_noise_mode=str(rendering_kwargs.get("superresolution_noise_mode", "none")),
            decoder_output_dim=int(state["decoder.net.2.weight"].shape[0]) - 1,
            decoder_lr_multiplier=float(rendering_kwargs.get("decoder_lr_mul", 1.0)),
            rendering=RenderConfig.from_eg3d_kwargs(
                rendering_kwargs, convention="eg3d" if kind == "eg3d" else "xyz"
            ),
            aware3d=bool(aware3d_res),
            aware3d_min_resolution=aware3d_res[0] if aware3d_res else 4,
            sr3d=bool(aware3d_res) and retidx is not None,
            # The official mapping multiplies c by rendering_kwargs.get('c_scale', 0).
            c_scale=float(rendering_kwargs.get("c_scale", 0.0)),
            c_gen_conditioning_zero=bool(rendering_kwargs.get("c_gen_conditioning_zero", False)),
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: cannot rebuild the generator: {err}") from err


def _superresolution_fields(
    record: ModuleRecord, state: Mapping[str, Any], where: str
) -> tuple[str, tuple[int, int]]:
    """(kind, (block0, block1) widths) of the generator's 2D super-resolution."""
    sr = record.children.get("superresolution")
    if sr is None:
        return "none", GeneratorConfig.sr_channels
    if sr.class_name not in _SUPERRESOLUTION_KINDS:
        raise ValueError(
            f"{where}: unsupported super-resolution module {sr.class_name!r}; expected one of "
            f"{sorted(_SUPERRESOLUTION_KINDS)}"
        )
    widths = []
    for block in ("block0", "block1"):
        weight = state.get(f"superresolution.{block}.conv1.weight")
        if weight is None:
            raise ValueError(f"{where}: super-resolution {sr.class_name} has no {block}.conv1 weights")
        widths.append(int(weight.shape[0]))
    return _SUPERRESOLUTION_KINDS[sr.class_name], (widths[0], widths[1])
