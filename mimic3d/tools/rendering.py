"""Loading a generator for the tools and rendering its branches deterministically, in bounded memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import Tensor

from mimic3d.checkpoints.load import load
from mimic3d.models.generator import BRANCHES, TriplaneGenerator
from mimic3d.models.student import NO_3D, StudentGenerator
from mimic3d.models.triplanes import Triplanes
from mimic3d.render import TriplaneRenderer
from mimic3d.tools.parsing import check_positive_int

# What the tools render: a tri-plane generator or a distilled student (same mapping/synthesis API).
Generator = TriplaneGenerator | StudentGenerator
# Sizes of the images the tools render (the 3D branch renders any size in ray chunks; the bound keeps
# a mistyped size from allocating gigabytes). Normal maps need at least 2x2 pixels.
MIN_RENDER_RESOLUTION = 2
MAX_RENDER_RESOLUTION = 4096


def check_render_resolution(resolution: int | None, name: str = "resolution") -> int | None:
    """None (the model's default) or an int in [MIN_RENDER_RESOLUTION, MAX_RENDER_RESOLUTION]."""
    if resolution is None:
        return None
    return check_positive_int(resolution, name, MIN_RENDER_RESOLUTION, MAX_RENDER_RESOLUTION)


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """The EMA generator of a checkpoint (portable or official pickle), in eval mode: a tri-plane
    generator or a distilled student."""
    G = load(path, device)
    if not isinstance(G, TriplaneGenerator | StudentGenerator):
        raise ValueError(
            f"{path}: holds a {type(G).__name__}, expected a tri-plane generator or a distilled student "
            "(give the checkpoint folder, or its G_ema network folder)"
        )
    return G


def require_3d(G: Generator, source: str | os.PathLike) -> TriplaneGenerator:
    """``G`` if it has a 3D representation (tri-planes, density); ValueError naming ``source`` if not."""
    if isinstance(G, StudentGenerator):
        teacher = f" ({G.config.teacher_source})" if G.config.teacher_source else ""
        raise ValueError(f"{source}: {NO_3D}{teacher}")
    return G


BRANCH_CHOICES = (*BRANCHES, "both")


def check_branches(branch: str, G: Generator | None = None) -> tuple[str, ...]:
    """'2d' | '3d' | 'both' -> the branches to render ('both': every branch ``G`` has; a student's
    only branch is '2d')."""
    if branch == "both":
        return tuple(getattr(G, "branches", BRANCHES))
    if branch not in BRANCHES:
        raise ValueError(f"branch: expected '2d', '3d' or 'both', got {branch!r}")
    if isinstance(G, StudentGenerator) and branch not in G.branches:
        raise ValueError(f"branch: {branch!r} is not available, {NO_3D} (its branch is '2d')")
    return (branch,)


def shared_planes(G: Generator, ws: Tensor, with_3d: bool = True) -> Triplanes | None:
    """Tri-planes of ws [N, num_ws, w_dim] to render many views from (``with_3d``: with the 3D
    branch's residual planes), or None for a student, which has none and renders each view whole."""
    if isinstance(G, StudentGenerator):
        return None
    with torch.no_grad():
        return G.planes(ws, noise_mode="const", residual=None if with_3d else False)


@contextmanager
def render_settings(
    G: Generator, depth_multiplier: float = 1.0, chunk_rays: int | None = None
) -> Iterator[Generator]:
    """Temporarily render ``G`` deterministically (no jitter), with ``depth_multiplier`` times the depth
    samples (EG3D's video scripts use 2) and ``chunk_rays`` rays per chunk (the memory bound).
    A student renders no rays: it is yielded unchanged."""
    if not depth_multiplier > 0:
        raise ValueError(f"depth_multiplier: expected a positive number, got {depth_multiplier}")
    if isinstance(G, StudentGenerator):
        if chunk_rays is not None:
            check_positive_int(chunk_rays, "chunk_rays")
        yield G
        return
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
    G: Generator,
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
