"""Arguments shared by the commands that render a generator (generate, video, mesh, epi, planes).

Values are checked by the argument types (``mimic3d.cli.arguments``) or by the tool functions, which
raise ValueError naming the field; the console script turns those into one-line errors naming the
flag, exit status 2.
"""

from __future__ import annotations

import argparse

from mimic3d.camera import PRESETS
from mimic3d.cli.arguments import CHECKPOINT_HELP, checked, integer, non_negative_int, number, path
from mimic3d.runtime import DEVICES, resolve_device
from mimic3d.tools.parsing import parse_seeds
from mimic3d.tools.rendering import MAX_RENDER_RESOLUTION, MIN_RENDER_RESOLUTION, Generator, load_generator

# Names the tool functions and the generator use in their errors -> the flags that set them.
PARAMETER_FLAGS = {
    "neural_rendering_resolution": "--resolution",
    "depth_multiplier": "--sample-mult",
    "num_frames": "--frames",
    "truncation_psi": "--trunc",
    "truncation_cutoff": "--trunc-cutoff",
    "yaw_offsets": "--views",
    "pitch_offset": "--pitch",
    "border_fraction": "--border",
}


def add_model_arguments(parser: argparse.ArgumentParser, seeds: str = "0-3", trunc: bool = True) -> None:
    parser.add_argument("network", type=path, help=CHECKPOINT_HELP)
    parser.add_argument(
        "--seeds", type=checked(parse_seeds), default=seeds, help=f"seeds, e.g. '0-7,12' (default: {seeds})"
    )
    if trunc:
        parser.add_argument("--trunc", type=number(), default=0.7, help="truncation psi (default: 0.7)")
        parser.add_argument(
            "--trunc-cutoff",
            type=non_negative_int,
            default=None,
            help="truncate only the first N ws (default: all)",
        )
    parser.add_argument(
        "--camera",
        default=None,
        choices=sorted(PRESETS),
        metavar="PRESET",
        help=f"camera preset {sorted(PRESETS)} (default: from the model's rendering settings)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="auto, cpu, cuda or mps (default: auto = the fastest available)",
    )
    parser.add_argument("--outdir", type=path, default="out", help="output folder (default: out)")
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="allow TF32 matmuls/convolutions on GPUs: faster, but ~1e-3 off the official numerics "
        "(default: off, as EG3D)",
    )
    parser.set_defaults(parameter_flags=PARAMETER_FLAGS)


def add_resolution_argument(parser: argparse.ArgumentParser) -> None:
    """``--resolution``: the 3D branch's render size."""
    parser.add_argument(
        "--resolution",
        type=integer(MIN_RENDER_RESOLUTION, MAX_RENDER_RESOLUTION),
        default=None,
        help="3D-branch render size in pixels (default: the image resolution)",
    )


def open_model(args: argparse.Namespace) -> Generator:
    """The generator of ``args.network`` on ``args.device``."""
    return load_generator(args.network, resolve_device(args.device))


def mapping_options(args: argparse.Namespace) -> dict:
    return dict(truncation_psi=args.trunc, truncation_cutoff=args.trunc_cutoff)
