"""The ``mimic3d`` console script: one sub-command per module listed in ``COMMANDS``.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed namespace, returns an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mimic3d import __version__

COMMANDS: list[str] = ["dataset", "metrics"]
COMMANDS += ["generate", "video", "mesh", "epi", "planes", "doctor"]
COMMANDS += ["train", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mimic3d",
        description="3D-aware GANs in pure PyTorch: EG3D, Mimic3D, EpiGRAF and NeRF-GAN distillation.",
    )
    parser.add_argument("--version", action="version", version=f"mimic3d {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMANDS:
        importlib.import_module(f"mimic3d.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        # User errors (bad files, bad fields) get one clear line, not a traceback.
        print(f"mimic3d {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
