"""``mimic3d planes``: pictures of the tri-planes' feature norms (coarse and residual)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mimic3d.cli.arguments import integer
from mimic3d.cli.model_options import add_model_arguments, mapping_options, open_model
from mimic3d.tools.imaging import save_png
from mimic3d.tools.latents import seed_ws
from mimic3d.tools.parsing import parse_seeds
from mimic3d.tools.planes import MAX_TILE_SIZE, plane_names, plane_norm_picture
from mimic3d.tools.rendering import require_3d
from mimic3d.tools.viewpoints import camera_preset_for


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "planes",
        description="Write outdir/planes_seedNNNN.png: per-texel feature norms of the coarse tri-plane "
        "(top row) and, for Mimic3D stage-2 models, the residual tri-plane (bottom row), one column "
        "per plane, height axis up, viridis colours.",
    )
    add_model_arguments(parser, seeds="0")
    parser.add_argument(
        "--size",
        type=integer(1, MAX_TILE_SIZE),
        default=None,
        help="tile size in pixels (default: the largest plane's resolution)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    seeds = parse_seeds(args.seeds)
    G = require_3d(open_model(args), args.network)
    preset = camera_preset_for(G, args.camera)
    names = ", ".join(plane_names(G.config.rendering.convention))
    for seed in seeds:
        ws = seed_ws(G, [seed], preset, **mapping_options(args))
        with torch.no_grad():
            planes = G.planes(ws, noise_mode="const")
        path = save_png(
            Path(args.outdir) / f"planes_seed{seed:04d}.png", plane_norm_picture(planes, args.size)
        )
        rows = "coarse" + (" / residual" if planes.residual is not None else "")
        print(f"{path}: rows {rows}; columns {names}")
    return 0
