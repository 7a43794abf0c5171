"""Arguments shared by the commands that render a generator (generate, video, mesh, epi, planes).

Values are validated by the tool functions, which raise ValueError naming the field; the console
script turns those into one-line errors with exit status 2.
"""

from __future__ import annotations

import argparse

from mimic3d.camera import PRESETS
from mimic3d.tools.rendering import Generator, load_generator, resolve_device


def add_model_arguments(parser: argparse.ArgumentParser, seeds: str = "0-3", trunc: bool = True) -> None:
    parser.add_argument(
        "network",
        help="checkpoint: a mimic3d folder or .safetensors file, or an official EG3D/Mimic3D .pkl",
    )
    parser.add_argument("--seeds", default=seeds, help=f"seeds, e.g. '0-7,12' (default: {seeds})")
    if trunc:
        parser.add_argument("--trunc", type=float, default=0.7, help="truncation psi (default: 0.7)")
        parser.add_argument(
            "--trunc-cutoff", type=int, default=None, help="truncate only the first N ws (default: all)"
        )
    parser.add_argument(
        "--camera",
        default=None,
        metavar="PRESET",
        help=f"camera preset {sorted(PRESETS)} (default: from the model's rendering settings)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or mps (default: auto = the fastest available)"
    )
    parser.add_argument("--outdir", default="out", help="output folder (default: out)")


def open_model(args: argparse.Namespace) -> Generator:
    """The generator of ``args.network`` on ``args.device``."""
    return load_generator(args.network, resolve_device(args.device))


def mapping_options(args: argparse.Namespace) -> dict:
    return dict(truncation_psi=args.trunc, truncation_cutoff=args.trunc_cutoff)
