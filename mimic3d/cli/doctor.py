"""``mimic3d doctor``: versions, devices, fast paths, weight files and a numerical self-check."""

from __future__ import annotations

import argparse

from mimic3d.cli.arguments import path
from mimic3d.tools.doctor import run_doctor, write_reference


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        description="Print versions, devices and available fast paths; render a fixed tiny generator and "
        "compare it with stored pixels (catches silent numerical breakage such as black renders); list "
        "which LPIPS and FID Inception weight files are present. Exit status 1 when a check fails.",
    )
    parser.add_argument("--verify", action="store_true", help="also verify weight-file checksums (slow)")
    parser.add_argument(
        "--write-reference",
        metavar="PATH",
        type=path,
        default=None,
        help="developers: re-render the reference after a deliberate numerical change and store it at PATH",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.write_reference is not None:
        print(write_reference(args.write_reference))
        return 0
    return run_doctor(verify=args.verify)
