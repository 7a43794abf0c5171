"""The ``mimic3d`` console script: one sub-command per module listed in ``COMMANDS``.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed namespace, returns an exit code). Only the module of the command
being run is imported, so that ``mimic3d --help`` or a data command does not load the metrics and
training stacks; the other commands are listed by their one-line help in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mimic3d import __version__
from mimic3d.runtime import tune_cpu_allocator, tuning_requested

# Command name (= module under mimic3d.cli) -> one-line help shown by ``mimic3d --help``.
COMMANDS: dict[str, str] = {
    "dataset": "check, build or synthesise EG3D-format datasets",
    "metrics": "FID/KID/SWD of a generator under named protocols",
    "generate": "multi-view sample grids with depth and normal maps",
    "video": "MP4 of a camera trajectory, latent interpolation or style mixing",
    "mesh": "density volume and marching-cubes mesh of each seed",
    "epi": "EPI images (one image row over a camera sweep), 2D and 3D branch side by side",
    "invert": "invert aligned images (one or more views) into a latent and a tuned generator",
    "planes": "tri-plane feature norms, coarse and residual",
    "doctor": "check the installation: versions, devices, weight files, numerics",
    "train": "train EG3D / Mimic3D from a preset, or resume a run",
    "demo": "train a tiny Mimic3D on synthetic heads (CPU, ~10 min) and write a report",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The console parser with the full parser of ``command`` (its module is imported); every
    other command is a placeholder that only carries its name and one-line help."""
    parser = argparse.ArgumentParser(
        prog="mimic3d",
        description="3D-aware GANs in pure PyTorch: EG3D, Mimic3D, EpiGRAF and NeRF-GAN distillation.",
    )
    parser.add_argument("--version", action="version", version=f"mimic3d {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name, summary in COMMANDS.items():
        if name == command:
            importlib.import_module(f"mimic3d.cli.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The placeholders name the command (and answer --help, --version and unknown commands alone);
    # the command's own parser then reads the arguments.
    command = build_parser().parse_known_args(argv)[0].command
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    if tuning_requested():  # MIMIC3D_MALLOC_TUNING=1: faster CPU forwards, more memory (mimic3d.runtime)
        tune_cpu_allocator()
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        # User errors (bad files, bad fields) get one clear line, not a traceback.
        print(f"mimic3d {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
