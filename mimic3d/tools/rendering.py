"""Loading a generator for the tools and rendering its branches deterministically, in bounded memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import Tensor

from mimic3d.checkpoints.load import load
from mimic3d.models.generator import BRANCHES, TriplaneGenerator, Triplanes
from mimic3d.render import TriplaneRenderer
from mimic3d.tools.parsing import check_positive_int

# Sizes of the images the tools render (the 3D branch renders any size in ray chunks; the bound keeps
# a mistyped size from allocating gigabytes). Normal maps need at least 2x2 pixels.
MIN_RENDER_RESOLUTION = 2
MAX_RENDER_RESOLUTION = 4096


def check_render_resolution(resolution: int | None, name: str = "resolution") -> int | None:
    """None (the model's default) or an int in [MIN_RENDER_RESOLUTION, MAX_RENDER_RESOLUTION]."""
    if resolution is None:
        return None
    return check_positive_int(resolution, name, MIN_RENDER_RESOLUTION, MAX_RENDER_RESOLUTION)


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> TriplaneGenerator:
    """The EMA tri-plane generator of a checkpoint (portable or official pickle), in eval mode."""
    G = load(path, device)
    if not isinstance(G, TriplaneGenerator):
        raise ValueError(
            f"{path}: holds a {type(G).__name__}, expected a tri-plane generator (give the checkpoint "
            "folder, or its G_ema network folder)"
        )
    return G


BRANCH_CHOICES = (*BRANCHES, "both")


def check_branches(branch: str) -> tuple[str, ...]:
    """'2d' | '3d' | 'both' -> the branches to render."""
    if branch == "both":
        return BRANCHES
    if branch not in BRANCHES:
        raise ValueError(f"branch: expected '2d', '3d' or 'both', got {branch!r}")
    return (branch,)


@contextmanager
def render_settings(
    G: TriplaneGenerator, depth_multiplier: float = 1.0, chunk_rays: int | None = None
) -> Iterator[TriplaneGenerator]:
    """Temporarily render ``G`` deterministically (no jitter), with ``depth_multiplier`` times the depth
    samples (EG3D's video scripts use 2) and ``chunk_rays`` rays per chunk (the memory bound)."""
    if not depth_multiplier > 0:
        raise ValueError(f"depth_multiplier: expected a positive number, got {depth_multiplier}")
    original = G.renderer
    config = original.config
    changes: dict = dict(
        perturb=False,
        num_coarse=max(4, round(config.num_coarse * depth_multiplier)),
        num_importance=round(config.num_importance * depth_multiplier),
    )
    if chunk_rays is not None:
        changes["chunk_rays"] = check_positive_int(chunk_rays, "chunk_rays")
    G.renderer = TriplaneRenderer(replace(config, **changes))
    try:
        yield G
    finally:
        G.renderer = original


def render_branch(
    G: TriplaneGenerator,
    ws: Tensor,
    c: Tensor,
    branch: str,
    planes: Triplanes | None = None,
    resolution: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Image [N, 3, H, W] in [-1, 1] and depth [N, 1, h, w] of one branch for ws [N, num_ws, w_dim] and
    cameras c [N, 25]. ``planes`` (from ``G.planes(ws)``) skips the backbone; ``resolution`` sets the
    3D branch's render size (default: the image resolution) and is ignored by the 2D branch."""
    with torch.no_grad():
        out = G.synthesis(
            ws,
            c,
            branch=branch,
            noise_mode="const",
            perturb=False,
            planes=planes,
            neural_rendering_resolution=resolution if branch == "3d" else None,
        )
    return out["image"], out["image_depth"]
