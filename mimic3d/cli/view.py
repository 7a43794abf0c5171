"""``mimic3d view``: an interactive viewer of a generator in the browser (needs ``mimic3d[viewer]``)."""

from __future__ import annotations

import argparse
import dataclasses
import time

from mimic3d.camera import PRESETS
from mimic3d.checkpoints.load import load
from mimic3d.cli.arguments import CHECKPOINT_HELP, integer, number, path
from mimic3d.runtime import DEVICES
from mimic3d.tools.parsing import MAX_SEED
from mimic3d.viewer.app import Viewer, import_viser, is_loopback


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "view",
        description="Serve an interactive viewer of the generator on http://HOST:PORT: the camera follows "
        "the browser's orbit/pan/zoom (converted exactly to the EG3D camera); panels choose the seed, "
        "truncation, branch, what to show, resolution, camera trajectories, interpolation and style "
        "mixing; buttons save the frame (PNG), the camera (25-float label) and the mesh into --outdir. "
        "Needs viser: pip install 'mimic3d[viewer]'. Stop with Ctrl-C.",
    )
    parser.add_argument("network", type=path, help=CHECKPOINT_HELP)
    parser.add_argument(
        "--port", type=integer(0, 65535), default=8080, help="port (default: 8080; 0: any free port)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: every network, "
        "with no password; over SSH prefer `ssh -L 8080:127.0.0.1:8080`)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="auto, cpu, cuda or mps (default: auto = the fastest available)",
    )
    parser.add_argument(
        "--outdir", type=path, default="out", help="where the save buttons write (default: out)"
    )
    parser.add_argument("--seed", type=integer(0, MAX_SEED), default=0, help="initial seed (default: 0)")
    parser.add_argument(
        "--trunc", type=number(0.0, 1.0), default=0.7, help="initial truncation psi (default: 0.7)"
    )
    parser.add_argument(
        "--camera",
        default=None,
        choices=sorted(PRESETS),
        metavar="PRESET",
        help=f"camera preset {sorted(PRESETS)} (default: from the model's rendering settings)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import_viser()  # a missing extra fails before the model loads
    G = load(args.network, args.device)  # any generator; the viewer shows what it can (capabilities)
    settings = dataclasses.replace(Viewer.default_settings(G), seed=args.seed, truncation_psi=args.trunc)
    viewer = Viewer(G, args.host, args.port, args.outdir, settings, args.camera)
    if not is_loopback(args.host):
        print(
            f"mimic3d view: listening on {args.host}, not only this machine: anyone who can reach it on "
            f"port {viewer.server.get_port()} can use the viewer and its save buttons (no password)"
        )
    print(f"mimic3d view: serving {args.network} at {viewer.url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("mimic3d view: stopping")
    finally:
        viewer.close()
    return 0
