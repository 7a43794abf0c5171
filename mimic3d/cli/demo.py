"""``mimic3d demo``: synthetic heads -> tiny Mimic3D trained end to end on CPU -> report folder."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="train a tiny Mimic3D on synthetic heads and write a report")
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    raise ValueError("demo: not finished yet")
