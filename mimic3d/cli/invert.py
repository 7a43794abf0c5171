"""``mimic3d invert``: images of one subject -> latent, tuned generator, before/after picture, video, mesh."""

from __future__ import annotations

import argparse
import math

from mimic3d.camera import PRESETS
from mimic3d.cli.arguments import (
    CHECKPOINT_HELP,
    non_negative_int,
    number,
    path,
    positive_int,
    positive_number,
)
from mimic3d.data.converters import CONVENTIONS
from mimic3d.inversion import METHODS, InversionConfig, OutputOptions, invert
from mimic3d.inversion.latents import SPACES
from mimic3d.models.generator import BRANCHES
from mimic3d.runtime import DEVICES
from mimic3d.tools.mesh import EG3D_LEVEL, MESH_RESOLUTIONS
from mimic3d.tools.trajectories import TRAJECTORIES

_DEFAULTS = InversionConfig()
# Names InversionConfig and OutputOptions use in their errors -> the flags that set them.
PARAMETER_FLAGS = {
    "pivot": "--pivot",
    "locality_weight": "--locality-weight",
    "mesh_resolution": "--mesh-resolution",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "invert",
        description="Invert aligned images of one subject (several views share one latent) into a "
        "generator: optimise a W or W+ latent with LPIPS + L2 (StyleGAN2 projector's ramps), then with "
        "--method pti fine-tune the generator around it (pivotal tuning with PTI's locality "
        "regulariser). Without --cameras each view's camera is found by a coarse search over the "
        "model's training-set camera statistics and optimised jointly. Writes into OUTDIR the latent "
        "(latent.npz), the generator that renders it (a .safetensors checkpoint every tool reads), "
        "before_after.png, a video, mesh.ply and inversion.json. Images must be aligned as the "
        "training set was (docs/inversion.md).",
    )
    parser.add_argument(
        "images", nargs="+", type=path, metavar="IMAGES", help="image files or folders of images"
    )
    parser.add_argument("--network", required=True, type=path, help=CHECKPOINT_HELP)
    parser.add_argument(
        "--cameras", type=path, default=None, help="camera file (default: estimate the cameras)"
    )
    parser.add_argument(
        "--convention",
        default=None,
        choices=CONVENTIONS,
        help="camera file convention (default: from its name; dataset.json = eg3d)",
    )
    parser.add_argument(
        "--method", default=_DEFAULTS.method, choices=METHODS, help="w, w+ or pti (default: pti)"
    )
    parser.add_argument(
        "--pivot", default=_DEFAULTS.pivot, choices=SPACES, help="PTI pivot space (default: w)"
    )
    parser.add_argument(
        "--steps",
        type=non_negative_int,
        default=_DEFAULTS.steps,
        help=f"latent steps (default: {_DEFAULTS.steps})",
    )
    parser.add_argument(
        "--pti-steps",
        type=non_negative_int,
        default=_DEFAULTS.pti_steps,
        help=f"tuning steps (default: {_DEFAULTS.pti_steps})",
    )
    parser.add_argument(
        "--branch", default=None, choices=BRANCHES, help="2d or 3d (Mimic3D; default: the model's 2D branch)"
    )
    parser.add_argument("--crop", action="store_true", help="centre-crop non-square images to a square")
    parser.add_argument(
        "--camera",
        default=None,
        choices=sorted(PRESETS),
        metavar="PRESET",
        help=f"camera preset {sorted(PRESETS)} replacing the checkpoint's camera statistics",
    )
    parser.add_argument("--lr", type=positive_number, default=_DEFAULTS.lr, help="latent learning rate (0.1)")
    parser.add_argument(
        "--pti-lr", type=positive_number, default=_DEFAULTS.pti_lr, help="tuning learning rate (3e-4)"
    )
    parser.add_argument(
        "--locality-weight",
        type=number(minimum=0.0),
        default=_DEFAULTS.locality_weight,
        help="PTI locality regulariser weight, 0 = off (default: 1)",
    )
    parser.add_argument(
        "--lpips",
        default="pretrained",
        choices=("pretrained", "untrained"),
        help="pretrained (LPIPS-VGG weights, downloaded once) or untrained (smoke tests only)",
    )
    parser.add_argument(
        "--weights-dir", type=path, default=None, help="folder holding the LPIPS weight files"
    )
    parser.add_argument(
        "--trajectory", default=None, choices=TRAJECTORIES, help="video camera path (default: by model)"
    )
    parser.add_argument("--frames", type=positive_int, default=60, help="video frames (default: 60)")
    parser.add_argument("--no-video", action="store_true", help="do not render the video")
    parser.add_argument("--no-mesh", action="store_true", help="do not extract the mesh")
    parser.add_argument(
        "--mesh-resolution",
        type=int,
        default=128,
        choices=MESH_RESOLUTIONS,
        help="mesh grid points per axis (default: 128)",
    )
    parser.add_argument(
        "--mesh-level",
        type=number(),
        default=EG3D_LEVEL,
        help=f"mesh raw-sigma level (default: {EG3D_LEVEL:g})",
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--device", default="auto", choices=DEVICES, help="auto, cpu, cuda or mps (default: auto)"
    )
    parser.add_argument(
        "--outdir", type=path, default="out/invert", help="output folder (default: out/invert)"
    )
    parser.set_defaults(func=run, parameter_flags=PARAMETER_FLAGS)


def run(args: argparse.Namespace) -> int:
    config = InversionConfig(
        method=args.method,
        pivot=args.pivot,
        branch=args.branch,
        steps=args.steps,
        pti_steps=args.pti_steps,
        lr=args.lr,
        pti_lr=args.pti_lr,
        locality_weight=args.locality_weight,
        seed=args.seed,
    )
    outputs = OutputOptions(
        video=not args.no_video,
        trajectory=args.trajectory,
        frames=args.frames,
        mesh=not args.no_mesh,
        mesh_resolution=args.mesh_resolution,
        mesh_level=args.mesh_level,
    )
    result = invert(
        args.images,
        args.network,
        args.cameras,
        outdir=args.outdir,
        crop=args.crop,
        convention=args.convention,
        camera=args.camera,
        lpips=args.lpips,
        weights_dir=args.weights_dir,
        device=args.device,
        config=config,
        outputs=outputs,
    )
    print(f"cameras: {result.camera_source}")
    for v, name in enumerate(result.names):
        scores = ", ".join(f"{stage} {values[v]:.2f}" for stage, values in result.psnr.items())
        line = f"{name}: PSNR (dB) {scores}"
        if result.estimated is not None:
            yaw, pitch = (math.degrees(result.estimated[k][v] - math.pi / 2) for k in ("yaw", "pitch"))
            line += f"; estimated yaw {yaw:+.1f} deg, pitch {pitch:+.1f} deg from frontal"
        print(line)
    timing = ", ".join(f"{stage} {seconds:.3f} s" for stage, seconds in result.seconds_per_step.items())
    print(f"time per step: {timing}")
    for note in result.notes:
        print(f"note: {note}")
    for kind, written in result.files.items():
        print(f"{kind}: {written}")
    return 0
