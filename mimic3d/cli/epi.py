"""``mimic3d epi``: spatio-temporal texture (EPI) images of the 2D and 3D branch side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from mimic3d.cli.arguments import integer, number, positive_int, positive_number
from mimic3d.cli.model_options import (
    add_model_arguments,
    add_resolution_argument,
    mapping_options,
    open_model,
)
from mimic3d.tools.epi import epi_picture, seed_epis
from mimic3d.tools.imaging import save_png
from mimic3d.tools.latents import seed_ws
from mimic3d.tools.parsing import parse_seeds
from mimic3d.tools.rendering import BRANCH_CHOICES, check_branches, render_settings
from mimic3d.tools.trajectories import TRAJECTORIES, trajectory_labels
from mimic3d.tools.viewpoints import camera_preset_for


def image_row(text: str) -> int | float:
    """``--row``: an integer is a pixel index (16), a decimal a fraction of the height (0.5)."""
    try:
        return integer(0)(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        return number(0.0, 1.0)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a pixel index (an integer >= 0) or a fraction of the height in [0, 1], got {text!r}"
        ) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "epi",
        description="Render one image row for every camera of a sweep and stack the rows over time: "
        "straight, smooth strips mean a 3D-consistent generator, twisted ones view-dependent "
        "hallucination. Writes outdir/epi_seedNNNN.png (time runs down; branches left to right).",
    )
    add_model_arguments(parser, seeds="0")
    parser.add_argument(
        "--branch", default="both", choices=BRANCH_CHOICES, help="2d, 3d or both (default: both)"
    )
    parser.add_argument(
        "--frames", type=positive_int, default=128, help="cameras in the sweep = EPI height (default: 128)"
    )
    parser.add_argument(
        "--row",
        type=image_row,
        default=0.5,
        help="image row: a fraction of the height (0.5) or a pixel index (16) (default: 0.5)",
    )
    parser.add_argument(
        "--trajectory",
        default="yaw-sweep",
        choices=TRAJECTORIES,
        help=f"camera path: {', '.join(TRAJECTORIES)} (default: yaw-sweep)",
    )
    parser.add_argument("--yaw-range", type=number(), default=None, help="override the sweep's yaw range")
    add_resolution_argument(parser)
    parser.add_argument(
        "--sample-mult",
        type=positive_number,
        default=1.0,
        help="multiply the depth samples per ray (default: 1)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    seeds = parse_seeds(args.seeds)
    check_branches(args.branch)
    G = open_model(args)
    branches = check_branches(args.branch, G)
    preset = camera_preset_for(G, args.camera)
    labels = trajectory_labels(
        args.trajectory, args.frames, preset, args.yaw_range, device=next(G.parameters()).device
    )
    with render_settings(G, args.sample_mult):
        for seed in seeds:
            ws = seed_ws(G, [seed], preset, **mapping_options(args))
            epis = seed_epis(G, ws, labels, branches, args.row, args.resolution, progress=True)
            path = save_png(Path(args.outdir) / f"epi_seed{seed:04d}.png", epi_picture(list(epis.values())))
            print(f"{path}: {' | '.join(branches)} branch, {args.frames} frames")
    return 0
