"""The public API's input checks and latent mapping, shared by the tri-plane generator and its
distilled students (``S.mapping`` is the teacher's): z, c and class labels are checked at the
boundary (shape, dtype, batch, finite camera values) and cast to the model's device and dtype, so
a wrong input fails with one line naming it instead of deep inside the renderer."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mimic3d.models.config import GeneratorConfig
from mimic3d.runtime import full_precision, on_host


def checked_input(x: Any, name: str, shape: list[int], what: str, reference: Tensor) -> Tensor:
    """``x`` checked to be a floating-point tensor [N, *shape], cast to the device and dtype of a
    model's ``reference`` weight."""
    if not isinstance(x, Tensor) or x.ndim != 1 + len(shape) or list(x.shape[1:]) != shape:
        got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected {what} [N, {', '.join(map(str, shape))}], got {got}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    return x.to(device=reference.device, dtype=reference.dtype)


def checked_camera(c: Any, c_dim: int, batch_size: int, reference: Tensor) -> Tensor:
    """Camera labels c [N, c_dim] checked (shape, batch, finite values) and cast like ``checked_input``."""
    given = c
    c = checked_input(c, "c", [c_dim], "camera labels", reference)
    if c.shape[0] != batch_size:
        raise ValueError(f"c: batch size {c.shape[0]} differs from the latents' {batch_size}")
    # Values are checked where that costs no GPU synchronisation (``on_host``): labels given on
    # the CPU; labels already on a GPU come from our own samplers.
    if on_host(given) and not bool(torch.isfinite(given).all()):
        raise ValueError(
            "c: camera labels hold NaN or infinite values (mimic3d.camera.validate_label names them)"
        )
    return c


def map_latents(
    mapping: nn.Module,
    config: GeneratorConfig,
    z: Tensor,
    c: Tensor,
    truncation_psi: float,
    truncation_cutoff: int | None,
    update_emas: bool,
    labels: Tensor | None,
    reference: Tensor,
) -> Tensor:
    """``TriplaneGenerator.mapping`` of a generator configured by ``config`` whose mapping network is
    ``mapping`` (also the distilled students', which keep their teacher's); inputs are cast like
    ``reference``."""
    z = checked_input(z, "z", [config.z_dim], "latents", reference)
    c = checked_camera(c, config.c_dim, z.shape[0], reference)
    parts = []
    if config.pose_conditioning:
        if config.c_gen_conditioning_zero:
            c = torch.zeros_like(c)
        parts.append(full_precision(c) * config.c_scale)
    if config.class_dim:
        labels = checked_input(labels, "labels", [config.class_dim], "one-hot class labels", reference)
        if labels.shape[0] != c.shape[0]:
            n, m = labels.shape[0], c.shape[0]
            raise ValueError(f"labels: batch size {n} differs from the latents' {m}")
        parts.append(full_precision(labels))
    elif labels is not None:
        raise ValueError("labels: this model is not class-conditional (class_dim is 0)")
    with torch.autocast(z.device.type, enabled=False):
        return mapping(
            full_precision(z),
            torch.cat(parts, 1) if parts else None,
            truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
            update_emas=update_emas,
        )
