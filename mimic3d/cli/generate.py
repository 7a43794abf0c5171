"""``mimic3d generate``: multi-view sample grids with depth and normal maps, one PNG per seed."""

from __future__ import annotations

import argparse

from mimic3d.cli.arguments import checked, number, positive_number
from mimic3d.cli.model_options import (
    add_model_arguments,
    add_resolution_argument,
    mapping_options,
    open_model,
)
from mimic3d.tools.generate import DEFAULT_PITCH_OFFSET, generate_sample_grids, save_sample_grids
from mimic3d.tools.parsing import parse_floats
from mimic3d.tools.rendering import BRANCH_CHOICES, render_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        description="For each seed, render views around the frontal camera and write outdir/seedNNNN.png: "
        "one column per view; per branch a row of images, of depth maps (near = white) and of "
        "camera-space normal maps.",
    )
    add_model_arguments(parser)
    parser.add_argument("--branch", default="2d", choices=BRANCH_CHOICES, help="2d, 3d or both (default: 2d)")
    parser.add_argument(
        "--views",
        type=checked(lambda text: parse_floats(text, "views")),
        default="0.4,0,-0.4",
        help="yaw offsets from frontal in radians (default: 0.4,0,-0.4)",
    )
    parser.add_argument(
        "--pitch",
        type=number(),
        default=DEFAULT_PITCH_OFFSET,
        help=f"pitch offset in radians, negative = from above (default: {DEFAULT_PITCH_OFFSET})",
    )
    add_resolution_argument(parser)
    parser.add_argument("--no-depth", action="store_true", help="leave out the depth rows")
    parser.add_argument("--no-normals", action="store_true", help="leave out the normal rows")
    parser.add_argument(
        "--sample-mult",
        type=positive_number,
        default=1.0,
        help="multiply the depth samples per ray (default: 1)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    G = open_model(args)
    with render_settings(G, args.sample_mult):
        grids = generate_sample_grids(
            G,
            args.seeds,
            branch=args.branch,
            yaw_offsets=args.views,
            pitch_offset=args.pitch,
            camera=args.camera,
            resolution=args.resolution,
            depth=not args.no_depth,
            normals=not args.no_normals,
            **mapping_options(args),
        )
    for path in save_sample_grids(grids, args.outdir):
        print(path)
    return 0
