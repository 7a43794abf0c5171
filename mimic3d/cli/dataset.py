"""``mimic3d dataset check|build|synth``: validate, convert and synthesise EG3D-format datasets."""

from __future__ import annotations

import argparse
import os

from mimic3d.cli.arguments import integer, number, path, positive_int, positive_number
from mimic3d.data.converters import CONVENTIONS
from mimic3d.data.images import BACKGROUNDS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dataset",
        description="EG3D-format datasets: a zip or folder of images plus dataset.json "
        "with 25-float cameras.",
    )
    commands = parser.add_subparsers(dest="dataset_command", metavar="<check|build|synth>")
    parser.set_defaults(func=lambda args: parser.print_help() or 0)

    check = commands.add_parser(
        "check",
        help="validate a dataset, print a summary and plot its cameras",
        description="Check every image, camera label and depth map; every problem is printed with its "
        "file name. Exit status 1 when problems are found.",
    )
    check.add_argument("path", type=path, help="dataset .zip or folder")
    check.add_argument(
        "--plot",
        type=path,
        default=None,
        help="camera-distribution PNG to write (default: <dataset>_cameras.png beside it)",
    )
    check.add_argument("--no-plot", action="store_true", help="do not write the camera plot")
    check.set_defaults(func=run_check)

    build = commands.add_parser(
        "build",
        help="photos + camera file -> EG3D-format dataset",
        description="Centre-crop, Lanczos-resize and alpha-composite images, convert their cameras to "
        "EG3D's convention (intrinsics adjusted to the crop) and write an EG3D-format dataset.",
    )
    build.add_argument("src", type=path, help="folder (or zip) of images, searched recursively")
    build.add_argument("dest", type=path, help="output .zip (or folder)")
    build.add_argument(
        "--resolution", type=positive_int, required=True, help="output resolution (power of two)"
    )
    build.add_argument(
        "--cameras",
        type=path,
        default=None,
        help="camera file (default: dataset.json or transforms.json inside SRC)",
    )
    build.add_argument(
        "--convention",
        choices=CONVENTIONS,
        default=None,
        help="camera file convention (default: eg3d for dataset.json, blender for transforms.json)",
    )
    build.add_argument(
        "--background",
        choices=sorted(BACKGROUNDS),
        default="white",
        help="colour under transparent pixels (default: white)",
    )
    build.add_argument(
        "--mirror", action="store_true", help="also write x-flipped copies with mirrored cameras"
    )
    build.add_argument(
        "--preset",
        choices=["ffhq", "afhq", "shapenet"],
        default="ffhq",
        help="radius, pivot and focal for --convention angles (default: ffhq)",
    )
    build.add_argument(
        "--radius", type=positive_number, default=None, help="camera radius for angles (overrides preset)"
    )
    build.add_argument(
        "--pivot",
        type=number(),
        nargs=3,
        default=None,
        metavar=("X", "Y", "Z"),
        help="look-at point for angles (overrides preset)",
    )
    build.add_argument(
        "--focal", type=positive_number, default=None, help="normalised focal for angles (overrides preset)"
    )
    build.add_argument(
        "--world-up",
        choices=["y", "z"],
        default="y",
        help="up axis of the camera file's world; z rotates Blender scenes to y-up (default: y)",
    )
    build.add_argument("--overwrite", action="store_true", help="replace an existing DEST zip")
    build.set_defaults(func=run_build)

    synth = commands.add_parser(
        "synth",
        help="render a procedural 3D dataset (heads or cars) with depth",
        description="Render procedurally generated 3D objects with real cameras into an EG3D-format "
        "dataset; every sample also stores its ground-truth depth map.",
    )
    synth.add_argument("dest", type=path, help="output .zip (or folder)")
    synth.add_argument(
        "--kind", choices=["heads", "cars"], default="heads", help="object category (default: heads)"
    )
    synth.add_argument("--num", type=positive_int, default=2000, help="number of images (default: 2000)")
    synth.add_argument("--resolution", type=positive_int, default=64, help="image resolution (default: 64)")
    synth.add_argument(
        "--seed", type=integer(0), default=0, help="random seed; same seed, same dataset (default: 0)"
    )
    synth.add_argument(
        "--background",
        choices=["scene", *BACKGROUNDS],  # synth.generate.SYNTH_BACKGROUNDS, without importing torch
        default="scene",
        help="behind the objects: the kind's own scene (heads: random gradients, cars: white), or plain "
        "white or black (default: scene)",
    )
    for axis, defaults in (("yaw", "0.3 and pi"), ("pitch", "0.2 and pi/4")):
        synth.add_argument(
            f"--{axis}-std",
            type=number(0),
            default=None,
            metavar="RADIANS",
            help=f"camera {axis} spread: heads' Gaussian standard deviation, cars' uniform half-range "
            f"(defaults {defaults}); the same seed keeps the same objects",
        )
    synth.add_argument(
        "--batch-size", type=positive_int, default=32, help="objects rendered together (default: 32)"
    )
    synth.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="rendering processes (default: one per available CPU core, at most 8)",
    )
    synth.add_argument(
        "--preview", type=path, default=None, help="also write a PNG grid of the first 16 samples"
    )
    synth.add_argument("--overwrite", action="store_true", help="replace an existing DEST zip")
    synth.set_defaults(func=run_synth)


def run_check(args: argparse.Namespace) -> int:
    from mimic3d.data.check import check_dataset
    from mimic3d.data.plot import plot_cameras

    report = check_dataset(args.path, progress=True)
    for problem in report.problems:
        print(f"problem: {problem}")
    print(report.summary())
    if not args.no_plot and report.labels is not None and len(report.labels):
        plot = args.plot or os.path.splitext(os.path.normpath(args.path))[0] + "_cameras.png"
        plot_cameras(
            report.labels,
            plot,
            title=f"{os.path.basename(os.path.normpath(args.path))}: {len(report.labels)} cameras",
        )
        print(f"camera plot: {plot}")
    return 0 if report.ok else 1


def run_build(args: argparse.Namespace) -> int:
    from mimic3d.data.build import build_dataset

    count = build_dataset(
        args.src,
        args.dest,
        args.resolution,
        cameras=args.cameras,
        convention=args.convention,
        background=args.background,
        mirror=args.mirror,
        preset=args.preset,
        radius=args.radius,
        pivot=tuple(args.pivot) if args.pivot else None,
        focal=args.focal,
        world_up=args.world_up,
        overwrite=args.overwrite,
    )
    print(f"wrote {count * (2 if args.mirror else 1)} images to {args.dest}")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from mimic3d.data.synth import synth_dataset

    stats = synth_dataset(
        args.dest,
        args.kind,
        args.num,
        args.resolution,
        seed=args.seed,
        batch_size=args.batch_size,
        workers=args.workers,
        overwrite=args.overwrite,
        preview=args.preview,
        background=args.background,
        yaw_std=args.yaw_std,
        pitch_std=args.pitch_std,
    )
    print(
        f"wrote {stats.count} {args.kind} at {args.resolution}x{args.resolution} to {args.dest} "
        f"in {stats.seconds:.1f} s ({stats.images_per_second:.1f} images/s)"
    )
    if args.preview:
        print(f"preview: {args.preview}")
    return 0
