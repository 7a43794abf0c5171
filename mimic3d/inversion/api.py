"""``mimic3d.invert``: images of one subject (with or without cameras) -> latent, tuned generator, files.

    result = mimic3d.invert("me.png", "model.safetensors", method="pti", steps=500, outdir="out/me")
    result.ws, result.cameras, result.generator, result.psnr

``images``: image files or folders (aligned squares; ``crop=True`` takes the centred square), a tensor
[V, 3, H, W] in [-1, 1], or ``Targets``. ``cameras``: a camera file (``dataset.json`` and the other
conventions of ``mimic3d dataset build``), labels [V, 25], or None to estimate them. ``network``:
anything ``mimic3d.load`` reads, or a generator module. Keyword settings are ``InversionConfig``
fields (method, steps, pti_steps, branch, ...).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mimic3d.camera import CameraPreset
from mimic3d.checkpoints.load import checkpoint_metadata, load
from mimic3d.inversion.cameras import model_camera
from mimic3d.inversion.multiview import InversionConfig, InversionResult, invert_targets
from mimic3d.inversion.outputs import OutputOptions, write_outputs
from mimic3d.inversion.targets import load_targets
from mimic3d.inversion.views import Targets
from mimic3d.losses.lpips import LPIPS, build_lpips
from mimic3d.runtime import resolve_device

log = logging.getLogger(__name__)

ImagesLike = str | os.PathLike | Sequence[str | os.PathLike] | Tensor | Targets


def open_network(
    network: str | os.PathLike | nn.Module, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict[str, Any], str]:
    """(generator on ``device``, its checkpoint metadata, a name for records) of a checkpoint or module."""
    if isinstance(network, nn.Module):
        return network.to(device).eval(), {}, type(network).__name__
    G = load(network, device)
    metadata = checkpoint_metadata(network)
    return G, metadata, str(network)


def resolve_config(config: InversionConfig | None, settings: dict[str, Any]) -> InversionConfig:
    """``config`` (default: the defaults) with the keyword ``settings`` replaced."""
    config = config or InversionConfig()
    fields = {f.name for f in dataclasses.fields(InversionConfig)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise ValueError(f"invert: unknown setting(s) {unknown}; InversionConfig has {sorted(fields)}")
    return dataclasses.replace(config, **settings) if settings else config


def build_targets(
    images: ImagesLike,
    resolution: int,
    cameras: str | os.PathLike | Tensor | None,
    crop: bool,
    convention: str | None,
    background: str,
) -> Targets:
    """Targets at the model's resolution from any ``images`` / ``cameras`` form ``invert`` accepts."""
    if isinstance(images, Targets):
        targets = images
    elif isinstance(images, Tensor):
        labels = cameras.float() if isinstance(cameras, Tensor) else None
        targets = Targets(images.float(), labels)
    else:
        items = [images] if isinstance(images, str | os.PathLike) else list(images)
        camera_file = None if isinstance(cameras, Tensor) else cameras
        targets = load_targets(items, resolution, camera_file, convention, crop, background)
        if isinstance(cameras, Tensor):
            targets = Targets(targets.images, cameras.float(), targets.names)
    if isinstance(cameras, str | os.PathLike) and targets.cameras is None:
        raise ValueError("cameras: a camera file goes with image files, not with a tensor of images")
    if targets.images.shape[-2:] != (resolution, resolution):
        raise ValueError(
            f"images: expected {resolution}x{resolution} images (the model's resolution), got "
            f"{list(targets.images.shape[-2:])}"
        )
    return targets


def make_lpips(lpips: str | LPIPS | None, weights_dir: str | os.PathLike | None, seed: int) -> LPIPS | None:
    if lpips is None or isinstance(lpips, LPIPS):
        return lpips
    return build_lpips(lpips, weights_dir, seed=seed)


def invert(
    images: ImagesLike,
    network: str | os.PathLike | nn.Module,
    cameras: str | os.PathLike | Tensor | None = None,
    *,
    outdir: str | os.PathLike | None = None,
    crop: bool = False,
    convention: str | None = None,
    camera: str | CameraPreset | None = None,
    lpips: str | LPIPS | None = "pretrained",
    weights_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    background: str = "white",
    config: InversionConfig | None = None,
    outputs: OutputOptions | None = None,
    progress: bool = True,
    **settings: Any,
) -> InversionResult:
    """Invert images of one subject into a generator; see the module docstring.

    ``camera``: a preset name or ``CameraPreset`` replacing the checkpoint's camera statistics;
    ``lpips``: "pretrained" (LPIPS-VGG weights from ``weights_dir`` or the cache, downloaded once),
    "untrained" (tests only), an ``LPIPS`` module, or None with ``lpips_weight=0``; ``outdir``: write
    the files of ``mimic3d.inversion.outputs`` there. Returns the ``InversionResult``.
    """
    config = resolve_config(config, settings)
    device = resolve_device(device)
    G, metadata, source = open_network(network, device)
    targets = build_targets(images, G.img_resolution, cameras, crop, convention, background)
    preset, camera_source = model_camera(G, metadata, camera)
    if camera is None and "camera" not in metadata:
        log.warning("invert: %s", camera_source)
    perceptual = make_lpips(lpips, weights_dir, config.seed) if config.lpips_weight > 0 else None
    if perceptual is not None:
        perceptual = perceptual.to(device)
    result = invert_targets(G, targets, preset, config, perceptual, camera_source, progress)
    if outdir is not None:
        files, notes = write_outputs(result, targets, preset, outdir, source, metadata, outputs, progress)
        result.files, result.notes = files, notes
    return result
