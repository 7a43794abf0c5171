"""``mimic3d video``: MP4s of camera trajectories, latent interpolation and style mixing."""

from __future__ import annotations

import argparse
from pathlib import Path

from mimic3d.cli.arguments import checked, number, path, positive_int, positive_number
from mimic3d.cli.model_options import (
    add_model_arguments,
    add_resolution_argument,
    mapping_options,
    open_model,
)
from mimic3d.tools.parsing import parse_grid, parse_seeds
from mimic3d.tools.rendering import BRANCH_CHOICES
from mimic3d.tools.trajectories import TRAJECTORIES
from mimic3d.tools.video import render_video, video_name


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "video",
        description="Render an MP4 (H.264) of one or both branches along a camera trajectory. Each grid "
        "cell shows one latent: its branch images side by side, then with --depth their depth maps. "
        "--interpolate loops each cell through its share of the seeds; --style-seeds makes rows of "
        "seeds and columns of style seeds. Tri-planes of fixed latents are computed once; frames are "
        "rendered in ray chunks, so 512^2 3D-branch videos fit in CPU memory.",
    )
    add_model_arguments(parser, seeds="0")
    parser.add_argument(
        "--trajectory",
        default="orbit",
        choices=TRAJECTORIES,
        help=f"camera path: {', '.join(TRAJECTORIES)} (default: orbit)",
    )
    parser.add_argument("--frames", type=positive_int, default=120, help="number of frames (default: 120)")
    parser.add_argument("--fps", type=positive_number, default=30.0, help="frames per second (default: 30)")
    parser.add_argument(
        "--grid",
        type=checked(parse_grid),
        default=None,
        help="cells WxH (default: all seeds in one row; 1x1 with --interpolate)",
    )
    parser.add_argument("--interpolate", action="store_true", help="loop through the seeds as keyframes")
    parser.add_argument(
        "--branch", default="2d", choices=BRANCH_CHOICES, help="2d, 3d or both side by side (default: 2d)"
    )
    parser.add_argument("--depth", action="store_true", help="add each branch's depth map")
    parser.add_argument(
        "--yaw-range", type=number(), default=None, help="override the trajectory's yaw range"
    )
    parser.add_argument(
        "--pitch-range", type=number(), default=None, help="override the trajectory's pitch range"
    )
    parser.add_argument(
        "--style-seeds",
        type=checked(parse_seeds),
        default=None,
        help="style-mixing video: columns of these style seeds",
    )
    parser.add_argument(
        "--mix-layers",
        default=None,
        help="ws layers taken from the style seed: '7-', '0-3', ... (default: the second half, 7- for 14 ws)",
    )
    add_resolution_argument(parser)
    parser.add_argument(
        "--sample-mult",
        type=positive_number,
        default=2.0,
        help="multiply the depth samples per ray (default: 2, as EG3D)",
    )
    parser.add_argument(
        "--chunk-rays", type=positive_int, default=None, help="rays per render chunk (memory bound)"
    )
    parser.add_argument(
        "--output",
        type=path,
        default=None,
        help="MP4 path (default: OUTDIR/<trajectory>_seeds<SEEDS>.mp4, with _interp after the trajectory "
        "for --interpolate and _style<STYLE-SEEDS> at the end for --style-seeds)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    output = args.output or Path(args.outdir) / video_name(
        args.trajectory, args.seeds, args.interpolate, args.style_seeds
    )
    G = open_model(args)
    summary = render_video(
        G,
        output,
        args.seeds,
        trajectory=args.trajectory,
        num_frames=args.frames,
        fps=args.fps,
        grid=args.grid,
        interpolate=args.interpolate,
        branch=args.branch,
        depth=args.depth,
        camera=args.camera,
        yaw_range=args.yaw_range,
        pitch_range=args.pitch_range,
        resolution=args.resolution,
        style_seeds=args.style_seeds,
        mix_layers=args.mix_layers,
        depth_multiplier=args.sample_mult,
        chunk_rays=args.chunk_rays,
        **mapping_options(args),
    )
    print(
        f"{summary.path}: {summary.frames} frames of {summary.width}x{summary.height} at {summary.fps:g} fps"
    )
    return 0
